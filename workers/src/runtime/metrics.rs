//! Consumer metrics, registered in the registry the caller passes (never the global default
//! one, so several workers can live in one test process). Labels are bounded: topic,
//! partition, outcome and kind, never ids. Every metric carries a constant `group` label so
//! workers of different groups can share one registry.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler's effect is durable.
    Ok,
    /// Dead-lettered (the DLQ delivery is acknowledged).
    Dlq,
    /// A transient failure; the message will be attempted again.
    Retry,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Dlq => "dlq",
            Outcome::Retry => "retry",
        }
    }
}

#[derive(Clone)]
pub struct ConsumerMetrics {
    messages: IntCounterVec,
    handler_seconds: HistogramVec,
    lag: IntGaugeVec,
    dlq: IntCounterVec,
    rebalances: IntCounterVec,
    commits: IntCounterVec,
    decode_retries: IntCounterVec,
    panics: IntCounterVec,
}

impl ConsumerMetrics {
    pub fn register(registry: &Registry, group: &str) -> Result<Self, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).const_label("group", group);
        let messages = IntCounterVec::new(
            opts(
                "taskflow_consumer_messages_total",
                "Messages handled, by outcome: ok (effect durable), dlq (dead-lettered), retry (transient failure, attempted again).",
            ),
            &["topic", "outcome"],
        )?;
        let handler_seconds = HistogramVec::new(
            HistogramOpts::new(
                "taskflow_consumer_handler_seconds",
                "Duration of one handler attempt.",
            )
            .const_label("group", group)
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["topic"],
        )?;
        let lag = IntGaugeVec::new(
            opts(
                "taskflow_consumer_lag",
                "High watermark minus committed offset, per assigned partition.",
            ),
            &["topic", "partition"],
        )?;
        let dlq = IntCounterVec::new(
            opts(
                "taskflow_consumer_dlq_total",
                "Messages dead-lettered, by source topic.",
            ),
            &["topic"],
        )?;
        let rebalances = IntCounterVec::new(
            opts(
                "taskflow_consumer_rebalances_total",
                "Rebalance callbacks, by kind (assign, revoke, error).",
            ),
            &["kind"],
        )?;
        let commits = IntCounterVec::new(
            opts(
                "taskflow_consumer_commits_total",
                "Offset commits, by mode (async, sync) and result (ok, error).",
            ),
            &["mode", "result"],
        )?;
        let decode_retries = IntCounterVec::new(
            opts(
                "taskflow_consumer_decode_retries_total",
                "Decode attempts retried, by reason: registry_unavailable (unreachable, timeout, 5xx), registry_unauthorized (401/403: credentials refused), unknown_schema (404 for a schema id, retried for a bounded window).",
            ),
            &["topic", "reason"],
        )?;
        let panics = IntCounterVec::new(
            opts(
                "taskflow_consumer_panics_total",
                "Panics while decoding or handling a message; each one stops the worker (exit non-zero) without committing that message.",
            ),
            &["topic"],
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(decode_retries.clone()))?;
        registry.register(Box::new(panics.clone()))?;
        registry.register(Box::new(handler_seconds.clone()))?;
        registry.register(Box::new(lag.clone()))?;
        registry.register(Box::new(dlq.clone()))?;
        registry.register(Box::new(rebalances.clone()))?;
        registry.register(Box::new(commits.clone()))?;
        Ok(Self {
            messages,
            handler_seconds,
            lag,
            dlq,
            rebalances,
            commits,
            decode_retries,
            panics,
        })
    }

    /// A decode attempt failed with a retried error; `reason` is a bounded label.
    pub fn decode_retry(&self, topic: &str, reason: &str) {
        self.decode_retries
            .with_label_values(&[topic, reason])
            .inc();
    }

    pub fn panic(&self, topic: &str) {
        self.panics.with_label_values(&[topic]).inc();
    }

    pub fn message(&self, topic: &str, outcome: Outcome) {
        self.messages
            .with_label_values(&[topic, outcome.as_str()])
            .inc();
        if outcome == Outcome::Dlq {
            self.dlq.with_label_values(&[topic]).inc();
        }
    }

    pub fn handler_duration(&self, topic: &str, seconds: f64) {
        self.handler_seconds
            .with_label_values(&[topic])
            .observe(seconds);
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(lag);
    }

    /// Drops the lag series of a partition this consumer no longer owns, so a stale value
    /// does not linger in dashboards.
    pub fn forget_partition(&self, topic: &str, partition: i32) {
        let _ = self
            .lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    pub fn rebalance(&self, kind: &str) {
        self.rebalances.with_label_values(&[kind]).inc();
    }

    pub fn commit(&self, mode: &str, ok: bool) {
        self.commits
            .with_label_values(&[mode, if ok { "ok" } else { "error" }])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    fn text(registry: &Registry) -> String {
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn records_outcomes_and_dlq_totals() {
        let registry = Registry::new();
        let m = ConsumerMetrics::register(&registry, "g").unwrap();
        m.message("t", Outcome::Ok);
        m.message("t", Outcome::Dlq);
        m.message("t", Outcome::Retry);
        m.rebalance("assign");
        m.set_lag("t", 0, 7);
        m.decode_retry("t", "registry_unauthorized");
        m.panic("t");
        let out = text(&registry);
        assert!(out
            .contains(r#"taskflow_consumer_messages_total{group="g",outcome="dlq",topic="t"} 1"#));
        assert!(out.contains(r#"taskflow_consumer_dlq_total{group="g",topic="t"} 1"#));
        assert!(out.contains(r#"taskflow_consumer_rebalances_total{group="g",kind="assign"} 1"#));
        assert!(out.contains(r#"taskflow_consumer_lag{group="g",partition="0",topic="t"} 7"#));
        assert!(out.contains(
            r#"taskflow_consumer_decode_retries_total{group="g",reason="registry_unauthorized",topic="t"} 1"#
        ));
        assert!(out.contains(r#"taskflow_consumer_panics_total{group="g",topic="t"} 1"#));
        m.forget_partition("t", 0);
        assert!(!text(&registry).contains("taskflow_consumer_lag{"));
    }

    #[test]
    fn two_groups_share_a_registry() {
        let registry = Registry::new();
        ConsumerMetrics::register(&registry, "a").unwrap();
        ConsumerMetrics::register(&registry, "b").unwrap();
        // The same group twice is a programming error the registry reports.
        assert!(ConsumerMetrics::register(&registry, "a").is_err());
    }
}
