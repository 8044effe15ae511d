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
use tokio::sync::{mpsc, Notify};

use super::NOTIFY_CHANNEL;

#[derive(Debug)]
struct Inner {
    /// Wakes the leader relay of this process. `notify_one` keeps a permit
    /// when the relay is busy, so a wake during a batch is not lost.
    local: Notify,
    /// True while this process's relay holds the lock: then no `NOTIFY` is
    /// needed at all.
    leader_here: AtomicBool,
    /// Capacity 1: wakes while a `NOTIFY` is pending collapse into it.
    remote: mpsc::Sender<()>,
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
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(send_notifies(pool, rx));
        Self {
            inner: Arc::new(Inner {
                local: Notify::new(),
                leader_here: AtomicBool::new(false),
                remote: tx,
            }),
        }
    }

    /// Call after committing a transaction that enqueued outbox rows.
    pub fn wake(&self) {
        self.inner.local.notify_one();
        if !self.inner.leader_here.load(Ordering::Acquire) {
            // Full means a NOTIFY is already pending: it covers this commit too.
            let _ = self.inner.remote.try_send(());
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

async fn send_notifies(pool: PgPool, mut rx: mpsc::Receiver<()>) {
    while rx.recv().await.is_some() {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&pool)
            .await
        {
            // The relay's idle poll picks the rows up anyway.
            tracing::debug!(error = %e, "outbox NOTIFY not sent");
        }
        tokio::time::sleep(OutboxWaker::COALESCE).await;
    }
}
