//! `topics create` and `topics describe`.
//!
//! Retention is explicit on every topic, never the broker's default (7 days on Redpanda):
//! task events are the replay source of every consumer (an audit rebuild, a new worker) and
//! are kept forever; reminders are transient, their durable record is the audit log: 30
//! days; dead letters are kept until an operator handled them: forever
//! (docs/operations.md, "Retention").
//!
//! Creation is idempotent: a topic that exists gets its retention set again (AlterConfigs),
//! so changing a value here and re-running applies it. Its partition count is never
//! changed: raising it moves keys to other partitions and breaks per-task order for events
//! in flight, so a differing count is only reported.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use taskflow_schemas::topics;

use super::kafka::REQUEST_TIMEOUT;
use super::table::{opt, Table};
use super::{AdminError, Broker, Human};

/// `retention.ms` for "never delete".
pub const FOREVER_MS: i64 = -1;
pub const THIRTY_DAYS_MS: i64 = 30 * 24 * 3600 * 1000;

/// Taskflow's consumer groups; each has its dead-letter topic `taskflow.dlq.<group>`.
pub const GROUPS: [&str; 4] = [
    "taskflow-audit",
    "taskflow-recurrence",
    "taskflow-reminders",
    "taskflow-notifier",
];

/// The configs `topics create` sets and `topics describe` shows.
pub const MANAGED_CONFIGS: [&str; 3] = ["cleanup.policy", "retention.ms", "retention.bytes"];

/// Taskflow's topics: names and partition counts (flags and the environment override them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub task_events: String,
    pub reminders: String,
    pub groups: Vec<String>,
    pub task_events_partitions: i32,
    pub reminders_partitions: i32,
    pub dlq_partitions: i32,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            task_events: topics::TASK_EVENTS.to_owned(),
            reminders: topics::REMINDERS.to_owned(),
            groups: GROUPS.iter().map(|g| (*g).to_owned()).collect(),
            task_events_partitions: 6,
            reminders_partitions: 6,
            // One partition keeps a group's dead letters in the order they failed.
            dlq_partitions: 1,
        }
    }
}

/// One topic as Taskflow wants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub retention_ms: i64,
}

impl TopicSpec {
    /// The configs set on creation and re-set on an existing topic.
    pub fn configs(&self) -> [(&'static str, String); 3] {
        [
            ("cleanup.policy", "delete".to_owned()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", "-1".to_owned()),
        ]
    }
}

impl Layout {
    /// Every topic, in the order they are created.
    pub fn specs(&self) -> Vec<TopicSpec> {
        let mut out = vec![
            TopicSpec {
                name: self.task_events.clone(),
                partitions: self.task_events_partitions,
                retention_ms: FOREVER_MS,
            },
            TopicSpec {
                name: self.reminders.clone(),
                partitions: self.reminders_partitions,
                retention_ms: THIRTY_DAYS_MS,
            },
        ];
        out.extend(self.groups.iter().map(|g| TopicSpec {
            name: topics::dlq(g),
            partitions: self.dlq_partitions,
            retention_ms: FOREVER_MS,
        }));
        out
    }

    /// The topics a consumer group reads, when it is one of Taskflow's (README, "Workers").
    pub fn consumed_by(&self, group: &str) -> Option<Vec<String>> {
        let both = || vec![self.task_events.clone(), self.reminders.clone()];
        match group {
            "taskflow-audit" | "taskflow-notifier" => Some(both()),
            "taskflow-recurrence" | "taskflow-reminders" => Some(vec![self.task_events.clone()]),
            _ => None,
        }
    }
}

/// What `topics create` did to one topic.
#[derive(Debug, Clone, Serialize)]
pub struct CreateOutcome {
    pub topic: String,
    pub partitions: i32,
    pub retention_ms: i64,
    /// `created` or `exists`.
    pub action: &'static str,
    /// For an existing topic: `altered`, or `unsupported` (the broker lacks AlterConfigs).
    pub configs: &'static str,
    /// The partition count found on an existing topic, when it differs from the wanted one.
    pub existing_partitions: Option<i32>,
    /// Why something was not done, for people.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    pub topics: Vec<CreateOutcome>,
}

impl Human for CreateReport {
    fn human(&self) -> String {
        let mut t = Table::new(&[
            "TOPIC",
            "PARTITIONS",
            "RETENTION_MS",
            "ACTION",
            "CONFIGS",
            "NOTE",
        ]);
        for o in &self.topics {
            t.row(vec![
                o.topic.clone(),
                o.partitions.to_string(),
                o.retention_ms.to_string(),
                o.action.to_owned(),
                o.configs.to_owned(),
                opt(o.note.as_deref()),
            ]);
        }
        t.render()
    }
}

/// Error codes that mean "this broker does not implement the request", as opposed to a
/// refusal (authorization, policy) that must stop a deployment.
fn unsupported(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedVersion
            | RDKafkaErrorCode::UnsupportedFeature
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::Unknown
            | RDKafkaErrorCode::NotImplemented
    )
}

fn kafka_code(e: &KafkaError) -> Option<RDKafkaErrorCode> {
    e.rdkafka_error_code()
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(REQUEST_TIMEOUT))
        .operation_timeout(Some(REQUEST_TIMEOUT))
}

