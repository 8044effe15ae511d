//! Waking the relay after a commit, without a `NOTIFY` inside the write.
//!
//! `NOTIFY` inside a transaction takes a database-wide lock at commit that
//! serialises every committing writer: with 32 clients it halved the rate of
//! the API's write transaction in pgbench. So writers never notify inside
//! their transaction. After the commit they call [`OutboxWaker::wake`], which
//! - wakes the relay of this process at once when it is the leader (an
//!   in-process [`Notify`], no database round trip), and
//! - otherwise asks a background task to send one `NOTIFY` outside any write
//!   transaction, coalesced to at most one per [`OutboxWaker::COALESCE`] per
//!   process, for a leader in another process.
//!
//! A lost wake-up (the process dies between commit and wake, or the notify
//! connection is down) costs at most the relay's idle poll: the rows are in
//! the table and the relay re-reads it on that timer.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use sqlx::PgPool;
use tokio::sync::Notify;

use super::NOTIFY_CHANNEL;
use crate::notify::CoalescedNotify;

#[derive(Debug)]
struct Inner {
    /// Wakes the leader relay of this process. `notify_one` keeps a permit
    /// when the relay is busy, so a wake during a batch is not lost.
    local: Notify,
    /// True while this process's relay holds the lock: then no `NOTIFY` is
    /// needed at all.
    leader_here: AtomicBool,
    remote: CoalescedNotify,
}

/// Cheap to clone; one per process, shared by every writer and the relay.
#[derive(Debug, Clone)]
pub struct OutboxWaker {
    inner: Arc<Inner>,
}

impl OutboxWaker {
    /// The shortest gap between two `NOTIFY`s this process sends.
    pub const COALESCE: Duration = Duration::from_millis(2);

    /// A waker whose cross-process `NOTIFY`s go through `pool`. Spawns the
    /// notifying task, which ends when the last clone is dropped. Must be
    /// called inside a Tokio runtime.
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Inner {
                local: Notify::new(),
                leader_here: AtomicBool::new(false),
                remote: CoalescedNotify::spawn(pool, NOTIFY_CHANNEL, Self::COALESCE),
            }),
        }
    }

    /// Call after committing a transaction that enqueued outbox rows.
    pub fn wake(&self) {
        self.inner.local.notify_one();
        if !self.inner.leader_here.load(Ordering::Acquire) {
            self.inner.remote.send();
        }
    }

    pub(crate) fn set_leader_here(&self, leader: bool) {
        self.inner.leader_here.store(leader, Ordering::Release);
    }

    /// Resolves on the next [`wake`](Self::wake) of this process (or at once
    /// if one happened since the last call).
    pub(crate) async fn woken(&self) {
        self.inner.local.notified().await;
    }
}
