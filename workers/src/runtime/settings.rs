//! Consumer runtime settings: `TASKFLOW_*` environment variables with documented defaults, or
//! [`RuntimeSettings::new`] for tests.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `TASKFLOW_KAFKA_GROUP_ID` | the worker's group | consumer group |
//! | `TASKFLOW_KAFKA_TOPICS` | the worker's topics | comma-separated topics |
//! | `TASKFLOW_KAFKA_CLIENT_ID` | the group id | `client.id` of consumer and DLQ producer |
//! | `TASKFLOW_KAFKA_ASSIGNOR` | `range` | `range`, `roundrobin` or `cooperative-sticky` (tansu 0.6 only works with `range`; `cooperative-sticky` suits Redpanda) |
//! | `TASKFLOW_KAFKA_GROUP_INSTANCE_ID` | none (dynamic membership) | `group.instance.id`: static membership (KIP-345), one stable id per replica (see below); `{hostname}` in it is replaced by the host's name (compose: each replica's container) |
//! | `TASKFLOW_KAFKA_SESSION_TIMEOUT_MS` | 45000 | `session.timeout.ms` (see below) |
//! | `TASKFLOW_CONSUMER_COMMIT_INTERVAL_MS` | 500 | periodic async commit of done offsets |
//! | `TASKFLOW_CONSUMER_COMMIT_EVERY` | 500 | also commit once this many messages are done |
//! | `TASKFLOW_CONSUMER_INITIAL_BACKOFF_MS` | 100 | first retry delay after a transient failure |
//! | `TASKFLOW_CONSUMER_MAX_BACKOFF_MS` | 30000 | retry delay cap |
//! | `TASKFLOW_CONSUMER_DRAIN_TIMEOUT_MS` | 10000 | how long a revoke or shutdown waits for in-flight messages |
//! | `TASKFLOW_CONSUMER_LAG_INTERVAL_MS` | 5000 | consumer lag gauge refresh |
//! | `TASKFLOW_CONSUMER_DLQ_TIMEOUT_MS` | 30000 | DLQ delivery timeout (`message.timeout.ms`) before the send is retried |
//! | `TASKFLOW_KAFKA_DEBUG` | none | librdkafka `debug` contexts of the consumer (e.g. `cgrp`), logged at debug level |
//! | `TASKFLOW_CONSUMER_QUEUE_POLL_MS` | 1000 | longest wait on a partition queue before polling it again (bounds a lost wake-up, rust-rdkafka #665) |
//! | `TASKFLOW_UNKNOWN_SCHEMA_RETRY_SECS` | 60 | how long a schema id the registry answers 404 for is retried before the message is dead-lettered |
//! | `TASKFLOW_CONSUMER_QUEUED_MAX_KBYTES` | 2048 | `queued.max.messages.kbytes`, per partition (librdkafka: 65536) |
//! | `TASKFLOW_CONSUMER_QUEUED_MIN_MESSAGES` | 2000 | `queued.min.messages`, per partition (librdkafka: 100000) |
//! | `TASKFLOW_CONSUMER_FETCH_MAX_BYTES` | 8388608 | `fetch.max.bytes`, per fetch request (librdkafka: 52428800) |
//! | `TASKFLOW_CONSUMER_MAX_PARTITION_FETCH_BYTES` | 1048576 | `max.partition.fetch.bytes` (librdkafka's default) |
//! | `TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS` | 100 | `fetch.wait.max.ms` (librdkafka: 500; see below) |
//!
//! # Restarts: static membership and the session timeout
//!
//! Without a `group.instance.id`, a member that dies without leaving the group (SIGKILL, OOM,
//! a panic exit) holds its partitions until `session.timeout.ms` expires, and its restarted
//! process joins as a new member, triggering a rebalance of the whole group; on the test broker
//! (tansu 0.6) such restarts could leave the group rebalancing for minutes. With a stable
//! instance id per replica, the restarted process takes over its old membership and gets its
//! partitions back without a rebalance. Set it per replica (Kubernetes: the StatefulSet pod
//! name; compose: one per service); two live processes with the same id fence each other (the
//! older one stops with a fatal error).
//!
//! The session timeout is then how long the group waits for a member that does not come
//! back before reassigning its partitions. 45 s (Kafka's default since 3.0) covers a container
//! restart (including Kubernetes' first crash-loop back-offs of 10 s and 20 s), so a crash
//! costs no rebalance, while a replica that is gone for good stalls its partitions for at
//! most 45 s. Static members do not leave the group on a clean shutdown either, so scaling
//! down also waits that long. Lower it (e.g. 10 s, as the kill test does) for faster failover
//! at the price of rebalances on slow restarts; brokers bound it by their
//! `group.min/max.session.timeout.ms`.
//!
//! # Prefetch
//!
//! Each partition has its own queue (the runtime splits them), and librdkafka applies
//! `queued.max.messages.kbytes` and `queued.min.messages` *per partition queue* then: with its
//! defaults (64 MiB, 100000 messages) a worker lagging on 12 partitions may prefetch up to
//! 768 MiB. Fetching for a partition pauses once its queue holds either limit, so the defaults
//! here bound prefetch to about 12 x (2 MiB + one 1 MiB partition fetch) for 12 partitions,
//! while 2000 queued messages still cover seconds of handler work per partition. The audit
//! benchmark (`taskflow-bench audit-rss`) measures the peak RSS with these defaults and with
//! librdkafka's.
//!
//! # Fetch wait
//!
//! `fetch.wait.max.ms` is how long the broker may hold a fetch that found too little data.
//! A task service's topics are mostly quiet, so each event's latency is bounded by it. Some
//! brokers (tansu 0.6) also sleep part of it after a fetch that did find data, which caps a
//! consumer's throughput at a few fetches per second with librdkafka's 500 ms. 100 ms costs
//! a broker at most ten empty fetches per second per consumer.
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use taskflow_infra::config::{env_opt, env_or, ConfigError};

