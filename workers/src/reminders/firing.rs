//! The firing loop: sleeps until the earliest pending timer, fires everything due, repeats.
//!
//! There is no polling interval. The loop asks the database for the earliest pending
//! instant and sleeps exactly until then, or until it is woken because a timer was armed:
//! in-process by this replica's consumer ([`AgendaWaker::armed`]), or by a `NOTIFY` on
//! [`AGENDA_CHANNEL`] from another replica. A wake only makes it look again, so wake-ups
//! may be coalesced or lost without harm beyond delay, and the sleep is capped at
//! `max_idle` so that a wake-up lost with a database connection costs at most that.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use taskflow_infra::backoff::Backoff;
use taskflow_infra::notify::CoalescedNotify;
use taskflow_infra::outbox::OutboxWaker;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::store::{Fired, ReminderStore, ReminderStoreError};
use super::ReminderMetrics;

/// The channel replicas wake each other's firing loops on.
pub const AGENDA_CHANNEL: &str = "taskflow_reminder_agenda";

/// The worker's notion of now. Production uses the system clock; a test may shift it to
/// make a timer far in the future (a DST change next spring) come due now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Clock {
    offset: TimeDelta,
}

impl Clock {
    pub fn system() -> Self {
        Self::default()
    }

    /// The system clock shifted by `offset`.
    pub fn shifted(offset: TimeDelta) -> Self {
        Self { offset }
    }

    /// Whole microseconds, as PostgreSQL and Avro keep them.
    pub fn now(&self) -> DateTime<Utc> {
        (Utc::now() + self.offset).trunc_subsecs(6)
    }
}

/// Wakes the firing loops after a timer was armed. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AgendaWaker {
    /// Bumped on every arm: each firing loop of the process watches it (a watch, unlike a
    /// `Notify`, wakes every loop and cannot lose a bump made while a loop was busy).
    local: Arc<watch::Sender<u64>>,
    remote: CoalescedNotify,
}

impl AgendaWaker {
    /// Coalescing gap of the cross-replica `NOTIFY`.
    pub const COALESCE: Duration = Duration::from_millis(5);

    pub fn new(pool: PgPool) -> Self {
        Self {
            local: Arc::new(watch::Sender::new(0)),
            remote: CoalescedNotify::spawn(pool, AGENDA_CHANNEL, Self::COALESCE),
        }
    }

    /// Call after committing a transaction that armed a timer.
    pub fn armed(&self) {
        self.local.send_modify(|n| *n = n.wrapping_add(1));
        self.remote.send();
    }
}

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct FiringSettings {
    /// Timers per transaction.
    pub batch: i64,
    /// The longest sleep without looking at the agenda.
    pub max_idle: Duration,
    /// Firing loops per process, each with its own transactions: due timers are split
    /// between them (`SKIP LOCKED`) as between replicas, so a burst is written by several
    /// database connections at once. That helps only while the database has idle cores: on
    /// the 2-core test machine, shared with the broker, two loops were slower than one.
    pub loops: usize,
}

impl Default for FiringSettings {
    fn default() -> Self {
        Self {
            batch: 500,
            max_idle: Duration::from_secs(60),
            loops: 1,
        }
    }
}

#[derive(Clone)]
pub(crate) struct FiringLoop {
    pub(crate) store: Arc<ReminderStore>,
    pub(crate) pool: PgPool,
    pub(crate) clock: Clock,
    pub(crate) settings: FiringSettings,
    pub(crate) agenda: AgendaWaker,
    pub(crate) relay: OutboxWaker,
    pub(crate) metrics: ReminderMetrics,
}

impl FiringLoop {
    /// Runs until `shutdown`. A failing database is retried with backoff; nothing is lost
    /// meanwhile (a timer that was not marked fired is still pending).
    pub(crate) async fn run(self, shutdown: CancellationToken) {
        let backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        let mut armed = self.agenda.local.subscribe();
        let mut failures: u32 = 0;
        let mut listener: Option<PgListener> = None;
        while !shutdown.is_cancelled() {
            if listener.is_none() {
                listener = listen(&self.pool).await;
            }
            let next = match self.fire_all_due().await {
                Ok(()) => self.store.next_due().await,
                Err(e) => Err(e),
            };
            let next = match next {
                Ok(next) => {
                    failures = 0;
                    next
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    self.metrics.loop_errors.inc();
                    tracing::warn!(error = %e, attempt = failures, "firing reminders failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay(failures)) => continue,
                    }
                }
            };
            let wait = next
                .map(|at| (at - self.clock.now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(self.settings.max_idle)
                .min(self.settings.max_idle);
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                _ = armed.changed() => {}
                lost = notified(&mut listener) => {
                    if lost {
                        listener = None;
                    }
                }
            }
        }
    }

    /// Fires batches until fewer than a batch are due (the rest, if any, are locked by
    /// another replica, which fires them).
    async fn fire_all_due(&self) -> Result<(), ReminderStoreError> {
        loop {
            let now = self.clock.now();
            let started = std::time::Instant::now();
            let fired = self.store.fire_due(now, self.settings.batch).await?;
            let committed = self.clock.now();
            if fired.seen > 0 {
                self.metrics.batch.observe(started.elapsed().as_secs_f64());
            }
            if !fired.fired.is_empty() {
                self.relay.wake();
            }
            self.metrics.record_firing(&fired, committed);
            log_pass(&fired, committed);
            if (fired.seen as i64) < self.settings.batch {
                return Ok(());
            }
        }
    }
}

fn log_pass(fired: &Fired, committed: DateTime<Utc>) {
    if fired.seen == 0 {
        return;
    }
    let worst = fired
        .fired
        .iter()
        .map(|at| committed - *at)
        .max()
        .unwrap_or_default();
    tracing::debug!(
        fired = fired.fired.len(),
        cancelled = fired.cancelled,
        removed = fired.removed,
        moved = fired.moved,
        worst_lateness_ms = worst.num_milliseconds(),
        "reminders fired"
    );
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for armed reminders; relying on the idle cap");
            return None;
        }
    };
    match listener.listen(AGENDA_CHANNEL).await {
        Ok(()) => Some(listener),
        Err(e) => {
            tracing::warn!(error = %e, "cannot LISTEN for armed reminders; relying on the idle cap");
            None
        }
    }
}

/// Resolves on the next notification (false) or when the listener failed (true). Without a
/// listener it never resolves.
async fn notified(listener: &mut Option<PgListener>) -> bool {
    match listener {
        Some(l) => l.recv().await.is_err(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_is_ahead_by_its_offset_in_whole_micros() {
        let c = Clock::shifted(TimeDelta::days(100));
        let ahead = c.now() - Clock::system().now();
        assert!(ahead >= TimeDelta::days(100) - TimeDelta::seconds(1));
        assert!(ahead <= TimeDelta::days(100) + TimeDelta::seconds(1));
        assert_eq!(c.now().timestamp_subsec_nanos() % 1_000, 0);
    }
}