/// Creates every topic of `specs` that is missing; re-sets the retention of those that
/// exist. Fails on the first refusal other than "already exists" or an unsupported
/// AlterConfigs.
pub async fn create(
    broker: &Broker,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<CreateReport, AdminError> {
    let mut outcomes = Vec::with_capacity(specs.len());
    for spec in specs {
        let configs = spec.configs();
        let mut new = NewTopic::new(
            &spec.name,
            spec.partitions,
            TopicReplication::Fixed(replication),
        );
        for (k, v) in &configs {
            new = new.set(k, v);
        }
        let results = broker
            .admin()
            .create_topics([&new], &options())
            .await
            .map_err(AdminError::kafka(format!("creating topic {}", spec.name)))?;
        let created = match results.into_iter().next() {
            Some(Ok(_)) => true,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) => false,
            Some(Err((_, code))) => {
                return Err(AdminError::Topic {
                    topic: spec.name.clone(),
                    reason: format!("creation refused: {code}"),
                })
            }
            None => {
                return Err(AdminError::Topic {
                    topic: spec.name.clone(),
                    reason: "the broker returned no result for the creation".to_owned(),
                })
            }
        };
        if created {
            wait_for_partitions(broker, &spec.name, spec.partitions).await?;
            outcomes.push(CreateOutcome {
                topic: spec.name.clone(),
                partitions: spec.partitions,
                retention_ms: spec.retention_ms,
                action: "created",
                configs: "set",
                existing_partitions: None,
                note: None,
            });
            continue;
        }
        let existing = broker.partitions(&spec.name)?.len();
        let existing = i32::try_from(existing).unwrap_or(i32::MAX);
        let (configs_done, mut note) = alter(broker, spec, &configs).await?;
        let existing_partitions = (existing != spec.partitions).then_some(existing);
        if let Some(n) = existing_partitions {
            let msg = format!(
                "has {n} partitions, not {}: left as is (changing the count breaks per-task order)",
                spec.partitions
            );
            note = Some(match note {
                Some(prev) => format!("{prev}; {msg}"),
                None => msg,
            });
        }
        outcomes.push(CreateOutcome {
            topic: spec.name.clone(),
            partitions: existing,
            retention_ms: spec.retention_ms,
            action: "exists",
            configs: configs_done,
            existing_partitions,
            note,
        });
    }
    Ok(CreateReport { topics: outcomes })
}

/// AlterConfigs replaces a topic's whole dynamic config, so every managed value is sent.
async fn alter(
    broker: &Broker,
    spec: &TopicSpec,
    configs: &[(&'static str, String)],
) -> Result<(&'static str, Option<String>), AdminError> {
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(&spec.name));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let unsupported_note = |what: String| {
        Ok((
            "unsupported",
            Some(format!(
                "retention not re-set: the broker does not support AlterConfigs ({what})"
            )),
        ))
    };
    match broker.admin().alter_configs([&alter], &options()).await {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(_)) => Ok(("altered", None)),
            Some(Err((_, code))) if unsupported(code) => unsupported_note(code.to_string()),
            Some(Err((_, code))) => Err(AdminError::Topic {
                topic: spec.name.clone(),
                reason: format!("setting retention refused: {code}"),
            }),
            None => unsupported_note("no result".to_owned()),
        },
        Err(e) if kafka_code(&e).is_none_or(unsupported) => unsupported_note(e.to_string()),
        Err(e) => Err(AdminError::kafka(format!(
            "setting retention of {}",
            spec.name
        ))(e)),
    }
}

