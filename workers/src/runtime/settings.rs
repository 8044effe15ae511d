//! Consumer runtime settings: `TASKFLOW_*` environment variables with documented defaults, or
//! [`RuntimeSettings::new`] for tests.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `TASKFLOW_KAFKA_GROUP_ID` | the worker's group | consumer group |
//! | `TASKFLOW_KAFKA_TOPICS` | the worker's topics | comma-separated topics |
//! | `TASKFLOW_KAFKA_CLIENT_ID` | the group id | `client.id` of consumer and DLQ producer |
//! | `TASKFLOW_KAFKA_ASSIGNOR` | `range` | `range`, `roundrobin` or `cooperative-sticky` (tansu 0.6 only works with `range`; `cooperative-sticky` suits Redpanda) |
//! | `TASKFLOW_KAFKA_SESSION_TIMEOUT_MS` | 45000 | `session.timeout.ms` |
//! | `TASKFLOW_CONSUMER_COMMIT_INTERVAL_MS` | 500 | periodic async commit of done offsets |
//! | `TASKFLOW_CONSUMER_COMMIT_EVERY` | 500 | also commit once this many messages are done |
//! | `TASKFLOW_CONSUMER_INITIAL_BACKOFF_MS` | 100 | first retry delay after a transient failure |
//! | `TASKFLOW_CONSUMER_MAX_BACKOFF_MS` | 30000 | retry delay cap |
//! | `TASKFLOW_CONSUMER_DRAIN_TIMEOUT_MS` | 10000 | how long a revoke or shutdown waits for in-flight messages |
//! | `TASKFLOW_CONSUMER_LAG_INTERVAL_MS` | 5000 | consumer lag gauge refresh |
//! | `TASKFLOW_CONSUMER_DLQ_TIMEOUT_MS` | 30000 | DLQ delivery timeout (`message.timeout.ms`) before the send is retried |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use taskflow_infra::config::{env_or, ConfigError};

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
    /// Extra librdkafka properties for the consumer, applied last (tests use this for short
    /// session timeouts and the like).
    pub consumer_overrides: Vec<(String, String)>,
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
            consumer_overrides: Vec::new(),
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
        ] {
            if d.is_zero() {
                return invalid(name, "must be greater than zero");
            }
        }
        if self.commit_every == 0 {
            return invalid("commit_every", "must be greater than zero");
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
