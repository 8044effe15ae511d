//! One `LISTEN taskflow_feed` per API process, fanned out in-process to the open streams of
//! the user each notification names.
//!
//! A notification only means "look again": every stream reads its entries from PostgreSQL
//! by `seq > last sent`, so a wake-up that carries nothing new, or two that fold into one,
//! costs a query and loses nothing. What must never happen is a lost wake-up while the
//! entry sits in the table: a stream subscribes *before* it reads its starting position
//! (anything committed after that read wakes it), each stream has its own `watch` receiver
//! (a wake-up while it is busy reading is kept, not dropped), and when the `LISTEN`
//! connection is lost every stream is woken once the listener is back, because the
//! notifications sent meanwhile went nowhere.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use sqlx::{postgres::PgListener, PgPool};
use taskflow_infra::{backoff::Backoff, feed::FEED_CHANNEL};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The in-process registry of open streams by user. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct FeedHub {
    inner: Arc<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    /// One sender per user with at least one open stream; each stream holds a receiver.
    /// The value is a wake-up counter (its content is never read).
    users: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
}

impl HubInner {
    fn users(&self) -> MutexGuard<'_, HashMap<Uuid, watch::Sender<u64>>> {
        // The map stays consistent even if a holder panicked (every change is one call).
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl FeedHub {
    /// `LISTEN`s on [`FEED_CHANNEL`] (over one connection of `pool`, held for good) and
    /// spawns the task that dispatches notifications until `stop`. Returns once the
    /// `LISTEN` is in place, so no stream can open before notifications reach it.
    pub async fn start(pool: PgPool, stop: CancellationToken) -> Result<Self, sqlx::Error> {
        let listener = listen(&pool).await?;
        let hub = Self::default();
        tokio::spawn(dispatch(listener, pool, hub.clone(), stop));
        Ok(hub)
    }

    /// A hub without a listener: wake-ups only through [`FeedHub::wake`] (unit tests).
    pub fn detached() -> Self {
        Self::default()
    }

    /// Registers a stream of `user_id`. Take it before reading where the stream starts.
    pub fn subscribe(&self, user_id: Uuid) -> Subscription {
        let mut users = self.inner.users();
        let rx = users
            .entry(user_id)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        Subscription {
            user_id,
            rx,
            hub: self.inner.clone(),
        }
    }

    /// Wakes every open stream of `user_id` (none open: nothing to do).
    pub fn wake(&self, user_id: Uuid) {
        if let Some(tx) = self.inner.users().get(&user_id) {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Wakes every open stream (after the listener reconnected: notifications were missed).
    pub fn wake_all(&self) {
        for tx in self.inner.users().values() {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Users with at least one open stream on this process.
    pub fn users_open(&self) -> usize {
        self.inner.users().len()
    }
}

/// One stream's registration; dropping it unregisters the stream.
#[derive(Debug)]
pub struct Subscription {
    user_id: Uuid,
    rx: watch::Receiver<u64>,
    hub: Arc<HubInner>,
}

impl Subscription {
    /// Resolves at the next wake-up for this user since the last one seen (one that came
    /// while the stream was busy resolves at once).
    pub async fn woken(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender lives in the map as long as this receiver does; should that ever
            // not hold, wait for the other wake-ups (heartbeat, shutdown) instead of spinning.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.users();
        // This receiver is still alive here: the last stream of the user sees a count of 1.
        if users
            .get(&self.user_id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            users.remove(&self.user_id);
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(FEED_CHANNEL).await?;
    Ok(listener)
}

async fn dispatch(listener: PgListener, pool: PgPool, hub: FeedHub, stop: CancellationToken) {
    let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut listener = Some(listener);
    let mut attempt = 0u32;
    loop {
        let Some(l) = listener.as_mut() else {
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay(attempt)) => {}
            }
            match listen(&pool).await {
                Ok(l) => {
                    tracing::info!(attempt, "feed listener reconnected");
                    listener = Some(l);
                    attempt = 0;
                    hub.wake_all();
                }
                Err(e) => tracing::warn!(attempt, error = %e, "feed listener cannot reconnect"),
            }
            continue;
        };
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = l.try_recv() => r,
        };
        match received {
            Ok(Some(n)) => match Uuid::parse_str(n.payload()) {
                Ok(user_id) => hub.wake(user_id),
                Err(_) => tracing::debug!(payload = n.payload(), "feed notification ignored"),
            },
            // The connection was lost and sqlx re-established it (LISTEN included) before
            // answering: whatever was notified in between is gone.
            Ok(None) => {
                tracing::info!("feed listener connection lost and re-established");
                hub.wake_all();
            }
            // Errors sqlx does not reconnect from (e.g. the backend was terminated): start
            // over on a fresh connection, then wake everyone.
            Err(e) => {
                tracing::warn!(error = %e, "feed listener failed; reconnecting");
                listener = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_only_the_named_user_and_keeps_a_wake_up_that_came_while_busy() {
        let hub = FeedHub::detached();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut a1 = hub.subscribe(a);
        let mut a2 = hub.subscribe(a);
        let mut b1 = hub.subscribe(b);
        // Nobody is waiting yet: the wake-up must be kept for each of a's streams.
        hub.wake(a);
        let soon = Duration::from_millis(100);
        assert!(tokio::time::timeout(soon, a1.woken()).await.is_ok());
        assert!(tokio::time::timeout(soon, a2.woken()).await.is_ok());
        assert!(tokio::time::timeout(soon, b1.woken()).await.is_err());
        // Seen once: no second wake-up without a new one.
        assert!(tokio::time::timeout(soon, a1.woken()).await.is_err());
        hub.wake_all();
        assert!(tokio::time::timeout(soon, b1.woken()).await.is_ok());
    }

    #[test]
    fn the_last_stream_of_a_user_unregisters_it() {
        let hub = FeedHub::detached();
        let a = Uuid::now_v7();
        let s1 = hub.subscribe(a);
        let s2 = hub.subscribe(a);
        assert_eq!(hub.users_open(), 1);
        drop(s1);
        assert_eq!(hub.users_open(), 1);
        drop(s2);
        assert_eq!(hub.users_open(), 0);
        // Waking a user without streams is a no-op.
        hub.wake(a);
        assert_eq!(hub.users_open(), 0);
    }
}
