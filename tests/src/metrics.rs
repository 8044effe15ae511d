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
