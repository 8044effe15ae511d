//! The caller's feed, live: `GET /feed/stream` (Server-Sent Events) and
//! `POST /feed/stream-tokens` (for browsers, whose `EventSource` cannot send headers).
//!
//! The notifier (and the inbox's read-state changes) append to the per-user feed in
//! PostgreSQL and `NOTIFY taskflow_feed` after commit. Each API process holds one `LISTEN`
//! ([`hub::FeedHub`]) and wakes the open streams of the notified user; each stream then reads
//! its new entries from the table ([`stream`]). So a stream on any replica sends each entry
//! of its user once, in feed order, whichever replica or worker wrote it.
//!
//! Pure parts, unit-tested: [`resume`] (where a stream starts), [`frame`] (the SSE frames),
//! [`credential`] (stream tokens, when a credential ends a stream).

pub mod credential;
pub mod frame;
pub mod handlers;
pub mod hub;
pub mod resume;
pub mod stream;

use std::{sync::Arc, time::Duration};

use taskflow_infra::feed::FeedNotifier;
use tokio_util::sync::CancellationToken;

use crate::metrics::StreamMetrics;

/// What the feed and inbox routes share. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FeedState {
    pub hub: hub::FeedHub,
    /// Sends the `NOTIFY` after a read-state change commits.
    pub notifier: FeedNotifier,
    pub stream_keys: Arc<credential::StreamTokenKeys>,
    pub heartbeat: Duration,
    /// Cancelled at shutdown: every stream sends `event: end` and closes, so the graceful
    /// shutdown (which waits for open responses) is not held up by them.
    pub stop: CancellationToken,
    pub metrics: StreamMetrics,
}
