//! What every Taskflow binary shares: configuration from `TASKFLOW_*`
//! variables, tracing, the admin server (`/metrics`, `/healthz`, `/readyz`),
//! signal-driven shutdown, Kafka client configuration and the transactional
//! outbox with its relay.
//!
//! Binaries stay thin `main`s over these pieces so tests can assemble the same
//! components in-process on port 0.

pub mod admin;
pub mod backoff;
pub mod config;
pub mod db;
pub mod feed;
pub mod notify;
pub mod outbox;
pub mod preferences;
pub mod registration;
pub mod shutdown;
pub mod telemetry;
pub mod webhook;
