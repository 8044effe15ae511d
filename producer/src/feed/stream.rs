//! One live stream: the loop that turns wake-ups, heartbeats and shutdown into frames, which
//! `handlers` writes as Server-Sent Events or as WebSocket messages.
//!
//! # Each entry once, in feed order
//!
//! The stream keeps a cursor (the seq of the last entry it sent) and only ever reads
//! `seq > cursor` from PostgreSQL, a page at a time, sending the page in seq order. A row
//! that commits late cannot be skipped: seqs of one user are handed out under the user's
//! head row lock, so when seq N is visible every seq below it has committed or is gone (see
//! `taskflow_infra::feed`). Wake-ups never carry data, so a duplicate or merged wake-up
//! changes nothing, and the cursor only moves forward: nothing is sent twice.
//!
//! The body is a `Stream` polled by hyper: when the client goes away it is dropped, which
//! drops the subscription and the open-streams gauge guard with it.

use std::{collections::VecDeque, time::Duration};

use chrono::Utc;
use futures::Stream;
use sqlx::PgPool;
use taskflow_infra::feed::{self, FeedRow};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    credential::Parent,
    frame::{EndReason, Out},
    hub::Subscription,
    resume::Start,
};
use crate::metrics::{OpenStream, StreamMetrics};

/// Entries read per query: bounds the memory of a stream catching up.
pub const PAGE: i64 = 500;

/// What a stream needs, prepared by the handler (which has already subscribed and read the
/// user's head, so errors there are still an HTTP answer).
#[derive(Debug)]
pub struct StreamSetup {
    pub pool: PgPool,
    pub user_id: Uuid,
    pub parent: Parent,
    pub subscription: Subscription,
    pub start: Start,
    /// The head when the stream opened: entries up to it are backlog, not live pushes.
    pub head: i64,
    pub heartbeat: Duration,
    pub stop: CancellationToken,
    pub metrics: StreamMetrics,
}

struct FeedStream {
    pool: PgPool,
    user_id: Uuid,
    parent: Parent,
    subscription: Subscription,
    cursor: i64,
    backlog_until: i64,
    rows: VecDeque<FeedRow>,
    frames: VecDeque<Out>,
    /// Read before waiting: at the start, and after a full page (there may be more).
    read_now: bool,
    /// A read failed: try again at the next heartbeat even without a wake-up.
    read_failed: bool,
    heartbeat: Interval,
    stop: CancellationToken,
    metrics: StreamMetrics,
    ended: bool,
    _open: OpenStream,
}

enum Wake {
    Stop,
    Feed,
    Heartbeat,
}

/// What the stream for `setup` emits, for the SSE or the WebSocket adapter to write.
pub fn frames(setup: StreamSetup) -> impl Stream<Item = Out> + Send {
    let mut frames = VecDeque::from([Out::Opened]);
    if let Start::Resync { after, reason } = setup.start {
        frames.push_back(Out::Resync { reason, after });
    }
    let mut heartbeat = tokio::time::interval_at(Instant::now() + setup.heartbeat, setup.heartbeat);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let state = FeedStream {
        _open: setup.metrics.open_stream(),
        pool: setup.pool,
        user_id: setup.user_id,
        parent: setup.parent,
        subscription: setup.subscription,
        cursor: setup.start.after(),
        backlog_until: setup.head,
        rows: VecDeque::new(),
        frames,
        read_now: true,
        read_failed: false,
        heartbeat,
        stop: setup.stop,
        metrics: setup.metrics,
        ended: false,
    };
    futures::stream::unfold(state, |mut s| async move {
        let out = s.next_frame().await?;
        Some((out, s))
    })
}

impl FeedStream {
    async fn next_frame(&mut self) -> Option<Out> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Some(f);
            }
            if self.ended {
                return None;
            }
            if let Some(row) = self.rows.pop_front() {
                self.cursor = row.seq;
                let lag = (row.seq > self.backlog_until).then(|| {
                    (Utc::now() - row.occurred_at)
                        .to_std()
                        .map_or(0.0, |d| d.as_secs_f64())
                });
                self.metrics.pushed(&row.kind, lag);
                return Some(Out::Entry(row));
            }
            if self.read_now {
                self.read().await;
                continue;
            }
            // Shutdown first: a busy feed must not keep a stream from ending.
            let wake = tokio::select! {
                biased;
                _ = self.stop.cancelled() => Wake::Stop,
                _ = self.subscription.woken() => Wake::Feed,
                _ = self.heartbeat.tick() => Wake::Heartbeat,
            };
            match wake {
                Wake::Stop => self.end(EndReason::Shutdown),
                Wake::Feed => self.read().await,
                Wake::Heartbeat => self.on_heartbeat().await,
            }
        }
    }

    async fn read(&mut self) {
        match feed::read_after(&self.pool, self.user_id, self.cursor, PAGE).await {
            Ok(rows) => {
                self.read_now = i64::try_from(rows.len()).is_ok_and(|n| n >= PAGE);
                self.read_failed = false;
                self.rows.extend(rows);
            }
            Err(e) => {
                // Keep the stream: the cursor is unchanged, so the next read (next wake-up
                // or heartbeat) sends whatever this one would have, in order.
                tracing::warn!(user_id = %self.user_id, error = %e, "reading the feed for a stream");
                self.read_now = false;
                self.read_failed = true;
            }
        }
    }

    async fn on_heartbeat(&mut self) {
        match self.parent.end_reason(&self.pool).await {
            Ok(Some(reason)) => return self.end(reason),
            Ok(None) => {}
            // A database blip must not end every stream at once; the next heartbeat checks
            // again.
            Err(e) => {
                tracing::warn!(user_id = %self.user_id, error = %e, "re-checking a stream's credential")
            }
        }
        self.frames.push_back(Out::Heartbeat);
        if self.read_failed {
            self.read().await;
        }
    }

    fn end(&mut self, reason: EndReason) {
        tracing::debug!(user_id = %self.user_id, reason = reason.as_str(), "stream ends");
        self.frames.push_back(Out::End(reason));
        self.ended = true;
    }
}
