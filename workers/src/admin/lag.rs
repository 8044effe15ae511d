//! `lag`: per partition, how far a consumer group's committed offset is behind the high
//! watermark.
//!
//! The committed offsets are read with OffsetFetch by a consumer carrying the group's
//! `group.id` that never subscribes: joining the group would rebalance the running workers.
//! (DescribeGroups is not used: tansu 0.6 drops the connection on it.)

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::kafka::REQUEST_TIMEOUT;
use super::table::{opt, Table};
use super::topics::Layout;
use super::{AdminError, Broker, Human};

/// Messages a group has still to process on one partition. Without a committed offset the
/// group starts at the earliest retained message (the workers' `auto.offset.reset`).
pub fn partition_lag(committed: Option<i64>, low: i64, high: i64) -> i64 {
    match committed {
        Some(c) => (high - c.max(low)).max(0),
        None => (high - low).max(0),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionLag {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    /// `None`: the group has committed nothing on this partition.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
    pub lag: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GroupLag {
    pub group: String,
    pub total: i64,
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LagReport {
    pub groups: Vec<GroupLag>,
}

impl Human for LagReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["GROUP", "TOPIC", "PARTITION", "COMMITTED", "HIGH", "LAG"]);
        for g in &self.groups {
            for p in &g.partitions {
                t.row(vec![
                    p.group.clone(),
                    p.topic.clone(),
                    p.partition.to_string(),
                    opt(p.committed),
                    p.high.to_string(),
                    p.lag.to_string(),
                ]);
            }
        }
        let mut out = if t.is_empty() {
            String::new()
        } else {
            t.render()
        };
        for g in &self.groups {
            if g.partitions.is_empty() {
                out.push_str(&format!(
                    "{}: nothing to show (its topics do not exist, or it committed nothing)\n",
                    g.group
                ));
            } else {
                out.push_str(&format!("{}: total lag {}\n", g.group, g.total));
            }
        }
        out
    }
}

/// Lag of each group on `topics` (when empty: the topics a Taskflow group consumes, or, for
/// another group, every topic it has committed offsets on).
pub fn lag(
    broker: &Broker,
    layout: &Layout,
    groups: &[String],
    topics: &[String],
) -> Result<LagReport, AdminError> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let (wanted, only_committed) = if !topics.is_empty() {
            (topics.to_vec(), false)
        } else if let Some(t) = layout.consumed_by(group) {
            (t, false)
        } else {
            (all_topics(broker)?, true)
        };
        let mut tpl = TopicPartitionList::new();
        for topic in &wanted {
            let partitions = match broker.partitions(topic) {
                Ok(p) => p,
                // A Taskflow topic not created yet has no lag to show.
                Err(AdminError::NotFound(_)) if !topics.contains(topic) => continue,
                Err(e) => return Err(e),
            };
            for p in partitions {
                tpl.add_partition(topic, p);
            }
        }
        let committed = committed_offsets(broker, group, tpl)?;
        let mut partitions = Vec::new();
        for (topic, partition, committed) in committed {
            if only_committed && committed.is_none() {
                continue;
            }
            let (low, high) = broker.watermarks(&topic, partition)?;
            partitions.push(PartitionLag {
                group: group.clone(),
                topic,
                partition,
                committed,
                low,
                high,
                lag: partition_lag(committed, low, high),
            });
        }
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        out.push(GroupLag {
            group: group.clone(),
            total: partitions.iter().map(|p| p.lag).sum(),
            partitions,
        });
    }
    Ok(LagReport { groups: out })
}

fn all_topics(broker: &Broker) -> Result<Vec<String>, AdminError> {
    let md = broker.metadata(None)?;
    Ok(md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        // Broker-internal topics (`__consumer_offsets`, ...) are nobody's work.
        .filter(|n| !n.starts_with("__"))
        .collect())
}

/// (topic, partition, committed offset) of `group` for each partition of `tpl`.
pub(crate) fn committed_offsets(
    broker: &Broker,
    group: &str,
    tpl: TopicPartitionList,
) -> Result<Vec<(String, i32, Option<i64>)>, AdminError> {
    if tpl.count() == 0 {
        return Ok(Vec::new());
    }
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(AdminError::kafka(
            "creating a consumer to read committed offsets",
        ))?;
    let committed = consumer
        .committed_offsets(tpl, REQUEST_TIMEOUT)
        .map_err(AdminError::kafka(format!(
            "reading the committed offsets of group {group}"
        )))?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            };
            (e.topic().to_owned(), e.partition(), offset)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_high_watermark_minus_the_committed_offset() {
        assert_eq!(partition_lag(Some(7), 0, 10), 3);
        assert_eq!(partition_lag(Some(10), 0, 10), 0);
        // Nothing committed: everything retained is still to come.
        assert_eq!(partition_lag(None, 4, 10), 6);
        // Committed below the retained start: only what is still there counts.
        assert_eq!(partition_lag(Some(1), 4, 10), 6);
        // A watermark read before the commit landed never shows negative lag.
        assert_eq!(partition_lag(Some(12), 0, 10), 0);
    }
}
