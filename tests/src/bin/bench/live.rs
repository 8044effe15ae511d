//! `live [SECONDS] [STREAMS]`: the live path from a task-create HTTP response to the entry
//! on another stream of the same user, and how many streams one API process holds.
//!
//! Both parts run the shipped binaries as processes (`taskflow-api` with its relay,
//! `taskflow-notifier`, release builds beside this one) on a fresh database and topics, so
//! the API's RSS is its own:
//!
//! 1. **Latency at 50 and 500 creates/s** for SECONDS each (default 10): one user with two
//!    open streams; the bench creates tasks over HTTP at the rate (as "device A") and the
//!    clock runs from each create's HTTP response to that task's `TaskCreated` frame on
//!    stream B, through outbox → relay → broker → notifier → feed → NOTIFY → stream. Next to
//!    it, a plain idempotent rdkafka producer → consumer at the same rate on the same broker.
//! 2. **STREAMS concurrent streams** (default 10,000) on one API process: STREAMS/10 users
//!    with 10 streams each (devices), the API's RSS before and with them open, then creates
//!    at 50/s for SECONDS spread over the users, each reaching that user's 10 streams: the
//!    push latency from the create's response to each stream's frame, p50/p99/max.
//!
//! Build first: `cargo build --release -p taskflow-producer -p taskflow-workers --bins`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use taskflow_schemas::topics;
use taskflow_tests::{
    broker::create_topic,
    db::{self, TestDb},
    registry::registry_url,
    sse::SseStream,
    unique,
    worker::{binary, free_port, ApiProcess, WorkerProcess},
};
use tokio::sync::mpsc;

use super::{baseline, summary};

/// Streams per user in part 2: a user's devices.
const DEVICES: usize = 10;

struct LiveSystem {
    api: ApiProcess,
    notifier: WorkerProcess,
    http: reqwest::Client,
    _db: TestDb,
}

impl LiveSystem {
    async fn start(brokers: &str) -> anyhow::Result<Self> {
        let topic = unique("bench-live-task-events");
        let reminders = unique("bench-live-reminders");
        let group = unique("bench-live-notifier");
        create_topic(brokers, &topic, 6).await;
        create_topic(brokers, &reminders, 6).await;
        create_topic(brokers, &topics::dlq(&group), 1).await;
        let db = db::fresh().await;
        let registry = registry_url().await;
        let api = ApiProcess::start(
            &db.url,
            brokers,
            &registry,
            &topic,
            &[
                // Thousands of sign-ups from one address are the bench, not an attack.
                ("TASKFLOW_AUTH_RATE_PER_IP", "1000000".to_owned()),
                ("TASKFLOW_AUTH_RATE_PER_ACCOUNT", "1000000".to_owned()),
            ],
        )
        .await;
        let notifier = WorkerProcess::start_binary(
            binary("taskflow-notifier"),
            &[
                ("TASKFLOW_DATABASE_URL", db.url.clone()),
                ("TASKFLOW_KAFKA_BROKERS", brokers.to_owned()),
                ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.clone()),
                ("TASKFLOW_KAFKA_GROUP_ID", group),
                ("TASKFLOW_TOPIC_TASK_EVENTS", topic),
                ("TASKFLOW_TOPIC_REMINDERS", reminders),
                ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{}", free_port())),
                // As every test sets it for tansu, whose fetches otherwise wait out their
                // maximum (see DESIGN.md); Redpanda answers as soon as data arrives.
                ("TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS", "10".to_owned()),
            ],
        );
        Ok(Self {
            api,
            notifier,
            http: reqwest::Client::new(),
            _db: db,
        })
    }

    async fn user(&self) -> anyhow::Result<String> {
        let creds = json!({
            "email": format!("{}@example.test", uuid::Uuid::new_v4().simple()),
            "password": "a long enough passphrase",
        });
        let base = &self.api.base;
        let r = self
            .http
            .post(format!("{base}/auth/signup"))
            .json(&creds)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "signup answered {}", r.status());
        let login: Value = self
            .http
            .post(format!("{base}/auth/login"))
            .json(&creds)
            .send()
            .await?
            .json()
            .await?;
        login["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("login answered {login}"))
    }

    /// Creates a task; returns its id once the response arrived, and when.
    async fn create(&self, token: &str, i: usize) -> Option<(String, Instant)> {
        let r = self
            .http
            .post(format!("{}/tasks", self.api.base))
            .bearer_auth(token)
            .json(&json!({"title": format!("live {i}")}))
            .send()
            .await
            .ok()?;
        let at = Instant::now();
        let body: Value = r.json().await.ok()?;
        Some((body["id"].as_str()?.to_owned(), at))
    }

    /// Opens a stream for `token` and forwards `(task id, arrival)` of each `TaskCreated`
    /// frame to `tx` until the stream ends.
    async fn follow(
        &self,
        token: &str,
        tx: mpsc::UnboundedSender<(String, Instant)>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut s = SseStream::open(&self.http, &self.api.base, token, None)
            .await
            .map_err(anyhow::Error::msg)?;
        Ok(tokio::spawn(async move {
            let forever = Instant::now() + Duration::from_secs(24 * 3600);
            while let Some(f) = s.next_frame(forever).await {
                let at = Instant::now();
                if f.event != "TaskCreated" {
                    continue;
                }
                if let Some(task) = f.data["event"]["metadata"]["task_id"].as_str() {
                    if tx.send((task.to_owned(), at)).is_err() {
                        return;
                    }
                }
            }
        }))
    }

    fn rss_kib(&self) -> (u64, u64) {
        let read = |key: &str| -> u64 {
            let Some(pid) = self.api.process.pid() else {
                return 0;
            };
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with(key))?
                        .split_whitespace()
                        .nth(1)?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        (read("VmRSS:"), read("VmHWM:"))
    }

    async fn stop(self) {
        self.notifier.kill().await;
        self.api.process.kill().await;
    }
}

