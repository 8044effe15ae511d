//! Broker fixtures: topic creation, a plain rdkafka consumer that records what
//! arrived, and a tansu process a test can stop and start again.

use std::{
    collections::HashMap,
    net::TcpListener,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    message::{Headers, Message},
    ClientConfig,
};
use tokio::process::{Child, Command};

/// The broker under test: `TASKFLOW_TEST_BROKERS` (set by `.ci/run`, or a
/// docker-compose Redpanda).
pub fn brokers() -> String {
    std::env::var("TASKFLOW_TEST_BROKERS").expect(
        "TASKFLOW_TEST_BROKERS is not set: run the tests through .ci/run, or point it at a Kafka-protocol broker",
    )
}

pub async fn create_topic(brokers: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = admin
        .create_topics(
            [&topic],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topic request");
    for r in results {
        if let Err((t, e)) = r {
            if e != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                panic!("create topic {t}: {e}");
            }
        }
    }
    // Wait until the topic's partitions show up in metadata.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = admin
            .inner()
            .fetch_metadata(Some(name), Duration::from_secs(5));
        if let Ok(md) = md {
            if md
                .topics()
                .iter()
                .any(|t| t.name() == name && t.partitions().len() == partitions as usize)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} never appeared");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A message as a plain consumer saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
    pub partition: i32,
    pub offset: i64,
    /// When this consumer received it, for latency figures.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

/// A consumer in its own group reading a topic from the beginning.
pub struct Collector {
    consumer: StreamConsumer,
}

impl Collector {
    pub fn new(brokers: &str, topic: &str) -> Self {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", crate::unique("collector"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "range")
            // Short fetch waits: arrival stamps should measure the producer
            // side, not the broker holding an empty fetch for 500 ms.
            .set("fetch.wait.max.ms", "10")
            .create()
            .expect("collector consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        Self { consumer }
    }

    /// Polls until the group has assigned partitions to this consumer, so a
    /// measurement does not include the group join. Only for empty topics:
    /// a message arriving meanwhile would be consumed here, so it panics.
    pub async fn wait_for_assignment(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if self
                .consumer
                .assignment()
                .map(|a| a.count() > 0)
                .unwrap_or(false)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "collector was never assigned partitions"
            );
            if let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(100), self.consumer.recv()).await
            {
                panic!(
                    "wait_for_assignment on a non-empty topic (offset {})",
                    m.offset()
                );
            }
        }
    }

    /// Receives until `n` messages arrived or `timeout` passed.
    pub async fn collect(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.consumer.recv()).await {
                Ok(Ok(m)) => out.push(Received {
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers: m
                        .headers()
                        .map(|hs| {
                            hs.iter()
                                .map(|h| {
                                    (
                                        h.key.to_owned(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    partition: m.partition(),
                    offset: m.offset(),
                    received_at: chrono::Utc::now(),
                }),
                Ok(Err(e)) => tracing::debug!(error = %e, "collector receive error"),
                Err(_) => break,
            }
        }
        out
    }

    /// Keeps receiving for `quiet` and returns whatever else arrived: used to
    /// prove that nothing beyond the expected messages was produced.
    pub async fn drain_extra(&self, quiet: Duration) -> Vec<Received> {
        self.collect(usize::MAX, quiet).await
    }
}

/// A tansu broker owned by one test, with its sqlite store in a temporary
/// directory so it keeps records and offsets across `stop` and `start`.
pub struct TansuBroker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl TansuBroker {
    pub fn binary() -> PathBuf {
        std::env::var_os("TASKFLOW_TEST_TANSU_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("tansu"))
    }

    pub async fn start_new() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut broker = Self {
            port,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        broker.start().await;
        broker
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub async fn start(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("log file");
        let child = Command::new(Self::binary())
            .current_dir(self.dir.path())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::from(log.try_clone().expect("log file")))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "spawn {:?}: {e} (set TASKFLOW_TEST_TANSU_BIN)",
                    Self::binary()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(self.address())
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        add_missing_indexes(&self.dir.path().join("tansu.db")).await;
    }

    /// SIGKILL: nothing is flushed or handed over, the harshest stop.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }
}

/// The indexes tansu 0.6.0's sqlite schema lacks (see `tests/tansu/indexes.sql`), added
/// once tansu has created its tables. Without them every fetched record scans all headers
/// the broker holds. Needs the `sqlite3` command (`.ci/run` installs it); without it the
/// broker still works, only slower, and this says so on stderr.
pub async fn add_missing_indexes(db: &std::path::Path) {
    const SQL: &str = include_str!("../tansu/indexes.sql");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = sqlite3(db, SQL).await;
        match out {
            Ok(o) if o.status.success() => return,
            // tansu creates its tables right after it starts listening.
            Ok(o) if Instant::now() < deadline => {
                tracing::debug!(stderr = %String::from_utf8_lossy(&o.stderr), "tansu schema not ready");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(o) => panic!(
                "adding indexes to {}: {}",
                db.display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => {
                eprintln!(
                    "taskflow-tests: cannot run sqlite3 ({e}); tansu runs without the indexes of \
                     tests/tansu/indexes.sql, and every fetch scans all stored headers"
                );
                return;
            }
        }
    }
}

/// Runs `sql` (given on standard input: it starts with a comment, which the command line
/// would take for an option) against the database file `db`.
async fn sqlite3(db: &std::path::Path, sql: &str) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("sqlite3")
        .args(["-bail", "-cmd", ".timeout 5000"])
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(sql.as_bytes()).await?;
    }
    child.wait_with_output().await
}

impl TansuBroker {
    /// SIGSTOP: the broker keeps its sockets open but answers nothing, as a
    /// slow or stalled broker does; requests pile up in its socket buffers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`pause`](Self::pause).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let pid = self
            .child
            .as_ref()
            .and_then(Child::id)
            .expect("broker is running");
        let status = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {sig} {pid}");
    }
}