/// `partition.assignment.strategy`: an enum, not a free string, so a typo fails at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Assignor {
    #[default]
    Range,
    RoundRobin,
    CooperativeSticky,
}

impl Assignor {
    pub fn as_str(&self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::RoundRobin => "roundrobin",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }
}

impl fmt::Display for Assignor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Assignor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "range" => Ok(Assignor::Range),
            "roundrobin" | "round-robin" => Ok(Assignor::RoundRobin),
            "cooperative-sticky" => Ok(Assignor::CooperativeSticky),
            other => Err(format!(
                "unknown assignor {other:?} (expected range, roundrobin or cooperative-sticky)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    pub group_id: String,
    pub client_id: String,
    pub topics: Vec<String>,
    pub assignor: Assignor,
    pub session_timeout: Duration,
    pub commit_interval: Duration,
    pub commit_every: u64,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub drain_timeout: Duration,
    pub lag_interval: Duration,
    pub dlq_timeout: Duration,
    /// `group.instance.id` (static membership), when set.
    pub group_instance_id: Option<String>,
    /// Longest wait on a partition queue before polling it again.
    pub queue_poll_timeout: Duration,
    /// How long an unknown schema id (registry 404) is retried before dead-lettering.
    pub unknown_schema_retry: Duration,
    /// `queued.max.messages.kbytes` (per partition queue).
    pub queued_max_kbytes: u64,
    /// `queued.min.messages` (per partition queue).
    pub queued_min_messages: u64,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: u64,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: u64,
    /// `fetch.wait.max.ms`.
    pub fetch_wait_max: Duration,
    /// Extra librdkafka properties for the consumer, applied last (tests use this for short
    /// session timeouts and the like).
    pub consumer_overrides: Vec<(String, String)>,
}

/// `template` with `{hostname}` replaced by `hostname`, so one setting gives each replica
/// its own id: compose's `--scale` starts replicas from one service definition, and a
/// container's hostname (its id) is its own and survives its restarts. Without a hostname
/// the placeholder stays, which still names one replica.
pub fn instance_id(template: &str, hostname: Option<&str>) -> String {
    match hostname {
        Some(h) if !h.is_empty() => template.replace("{hostname}", h),
        _ => template.to_owned(),
    }
}

/// `HOSTNAME` (set in every container), else `/etc/hostname`.
fn hostname() -> Option<String> {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

impl RuntimeSettings {
    /// Defaults for the given group and topics (the constructor tests use).
    pub fn new(group_id: impl Into<String>, topics: &[&str]) -> Self {
        let group_id = group_id.into();
        Self {
            client_id: group_id.clone(),
            group_id,
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            assignor: Assignor::Range,
            session_timeout: Duration::from_secs(45),
            commit_interval: Duration::from_millis(500),
            commit_every: 500,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(10),
            lag_interval: Duration::from_secs(5),
            dlq_timeout: Duration::from_secs(30),
            group_instance_id: None,
            queue_poll_timeout: Duration::from_secs(1),
            unknown_schema_retry: Duration::from_secs(60),
            queued_max_kbytes: 2048,
            queued_min_messages: 2000,
            fetch_max_bytes: 8 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            fetch_wait_max: Duration::from_millis(100),
            consumer_overrides: Vec::new(),
        }
    }

    /// Reads the variables in the module table; the defaults are `new(default_group,
    /// default_topics)`.
    pub fn from_env(default_group: &str, default_topics: &[&str]) -> Result<Self, SettingsError> {
        let defaults = Self::new(default_group, default_topics);
        let group_id = env_or("TASKFLOW_KAFKA_GROUP_ID", defaults.group_id.clone())?;
        let topics = parse_topics(&env_or("TASKFLOW_KAFKA_TOPICS", defaults.topics.join(","))?)
            .map_err(|reason| SettingsError::Invalid {
                name: "TASKFLOW_KAFKA_TOPICS",
                reason,
            })?;
        let client_id = env_or("TASKFLOW_KAFKA_CLIENT_ID", group_id.clone())?;
        let assignor_text: String = env_or("TASKFLOW_KAFKA_ASSIGNOR", "range".to_owned())?;
        let assignor = assignor_text
            .parse()
            .map_err(|reason| SettingsError::Invalid {
                name: "TASKFLOW_KAFKA_ASSIGNOR",
                reason,
            })?;
        Ok(Self {
            group_id,
            client_id,
            topics,
            assignor,
            session_timeout: millis(
                "TASKFLOW_KAFKA_SESSION_TIMEOUT_MS",
                defaults.session_timeout,
            )?,
            commit_interval: millis(
                "TASKFLOW_CONSUMER_COMMIT_INTERVAL_MS",
                defaults.commit_interval,
            )?,
            commit_every: count("TASKFLOW_CONSUMER_COMMIT_EVERY", defaults.commit_every)?,
            initial_backoff: millis(
                "TASKFLOW_CONSUMER_INITIAL_BACKOFF_MS",
                defaults.initial_backoff,
            )?,
            max_backoff: millis("TASKFLOW_CONSUMER_MAX_BACKOFF_MS", defaults.max_backoff)?,
            drain_timeout: millis("TASKFLOW_CONSUMER_DRAIN_TIMEOUT_MS", defaults.drain_timeout)?,
            lag_interval: millis("TASKFLOW_CONSUMER_LAG_INTERVAL_MS", defaults.lag_interval)?,
            dlq_timeout: millis("TASKFLOW_CONSUMER_DLQ_TIMEOUT_MS", defaults.dlq_timeout)?,
            group_instance_id: env_opt::<String>("TASKFLOW_KAFKA_GROUP_INSTANCE_ID")?
                .map(|id| instance_id(&id, hostname().as_deref())),
            queue_poll_timeout: millis(
                "TASKFLOW_CONSUMER_QUEUE_POLL_MS",
                defaults.queue_poll_timeout,
            )?,
            unknown_schema_retry: Duration::from_secs(count(
                "TASKFLOW_UNKNOWN_SCHEMA_RETRY_SECS",
                defaults.unknown_schema_retry.as_secs(),
            )?),
            queued_max_kbytes: count(
                "TASKFLOW_CONSUMER_QUEUED_MAX_KBYTES",
                defaults.queued_max_kbytes,
            )?,
            queued_min_messages: count(
                "TASKFLOW_CONSUMER_QUEUED_MIN_MESSAGES",
                defaults.queued_min_messages,
            )?,
            fetch_max_bytes: count(
                "TASKFLOW_CONSUMER_FETCH_MAX_BYTES",
                defaults.fetch_max_bytes,
            )?,
            max_partition_fetch_bytes: count(
                "TASKFLOW_CONSUMER_MAX_PARTITION_FETCH_BYTES",
                defaults.max_partition_fetch_bytes,
            )?,
            fetch_wait_max: millis(
                "TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS",
                defaults.fetch_wait_max,
            )?,
            // librdkafka's own debug contexts (e.g. `cgrp` for group membership), logged
            // through `tracing` at debug level.
            consumer_overrides: env_opt::<String>("TASKFLOW_KAFKA_DEBUG")?
                .map(|contexts| vec![("debug".to_owned(), contexts)])
                .unwrap_or_default(),
        })
    }

    /// Checks what librdkafka would otherwise reject late or misbehave on.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |name: &'static str, reason: &str| {
            Err(SettingsError::Invalid {
                name,
                reason: reason.to_owned(),
            })
        };
        if self.group_id.trim().is_empty() {
            return invalid("group_id", "must not be empty");
        }
        if self.topics.is_empty() {
            return invalid("topics", "at least one topic is required");
        }
        for (name, d) in [
            ("commit_interval", self.commit_interval),
            ("lag_interval", self.lag_interval),
            ("initial_backoff", self.initial_backoff),
            ("dlq_timeout", self.dlq_timeout),
            ("queue_poll_timeout", self.queue_poll_timeout),
        ] {
            if d.is_zero() {
                return invalid(name, "must be greater than zero");
            }
        }
        if self.commit_every == 0 {
            return invalid("commit_every", "must be greater than zero");
        }
        for (name, value) in [
            ("queued_max_kbytes", self.queued_max_kbytes),
            ("queued_min_messages", self.queued_min_messages),
            ("fetch_max_bytes", self.fetch_max_bytes),
            ("max_partition_fetch_bytes", self.max_partition_fetch_bytes),
        ] {
            if value == 0 {
                return invalid(name, "must be greater than zero");
            }
        }
        // librdkafka refuses a fetch.max.bytes below message.max.bytes (default 1000000).
        if self.fetch_max_bytes < 1_000_000 {
            return invalid(
                "fetch_max_bytes",
                "must be at least 1000000 (message.max.bytes)",
            );
        }
        if self
            .group_instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return invalid("group_instance_id", "must not be blank when set");
        }
        Ok(())
    }
}

