//! `NOTIFY` after a commit, coalesced, never inside the write.
//!
//! `NOTIFY` inside a transaction takes a database-wide lock at commit that serialises every
//! committing writer (it halved the API's write rate in pgbench with 32 clients). So writers
//! that must wake a listener in another process commit first and then call
//! [`CoalescedNotify::send`]: a background task sends one `NOTIFY` on its own connection,
//! and every `send` while one is pending, or within the coalescing gap after it, is folded
//! into it. Listeners therefore treat a notification as "look again", never as a count.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;

/// Cheap to clone; the sending task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct CoalescedNotify {
    /// Capacity 1: sends while a `NOTIFY` is pending collapse into it.
    tx: mpsc::Sender<()>,
}

impl CoalescedNotify {
    /// Spawns the sending task for `channel`, at most one `NOTIFY` per `gap`. Must be called
    /// inside a Tokio runtime.
    pub fn spawn(pool: PgPool, channel: &'static str, gap: Duration) -> Self {
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(send_notifies(pool, channel, gap, rx));
        Self { tx }
    }

    /// Asks for one `NOTIFY` soon; returns at once.
    pub fn send(&self) {
        // Full means a NOTIFY is already pending: it covers this call too.
        let _ = self.tx.try_send(());
    }
}

async fn send_notifies(
    pool: PgPool,
    channel: &'static str,
    gap: Duration,
    mut rx: mpsc::Receiver<()>,
) {
    while rx.recv().await.is_some() {
        if let Err(e) = sqlx::query("SELECT pg_notify($1, '')")
            .bind(channel)
            .execute(&pool)
            .await
        {
            // Listeners also look again on their own timer; a lost wake-up only delays.
            tracing::debug!(channel, error = %e, "NOTIFY not sent");
        }
        tokio::time::sleep(gap).await;
    }
}
