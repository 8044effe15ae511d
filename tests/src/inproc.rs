//! The workers in-process beside a [`TestSystem`], assembled as their binaries assemble
//! them: for tests that need the whole pipeline (a reminder ringing a page's bell, a
//! completed recurring task's next instance, a task's history) but not separate processes.
//! Each gets a consumer group and dead-letter topic of its own, and short fetch waits (tansu
//! holds an empty fetch about 500 ms otherwise). They stop when `stop` is cancelled.

use taskflow_infra::outbox::OutboxWaker;
use taskflow_workers::{
    audit::{self, AuditSettings},
    notifier::{self, NotifierSettings},
    recurrence::{self, RecurrenceSettings},
    reminders::{self, ReminderSettings, RemindersWorker},
    runtime::{RuntimeSettings, WorkerHandle},
};
use tokio_util::sync::CancellationToken;

use crate::{broker::create_topic, system::TestSystem, unique};

fn quick(runtime: &mut RuntimeSettings) {
    runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
}

/// A fresh consumer group named after `worker`, with its dead-letter topic.
async fn group(sys: &TestSystem, worker: &str) -> String {
    let group = unique(worker);
    create_topic(&sys.brokers, &taskflow_schemas::topics::dlq(&group), 1).await;
    group
}

impl TestSystem {
    /// The notifier consuming `topics` (the system's task events and a reminders topic,
    /// usually); `tune` adjusts its settings (delivery channels, say) before it starts.
    pub async fn spawn_notifier(
        &self,
        topics: &[&str],
        stop: &CancellationToken,
        tune: impl FnOnce(&mut NotifierSettings),
    ) -> WorkerHandle {
        let group = group(self, "notifier").await;
        let mut settings = NotifierSettings::new(&self.brokers, &group, topics);
        quick(&mut settings.runtime);
        tune(&mut settings);
        notifier::spawn_notifier(
            settings,
            self.db.pool.clone(),
            self.codec.clone(),
            &prometheus::Registry::new(),
            stop.clone(),
        )
        .expect("spawn the notifier")
    }

    /// The reminders worker: timers from the system's task events, `ReminderDue` to
    /// `reminders_topic` through the outbox (this system's relay publishes it).
    pub async fn spawn_reminders(
        &self,
        reminders_topic: &str,
        stop: &CancellationToken,
    ) -> RemindersWorker {
        let group = group(self, "reminders").await;
        let mut settings =
            ReminderSettings::new(&self.brokers, &group, &self.topic, reminders_topic);
        quick(&mut settings.runtime);
        reminders::spawn_reminders_worker(
            settings,
            self.db.pool.clone(),
            OutboxWaker::new(self.db.pool.clone()),
            self.codec.clone(),
            &prometheus::Registry::new(),
            stop.clone(),
        )
        .expect("spawn the reminders worker")
    }

    /// The recurrence worker: a completed instance's successor, through the outbox.
    pub async fn spawn_recurrence(&self, stop: &CancellationToken) -> WorkerHandle {
        let group = group(self, "recurrence").await;
        let mut settings = RecurrenceSettings::new(&self.brokers, &group, &self.topic);
        quick(&mut settings.runtime);
        recurrence::spawn_recurrence_worker(
            settings,
            self.db.pool.clone(),
            OutboxWaker::new(self.db.pool.clone()),
            self.codec.clone(),
            &prometheus::Registry::new(),
            stop.clone(),
        )
        .expect("spawn the recurrence worker")
    }

    /// The audit worker over `topics` (a task's history comes from it).
    pub async fn spawn_audit(&self, topics: &[&str], stop: &CancellationToken) -> WorkerHandle {
        let group = group(self, "audit").await;
        let mut settings = AuditSettings::new(&self.brokers, &group, topics);
        quick(&mut settings.runtime);
        audit::spawn_audit_worker(
            settings,
            self.db.pool.clone(),
            self.codec.clone(),
            &prometheus::Registry::new(),
            stop.clone(),
        )
        .expect("spawn the audit worker")
    }
}
