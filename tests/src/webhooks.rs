//! A real webhook receiver for tests: `tests/webhooks/receiver.py`, which verifies every
//! request with the Standard Webhooks library for Python (PyPI `standardwebhooks`), an
//! implementation of the specification independent of the Rust signer.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
};

/// The pinned library version.
pub const STANDARDWEBHOOKS_VERSION: &str = "1.3.0";

pub fn python_with_standardwebhooks() -> PathBuf {
    crate::pyvenv::python_with(
        &format!("standardwebhooks-{STANDARDWEBHOOKS_VERSION}-venv"),
        &[&format!("standardwebhooks=={STANDARDWEBHOOKS_VERSION}")],
        &format!(
            "import importlib.metadata as m, standardwebhooks.webhooks; \
             assert m.version('standardwebhooks') == '{STANDARDWEBHOOKS_VERSION}'"
        ),
    )
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// 500 to the first `n` requests, then 204 to every verified one.
    FailFirst(usize),
    /// Accepts and never answers: a dead receiver.
    Hang,
}

pub struct Receiver {
    _child: Child,
    stdin: ChildStdin,
    /// `http://127.0.0.1:<port>/hook`.
    pub url: String,
    requests: mpsc::UnboundedReceiver<Value>,
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Self {
        let python = python_with_standardwebhooks();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("webhooks/receiver.py");
        let (fail_first, mode) = match behaviour {
            Behaviour::FailFirst(n) => (n, "ok"),
            Behaviour::Hang => (0, "hang"),
        };
        let mut child = Command::new(python)
            .arg(script)
            .env("FAIL_FIRST", fail_first.to_string())
            .env("MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the webhook receiver");
        let stdin = child.stdin.take().expect("receiver stdin");
        let mut lines = BufReader::new(child.stdout.take().expect("receiver stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the receiver starts")
            .expect("receiver output")
            .expect("a PORT line");
        let port = first
            .strip_prefix("PORT ")
            .expect("the receiver's first line names its port")
            .trim()
            .to_owned();
        let (tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            _child: child,
            stdin,
            url: format!("http://127.0.0.1:{port}/hook"),
            requests,
        }
    }

    /// Verify from now on with `secret`.
    pub async fn set_secret(&mut self, secret: &str) {
        self.stdin
            .write_all(format!("SECRET {secret}\n").as_bytes())
            .await
            .expect("tell the receiver its secret");
        self.stdin.flush().await.expect("flush");
    }

    /// The next request the receiver answered, as it reported it, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.requests.recv())
            .await
            .ok()
            .flatten()
    }
}
