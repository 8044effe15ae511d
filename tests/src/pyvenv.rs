//! Python tools from PyPI for tests (the MCP SDK, the Standard Webhooks library), each in a
//! venv under `$TASKFLOW_CI_CACHE` (default `~/.cache/taskflow-ci`, where `scripts/fuzz-api`
//! keeps schemathesis), pinned, installed once and reused by later runs. Needs `python3`
//! with `venv`, and PyPI the first time.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    sync::Mutex,
};

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TASKFLOW_CI_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("taskflow-ci")
}

fn probe_ok(python: &PathBuf, probe: &str) -> bool {
    Command::new(python)
        .args(["-c", probe])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The python of venv `name` with `requirements` installed, installing them first when
/// `probe` (Python code) fails. Serialised: the tests of one binary run in parallel.
pub fn python_with(name: &str, requirements: &[&str], probe: &str) -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let venv = cache_dir().join(name);
    let python = venv.join("bin").join("python");
    if probe_ok(&python, probe) {
        return python;
    }
    eprintln!("installing {requirements:?} into {}", venv.display());
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
        .args(requirements)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "pip install {requirements:?} failed");
    assert!(
        probe_ok(&python, probe),
        "{requirements:?} do not import after installing"
    );
    python
}
