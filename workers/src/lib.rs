//! Taskflow's workers on one consumer runtime.
//!
//! * [`runtime`]: consume, decode, handle, retry, dead-letter, commit; the delivery guarantee
//!   and how it holds are in its module docs.
//! * [`audit`]: the audit worker (`taskflow-audit`) and its replay (`taskflow-audit-replay`).
//! * [`recurrence`]: the recurrence worker (`taskflow-recurrence`): the next instance of a
//!   recurring task when one is completed, once per occurrence.
//! * [`reminders`]: the reminders worker (`taskflow-reminders`): durable reminder timers,
//!   each fired once as `ReminderDue`.
//! * [`notifier`]: the notifier (`taskflow-notifier`): every event into its user's feed (the
//!   live streams' source), every reminder into the inbox.
//! * [`admin`]: the operator's command line (`taskflow-admin`): topics, schemas, lag, dead
//!   letters, parked outbox rows.
//! * [`process`]: what every worker binary does around its worker (database, codec, admin
//!   server, relay candidate, shutdown, exit).
//! * [`db`]: how the stores classify PostgreSQL errors (retry or dead-letter).
//!
//! Test hooks: [`runtime::spawn`] and [`audit::spawn_audit_worker`] start a worker in-process
//! and return a [`runtime::WorkerHandle`] (`stop().await`, `probe()`); [`runtime::Decoder`]
//! lets a test decode without a schema registry; [`runtime::RuntimeSettings::new`] and
//! [`audit::AuditSettings::new`] build settings without the environment; [`audit::replay`]
//! runs a replay to completion and returns a report.

pub mod admin;
pub mod audit;
pub mod db;
pub mod delivery;
pub mod notifier;
pub mod process;
pub mod recurrence;
pub mod reminders;
pub mod runtime;