/// Splits a comma-separated topic list, trimming blanks; an empty list is an error.
pub fn parse_topics(text: &str) -> Result<Vec<String>, String> {
    let topics: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if topics.is_empty() {
        return Err("no topic given".to_owned());
    }
    Ok(topics)
}

fn millis(name: &'static str, default: Duration) -> Result<Duration, SettingsError> {
    let text: String = env_or(name, default.as_millis().to_string())?;
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|e| SettingsError::Invalid {
            name,
            reason: format!("expected milliseconds: {e}"),
        })
}

fn count(name: &'static str, default: u64) -> Result<u64, SettingsError> {
    let text: String = env_or(name, default.to_string())?;
    text.trim()
        .parse::<u64>()
        .map_err(|e| SettingsError::Invalid {
            name,
            reason: format!("expected a count: {e}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_id_template_takes_the_hostname() {
        assert_eq!(
            instance_id("taskflow-audit-{hostname}", Some("3f2a9c1d0b7e")),
            "taskflow-audit-3f2a9c1d0b7e"
        );
        assert_eq!(instance_id("fixed-1", Some("h")), "fixed-1");
        assert_eq!(
            instance_id("taskflow-audit-{hostname}", None),
            "taskflow-audit-{hostname}"
        );
    }

    #[test]
    fn assignor_parses_known_names_only() {
        assert_eq!("range".parse::<Assignor>(), Ok(Assignor::Range));
        assert_eq!(
            " Cooperative-Sticky ".parse::<Assignor>(),
            Ok(Assignor::CooperativeSticky)
        );
        assert_eq!("roundrobin".parse::<Assignor>(), Ok(Assignor::RoundRobin));
        assert!("sticky".parse::<Assignor>().is_err());
        assert_eq!(
            Assignor::CooperativeSticky.to_string(),
            "cooperative-sticky"
        );
    }

    #[test]
    fn topics_are_trimmed_and_must_not_be_empty() {
        assert_eq!(
            parse_topics(" a, b ,,c ").unwrap(),
            vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]
        );
        assert!(parse_topics(" , ").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let s = RuntimeSettings::new("g", &["t1", "t2"]);
        assert_eq!(s.client_id, "g");
        assert_eq!(s.assignor, Assignor::Range);
        assert_eq!(s.commit_interval, Duration::from_millis(500));
        assert!(s.validate().is_ok());
    }

    #[test]
    fn validation_rejects_unusable_settings() {
        assert!(RuntimeSettings::new("", &["t"]).validate().is_err());
        assert!(RuntimeSettings::new("g", &[]).validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.commit_interval = Duration::ZERO;
        assert!(s.validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.commit_every = 0;
        assert!(s.validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.queue_poll_timeout = Duration::ZERO;
        assert!(s.validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.fetch_max_bytes = 65536;
        assert!(s.validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.queued_max_kbytes = 0;
        assert!(s.validate().is_err());
        let mut s = RuntimeSettings::new("g", &["t"]);
        s.group_instance_id = Some(" ".to_owned());
        assert!(s.validate().is_err());
    }

    #[test]
    fn prefetch_defaults_bound_twelve_partitions_well_below_librdkafkas() {
        let s = RuntimeSettings::new("g", &["t"]);
        // Per partition: the queue limit plus one partition fetch that may overshoot it.
        let per_partition = s.queued_max_kbytes * 1024 + s.max_partition_fetch_bytes;
        let twelve = 12 * per_partition + s.fetch_max_bytes;
        assert!(twelve <= 48 * 1024 * 1024, "{twelve} bytes");
        assert!(s.group_instance_id.is_none(), "static membership is opt-in");
        assert_eq!(s.unknown_schema_retry, Duration::from_secs(60));
    }

    #[test]
    fn from_env_uses_defaults_when_unset() {
        // The variables read here are not set by the test environment.
        let s = RuntimeSettings::from_env("taskflow-audit", &["a", "b"]).unwrap();
        assert_eq!(s.group_id, "taskflow-audit");
        assert_eq!(s.topics, vec!["a".to_owned(), "b".to_owned()]);
        assert_eq!(s.max_backoff, Duration::from_secs(30));
    }
}
