//! Delivery channels beyond the feed: signed webhooks (Standard Webhooks) and email (SMTP,
//! see [`email`] for its own guarantee and the digest), run by the notifier process. Both
//! share the `deliveries` table, the claim with its lease, the attempt log and the backoff.
//!
//! # Guarantee: one successful delivery per event and endpoint, retried until then
//!
//! *Planning* happens in the notifier's transaction for the event ([`store::plan`]): one
//! `deliveries` row per enabled endpoint of the user, unique per (channel, target, event).
//! A redelivered event, or a notifier restarted before its offset commit, finds the rows
//! and plans nothing new; the row's id is the `webhook-id`, the same on every attempt.
//!
//! *Sending* ([`sender`]) claims due rows with a lease (`leased_until`), so any number of
//! notifier replicas share the work and a row is sent by one of them at a time. An attempt
//! is recorded, and the row completed or rescheduled, in one transaction after the
//! receiver answered. A sender that dies between the receiver's 2xx and that commit leaves
//! the lease to expire, and the delivery is sent again with the same `webhook-id`: the
//! receiver's deduplication by `webhook-id` (which the specification asks of it) makes that
//! window harmless. Nothing else sends twice: a recorded success is final.
//!
//! *Isolation:* each endpoint has at most `TASKFLOW_WEBHOOK_CONCURRENCY` deliveries in
//! flight, each bounded by `TASKFLOW_WEBHOOK_TIMEOUT_MS`, and a claim never takes more
//! than an endpoint's free slots: a slow or dead receiver holds only its own slots, never
//! another user's deliveries.
//!
//! *Failures* retry with capped exponential backoff and jitter up to
//! `TASKFLOW_WEBHOOK_MAX_ATTEMPTS`; an endpoint failing continuously for
//! `TASKFLOW_WEBHOOK_DISABLE_AFTER_SECS` is disabled, its pending deliveries cancelled, and
//! its owner told in the inbox (and on the live feed).
//!
//! *Targets* are checked at every attempt on the addresses actually connected to
//! (`taskflow_infra::webhook::target`), against DNS rebinding.

pub mod email;
pub mod plan;
pub mod quiet;
pub mod sender;
pub mod store;

pub use sender::{spawn_sender, DeliveryMetrics, DeliverySettings, SenderError};