/// Creates `n` tasks at `rate`/s, task `i` for `tokens[i % len]`; returns each task's
/// response instant.
async fn create_at_rate(
    sys: &LiveSystem,
    tokens: &[String],
    n: usize,
    rate: f64,
) -> HashMap<String, Instant> {
    let started = Instant::now();
    stream::iter(0..n)
        .map(|i| async move {
            let slot = started + Duration::from_secs_f64(i as f64 / rate);
            tokio::time::sleep_until(slot.into()).await;
            sys.create(&tokens[i % tokens.len()], i).await
        })
        .buffer_unordered(1024)
        .filter_map(|x| async move { x })
        .collect()
        .await
}

/// Latencies (ms) from each task's response to each of its `copies` arrivals, waiting at
/// most `patience` after the last create for the rest.
async fn latencies(
    responses: &HashMap<String, Instant>,
    rx: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    arrived: &mut Vec<(String, Instant)>,
    copies: usize,
    patience: Duration,
) -> (Vec<f64>, usize) {
    let want = responses.len() * copies;
    let deadline = Instant::now() + patience;
    let count = |arrived: &[(String, Instant)]| {
        arrived
            .iter()
            .filter(|(t, _)| responses.contains_key(t))
            .count()
    };
    while count(arrived) < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(a)) => arrived.push(a),
            _ => break,
        }
    }
    let mut early = 0;
    let ms = arrived
        .iter()
        .filter_map(|(t, at)| {
            let sent = responses.get(t)?;
            // The frame can beat the HTTP response to this process: the event left the
            // API's transaction before the response was written.
            if at < sent {
                early += 1;
            }
            Some(at.saturating_duration_since(*sent).as_secs_f64() * 1000.0)
        })
        .collect();
    (ms, early)
}

