//! Tracing setup: `TASKFLOW_LOG` is an `EnvFilter` directive (default `info`),
//! `TASKFLOW_LOG_FORMAT=json` switches to one JSON object per line for log
//! shippers; anything else gives human-readable text.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init_tracing() {
    init(false);
}

/// As [`init_tracing`], but logging to stderr: for a process whose stdout
/// is a protocol channel (the MCP server over stdio), where a log line
/// would corrupt the stream.
pub fn init_tracing_stderr() {
    init(true);
}

fn init(stderr: bool) {
    let filter = EnvFilter::try_from_env("TASKFLOW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("TASKFLOW_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt().with_env_filter(filter).with_target(true);
    // try_init: tests build several components in one process, and only the
    // first subscriber may be installed.
    let _ = match (json, stderr) {
        (true, false) => builder.json().flatten_event(true).try_init(),
        (false, false) => builder.try_init(),
        (true, true) => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
        (false, true) => builder.with_writer(std::io::stderr).try_init(),
    };
}
