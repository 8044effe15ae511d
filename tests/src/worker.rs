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

/// A port free at the time of asking, for a child process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Polls `url` until it answers 200, at most `timeout`.
pub async fn wait_http_ok(http: &reqwest::Client, url: &str, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered 200"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The shipped `taskflow-api` binary (API and its relay) on ports of its own, ready.
pub struct ApiProcess {
    pub process: WorkerProcess,
    /// `http://127.0.0.1:<port>` of the API.
    pub base: String,
    /// `http://127.0.0.1:<port>` of the admin endpoints (`/metrics`, `/readyz`).
    pub admin: String,
}

impl ApiProcess {
    /// Starts it on `database_url`, publishing task events to `topic` on `brokers`, with
    /// `extra` on top; returns once `/readyz` answers 200.
    pub async fn start(
        database_url: &str,
        brokers: &str,
        registry_url: &str,
        topic: &str,
        extra: &[(&str, String)],
    ) -> Self {
        let (http_port, admin_port) = (free_port(), free_port());
        let mut env = vec![
            ("TASKFLOW_DATABASE_URL", database_url.to_owned()),
            ("TASKFLOW_KAFKA_BROKERS", brokers.to_owned()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry_url.to_owned()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", topic.to_owned()),
            ("TASKFLOW_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
            // Generated per run: the API refuses to start without 32+ bytes.
            (
                "TASKFLOW_JWT_SECRET",
                format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                ),
            ),
        ];
        env.extend(extra.iter().cloned());
        let process = WorkerProcess::start_binary(binary("taskflow-api"), &env);
        let http = reqwest::Client::new();
        let admin = format!("http://127.0.0.1:{admin_port}");
        wait_http_ok(
            &http,
            &format!("{admin}/readyz"),
            std::time::Duration::from_secs(60),
        )
        .await;
        Self {
            process,
            base: format!("http://127.0.0.1:{http_port}"),
            admin,
        }
    }
}