async fn wait_for_partitions(
    broker: &Broker,
    topic: &str,
    partitions: i32,
) -> Result<(), AdminError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(p) = broker.partitions(topic) {
            if p.len() == usize::try_from(partitions).unwrap_or(0) {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(AdminError::Timeout(format!(
                "topic {topic} was created but its {partitions} partitions did not appear in metadata"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One partition as `topics describe` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub low: i64,
    pub high: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TopicDescription {
    pub topic: String,
    pub partitions: Vec<PartitionInfo>,
    /// The managed configs the broker reported (absent when it could not describe them).
    pub configs: BTreeMap<String, Option<String>>,
    /// Why `configs` is empty, when it is.
    pub configs_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DescribeReport {
    pub topics: Vec<TopicDescription>,
}

impl Human for DescribeReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for (i, d) in self.topics.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            let configs = match &d.configs_error {
                Some(e) => format!("configs unavailable: {e}"),
                None => d
                    .configs
                    .iter()
                    .map(|(k, v)| format!("{k}={}", opt(v.as_deref())))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            out.push_str(&format!(
                "{}  ({} partitions)  {configs}\n",
                d.topic,
                d.partitions.len()
            ));
            let mut t = Table::new(&["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW", "HIGH"]);
            let join = |v: &[i32]| {
                v.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            for p in &d.partitions {
                t.row(vec![
                    p.partition.to_string(),
                    p.leader.to_string(),
                    join(&p.replicas),
                    join(&p.isr),
                    p.low.to_string(),
                    p.high.to_string(),
                ]);
            }
            out.push_str(&t.render());
        }
        out
    }
}

/// Partitions, leaders, replicas, watermarks and the managed configs of each topic.
pub async fn describe(broker: &Broker, names: &[String]) -> Result<DescribeReport, AdminError> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let md = broker.metadata(Some(name))?;
        let topic = md
            .topics()
            .iter()
            .find(|t| t.name() == name)
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .ok_or_else(|| AdminError::NotFound(format!("topic {name} does not exist")))?;
        let mut partitions = Vec::with_capacity(topic.partitions().len());
        for p in topic.partitions() {
            let (low, high) = broker.watermarks(name, p.id())?;
            partitions.push(PartitionInfo {
                partition: p.id(),
                leader: p.leader(),
                replicas: p.replicas().to_vec(),
                isr: p.isr().to_vec(),
                low,
                high,
            });
        }
        partitions.sort_by_key(|p| p.partition);
        let (configs, configs_error) = match describe_configs(broker, name).await {
            Ok(c) => (c, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        };
        out.push(TopicDescription {
            topic: name.clone(),
            partitions,
            configs,
            configs_error,
        });
    }
    Ok(DescribeReport { topics: out })
}

/// The managed configs, or why the broker could not tell (a broker without DescribeConfigs).
async fn describe_configs(
    broker: &Broker,
    topic: &str,
) -> Result<BTreeMap<String, Option<String>>, String> {
    let resource = ResourceSpecifier::Topic(topic);
    let results = broker
        .admin()
        .describe_configs([&resource], &options())
        .await
        .map_err(|e| format!("the broker does not answer DescribeConfigs ({e})"))?;
    match results.into_iter().next() {
        Some(Ok(resource)) => Ok(MANAGED_CONFIGS
            .iter()
            .map(|k| {
                let v = resource.get(k).and_then(|e| e.value.clone());
                ((*k).to_owned(), v)
            })
            .collect()),
        Some(Err(code)) => Err(format!("DescribeConfigs failed: {code}")),
        None => Err("DescribeConfigs returned no result".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_is_the_compose_one() {
        let specs = Layout::default().specs();
        let got: Vec<(&str, i32, i64)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.partitions, s.retention_ms))
            .collect();
        assert_eq!(
            got,
            vec![
                ("taskflow.task-events", 6, -1),
                ("taskflow.reminders", 6, 2_592_000_000),
                ("taskflow.dlq.taskflow-audit", 1, -1),
                ("taskflow.dlq.taskflow-recurrence", 1, -1),
                ("taskflow.dlq.taskflow-reminders", 1, -1),
                ("taskflow.dlq.taskflow-notifier", 1, -1),
            ]
        );
        let configs = specs[1].configs();
        assert_eq!(configs[0], ("cleanup.policy", "delete".to_owned()));
        assert_eq!(configs[1], ("retention.ms", "2592000000".to_owned()));
        assert_eq!(configs[2], ("retention.bytes", "-1".to_owned()));
    }

    #[test]
    fn known_groups_have_their_topics_and_others_none() {
        let l = Layout {
            task_events: "e".into(),
            reminders: "r".into(),
            ..Layout::default()
        };
        assert_eq!(
            l.consumed_by("taskflow-audit"),
            Some(vec!["e".into(), "r".into()])
        );
        assert_eq!(l.consumed_by("taskflow-reminders"), Some(vec!["e".into()]));
        assert_eq!(l.consumed_by("someone-else"), None);
    }

    #[test]
    fn only_missing_apis_count_as_unsupported() {
        assert!(unsupported(RDKafkaErrorCode::UnsupportedVersion));
        assert!(!unsupported(RDKafkaErrorCode::TopicAuthorizationFailed));
        assert!(!unsupported(RDKafkaErrorCode::PolicyViolation));
    }
}
