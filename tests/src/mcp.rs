//! The official MCP Python SDK (`mcp` from PyPI) as the client of
//! `taskflow-mcp` in tests, driven by `tests/mcp/drive.py`.
//!
//! Installed once into a venv under `$TASKFLOW_CI_CACHE` (default
//! `~/.cache/taskflow-ci`, where `scripts/fuzz-api` keeps schemathesis),
//! pinned, and reused by later runs; it needs `python3` with `venv` and PyPI.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// The pinned SDK version.
pub const MCP_SDK_VERSION: &str = "2.3.0";

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TASKFLOW_CI_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("taskflow-ci")
}

fn has_sdk(python: &PathBuf) -> bool {
    Command::new(python)
        .args([
            "-c",
            &format!(
                "import importlib.metadata as m, mcp, jsonschema; \
                 assert m.version('mcp') == '{MCP_SDK_VERSION}'"
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The venv's python with the SDK, installing it first if missing.
/// Serialised: the tests of one binary run in parallel.
pub fn python_with_mcp_sdk() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = cache_dir().join(format!("mcp-sdk-{MCP_SDK_VERSION}-venv"));
    let python = venv.join("bin").join("python");
    if has_sdk(&python) {
        return python;
    }
    eprintln!(
        "installing the MCP Python SDK {MCP_SDK_VERSION} into {}",
        venv.display()
    );
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(cache_dir()).expect("create the cache directory");
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "python3 -m venv failed (python3 with venv is required)");
    let ok = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("mcp=={MCP_SDK_VERSION}"))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pip install mcp=={MCP_SDK_VERSION} failed");
    assert!(
        has_sdk(&python),
        "the MCP SDK does not import after installing"
    );
    python
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
