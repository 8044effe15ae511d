//! Reading a process's Prometheus registry in tests.

use std::time::{Duration, Instant};

/// The sum of gauge `name` over its series (0 when absent).
pub fn gauge(registry: &prometheus::Registry, name: &str) -> i64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| m.get_gauge().get_value() as i64)
        .sum()
}

/// Waits until gauge `name` reads `want`; panics with `what` after `timeout`.
pub async fn wait_for_gauge(
    registry: &prometheus::Registry,
    name: &str,
    want: i64,
    timeout: Duration,
    what: &str,
) {
    let deadline = Instant::now() + timeout;
    while gauge(registry, name) != want {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The sum of counter `name` over its series whose labels include every pair of `labels`
/// (0 when absent).
pub fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

/// Waits until counter `name` (series matching `labels`) reaches `at_least`; panics after
/// `timeout`.
pub async fn wait_for_counter(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[(&str, &str)],
    at_least: f64,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while counter(registry, name, labels) < at_least {
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} never reached {at_least} (is {})",
            counter(registry, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// (sample count, sample sum) of histogram `name` over its series ((0, 0) when absent).
pub fn histogram(registry: &prometheus::Registry, name: &str) -> (u64, f64) {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .map(|m| {
            let h = m.get_histogram();
            (h.get_sample_count(), h.get_sample_sum())
        })
        .fold((0, 0.0), |(c, s), (c2, s2)| (c + c2, s + s2))
}
