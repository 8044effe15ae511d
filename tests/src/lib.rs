//! Support code for Taskflow's end-to-end tests: a database per test, unique
//! topic names, a plain rdkafka consumer to observe what was produced, a
//! tansu broker process a test can stop and restart, and a Schema Registry
//! stand-in for machines without Redpanda.
//!
//! Environment: `TASKFLOW_TEST_DATABASE_URL` (an admin URL on the server that
//! gets one database per test), `TASKFLOW_TEST_BROKERS`,
//! `TASKFLOW_TEST_SCHEMA_REGISTRY_URL` (a stand-in starts when unset),
//! `TASKFLOW_TEST_TANSU_BIN`, `TASKFLOW_TEST_LOG` (logs stay silent unless set).
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

pub mod broker;
pub mod db;
pub mod email;
pub mod events;
pub mod inproc;
pub mod mcp;
pub mod metrics;
pub mod npm;
pub mod pgproxy;
pub mod pyvenv;
pub mod registry;
pub mod sse;
pub mod system;
pub mod webhooks;
pub mod worker;

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Installs a tracing subscriber only when `TASKFLOW_TEST_LOG` is set, so
/// test output stays readable.
pub fn init_test_logging() {
    if let Ok(filter) = std::env::var("TASKFLOW_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
