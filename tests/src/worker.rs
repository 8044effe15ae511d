//! Runs the real binaries (`taskflow-audit`, `taskflow-recurrence`, `taskflow-reminders`,
//! `taskflow-api`, `taskflow-mcp`, `taskflow-admin`) as child
//! processes, so a test can SIGKILL them (no drain, no final commit: exactly
//! what a crash looks like) or SIGTERM them and check the exit.

use std::{path::PathBuf, process::Stdio};

use tokio::process::{Child, Command};

/// `TASKFLOW_TEST_AUDIT_BIN`, or `taskflow-audit` beside this test's binary.
pub fn audit_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TASKFLOW_TEST_AUDIT_BIN") {
        return PathBuf::from(p);
    }
    binary("taskflow-audit")
}

/// A workspace binary beside this test's binary (`target/<profile>/`);
/// `scripts/test` builds the workspace binaries before the tests.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test does)",
        bin.display()
    );
    bin
}

fn child_output() -> Stdio {
    if std::env::var_os("TASKFLOW_TEST_LOG").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    }
}

pub struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    /// Starts the audit worker with `env` on top of a quiet default environment.
    pub fn start(env: &[(&str, String)]) -> Self {
        Self::start_binary(audit_binary(), env)
    }

    /// Starts `bin` with `env` on top of a quiet default environment.
    pub fn start_binary(bin: PathBuf, env: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.env("TASKFLOW_ADMIN_ADDR", "127.0.0.1:0")
            .env(
                "TASKFLOW_LOG",
                std::env::var("TASKFLOW_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .env("TASKFLOW_KAFKA_ASSIGNOR", "range")
            // tracing writes to stdout: keep both streams when logs are asked for.
            .stdout(child_output())
            .stderr(child_output())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self {
            child: cmd.spawn().expect("spawn binary under test"),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
    }

    /// Waits for the process to exit on its own (e.g. at a failpoint), at most `timeout`
    /// (then it is killed and the test fails).
    pub async fn wait_exit(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.expect("wait for worker"),
            Err(_) => {
                let _ = self.child.kill().await;
                panic!("the process did not exit within {timeout:?}");
            }
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        self.child.wait().await.expect("wait for worker")
    }

    /// Peak resident set size (VmHWM) in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}
