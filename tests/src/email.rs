//! A real SMTP server for tests: `tests/email/smtp_server.py` on `aiosmtpd` (PyPI, pinned),
//! which reports every message it received (envelope, headers, each MIME part) as a JSON
//! line and can refuse the first messages with a 451.

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

/// The pinned server version.
pub const AIOSMTPD_VERSION: &str = "1.4.6";

pub fn python_with_aiosmtpd() -> PathBuf {
    crate::pyvenv::python_with(
        &format!("aiosmtpd-{AIOSMTPD_VERSION}-venv"),
        &[&format!("aiosmtpd=={AIOSMTPD_VERSION}")],
        &format!(
            "import importlib.metadata as m, aiosmtpd.smtp; \
             assert m.version('aiosmtpd') == '{AIOSMTPD_VERSION}'"
        ),
    )
}

pub struct SmtpServer {
    _child: Child,
    pub port: u16,
    messages: mpsc::UnboundedReceiver<Value>,
}

impl SmtpServer {
    /// Starts a server that answers 451 to the first `refuse_first` messages, 250 after.
    pub async fn start(refuse_first: usize) -> Self {
        Self::refusing(refuse_first, "451 4.3.0 Try again later").await
    }

    /// Starts a server that answers `reply` (e.g. `550 5.1.1 No such user`) to the first
    /// `refuse_first` messages, 250 after.
    pub async fn refusing(refuse_first: usize, reply: &str) -> Self {
        let python = python_with_aiosmtpd();
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("email/smtp_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .env("REFUSE_FIRST", refuse_first.to_string())
            .env("REFUSE_WITH", reply)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the SMTP server");
        let mut lines = BufReader::new(child.stdout.take().expect("server stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the SMTP server starts")
            .expect("server output")
            .expect("a PORT line");
        let port = first
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .expect("the server's first line names its port");
        let (tx, messages) = mpsc::unbounded_channel();
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
            port,
            messages,
        }
    }

    /// The next message the server answered (accepted or refused), within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        tokio::time::timeout(timeout, self.messages.recv())
            .await
            .ok()
            .flatten()
    }
}
