//! The official MCP Python SDK (`mcp` from PyPI) as the client of
//! `taskflow-mcp` in tests, driven by `tests/mcp/drive.py`.
//!
//! Installed once into a venv under `$TASKFLOW_CI_CACHE` (default
//! `~/.cache/taskflow-ci`, where `scripts/fuzz-api` keeps schemathesis),
//! pinned, and reused by later runs; it needs `python3` with `venv` and PyPI.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The pinned SDK version.
pub const MCP_SDK_VERSION: &str = "2.3.0";

/// The venv's python with the SDK, installing it first if missing.
pub fn python_with_mcp_sdk() -> PathBuf {
    crate::pyvenv::python_with(
        &format!("mcp-sdk-{MCP_SDK_VERSION}-venv"),
        &[&format!("mcp=={MCP_SDK_VERSION}")],
        &format!(
            "import importlib.metadata as m, mcp, jsonschema; \
             assert m.version('mcp') == '{MCP_SDK_VERSION}'"
        ),
    )
}

/// Runs `tests/mcp/drive.py` with `config` on stdin and returns its report.
pub async fn drive(config: &Value) -> Value {
    let python = tokio::task::spawn_blocking(python_with_mcp_sdk)
        .await
        .expect("install task");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/mcp/drive.py");
    let mut child = tokio::process::Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the MCP client");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin
        .write_all(config.to_string().as_bytes())
        .await
        .expect("write the client's config");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .expect("the MCP client finished within 300 s")
        .expect("MCP client output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the MCP client failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the MCP client's report is not JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}