pub(crate) async fn bench_live(brokers: &str, secs: usize, streams: usize) -> anyhow::Result<()> {
    println!("taskflow-bench live: {secs} s per rate, {streams} streams, broker {brokers}");
    println!("  part 1: create response -> TaskCreated on another stream of the same user");
    let sys = LiveSystem::start(brokers).await?;
    let token = sys.user().await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    // Device A only writes; its stream is open as a real client's would be.
    let (a_tx, _a_rx) = mpsc::unbounded_channel();
    let a = sys.follow(&token, a_tx).await?;
    let b = sys.follow(&token, tx).await?;
    let tokens = [token];
    let mut arrived = Vec::new();
    // Warm-up: the relay's producer, the notifier's assignment, the registry's cache.
    let warm = create_at_rate(&sys, &tokens, 20, 20.0).await;
    let (w, _) = latencies(&warm, &mut rx, &mut arrived, 1, Duration::from_secs(120)).await;
    anyhow::ensure!(
        w.len() == warm.len(),
        "warm-up: only {} of {} arrived",
        w.len(),
        warm.len()
    );
    for rate in [50usize, 500] {
        let n = rate * secs;
        arrived.clear();
        let responses = create_at_rate(&sys, &tokens, n, rate as f64).await;
        let (ms, early) = latencies(
            &responses,
            &mut rx,
            &mut arrived,
            1,
            Duration::from_secs(300),
        )
        .await;
        let got = ms.len();
        let (p50, p99, max) = summary(ms);
        let (b50, b99, bmax) = baseline(brokers, n, rate as f64).await?;
        println!("  {rate}/s: {} created, {got} arrived on stream B ({early} before the create's response)", responses.len());
        println!(
            "    create response -> other stream (ms): p50 {p50:.1}  p99 {p99:.1}  max {max:.1}"
        );
        println!(
            "    plain rdkafka produce -> consume (ms): p50 {b50:.1}  p99 {b99:.1}  max {bmax:.1}"
        );
        println!(
            "    ratio live / plain:                    p50 {:.2}x  p99 {:.2}x",
            p50 / b50,
            p99 / b99
        );
    }
    a.abort();
    b.abort();
    sys.stop().await;

    println!("  part 2: {streams} concurrent streams on one API process");
    let sys = Arc::new(LiveSystem::start(brokers).await?);
    let users = streams.div_ceil(DEVICES).max(1);
    let signed_up = Instant::now();
    let tokens: Vec<String> = stream::iter(0..users)
        .map(|_| {
            let sys = Arc::clone(&sys);
            async move { sys.user().await }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let (idle_rss, _) = sys.rss_kib();
    println!(
        "    {users} users signed up in {:.1} s; API RSS before streams: {:.1} MiB",
        signed_up.elapsed().as_secs_f64(),
        idle_rss as f64 / 1024.0
    );
    let (tx, mut rx) = mpsc::unbounded_channel();
    let opening = Instant::now();
    let followers: Vec<tokio::task::JoinHandle<()>> = stream::iter(0..users * DEVICES)
        .map(|i| {
            let (sys, tx) = (Arc::clone(&sys), tx.clone());
            let token = tokens[i % users].clone();
            async move { sys.follow(&token, tx).await }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .context("opening the streams")?;
    drop(tx);
    let open = followers.len();
    let (rss, _) = sys.rss_kib();
    println!(
        "    {open} streams open in {:.1} s; API RSS {:.1} MiB ({:.1} KiB per stream over the idle figure)",
        opening.elapsed().as_secs_f64(),
        rss as f64 / 1024.0,
        (rss.saturating_sub(idle_rss)) as f64 / open.max(1) as f64
    );
    let n = 50 * secs;
    let responses = create_at_rate(&sys, &tokens, n, 50.0).await;
    let mut arrived = Vec::new();
    let (ms, early) = latencies(
        &responses,
        &mut rx,
        &mut arrived,
        DEVICES,
        Duration::from_secs(300),
    )
    .await;
    let got = ms.len();
    let (p50, p99, max) = summary(ms);
    let (rss, peak) = sys.rss_kib();
    println!(
        "    50 creates/s for {secs} s: {} created, {got} of {} frames arrived ({early} before the create's response)",
        responses.len(),
        responses.len() * DEVICES
    );
    println!("    create response -> each of the user's {DEVICES} streams (ms): p50 {p50:.1}  p99 {p99:.1}  max {max:.1}");
    println!(
        "    API RSS with {open} streams under load: {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    for f in followers {
        f.abort();
    }
    if let Ok(sys) = Arc::try_unwrap(sys) {
        sys.stop().await;
    }
    Ok(())
}
