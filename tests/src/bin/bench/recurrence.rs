//! `recurrence [SECONDS]`: completion -> next instance latency at 50 and 500 completions/s.
//!
//! Per rate: a fresh database and topic, the API and its relay in-process (as
//! `TestSystem`), the recurrence worker in-process (`fetch.wait.max.ms=10`, as the tests
//! set it for tansu), SECONDS × rate daily tasks created and their `TaskCreated` consumed
//! first (so no backlog sits in front of the completions). Then the tasks are completed over
//! HTTP at the rate; for each, the clock starts when the completion's HTTP response arrives
//! and stops when the next instance is committed, seen by one poller that queries the
//! database every 2 ms (`tasks.previous_task_id`): from that commit on, `GET /tasks` and
//! `GET /tasks/{id}` return it (the API reads the same database). Polling the HTTP API per
//! completion instead would add thousands of requests per second at 500/s and measure the
//! polling. Afterwards every instance is checked once through `GET /tasks`. The same run
//! measures a plain idempotent rdkafka producer -> consumer at the same rate on the same
//! broker for scale.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use serde_json::{json, Value};
use taskflow_infra::outbox::OutboxWaker;
use taskflow_tests::{broker::create_topic, system::TestSystem, unique};
use taskflow_workers::recurrence::{self, RecurrenceSettings};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{baseline, summary};

fn messages_ok(registry: &prometheus::Registry) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == "taskflow_consumer_messages_total")
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "outcome" && l.value() == "ok")
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

pub(crate) async fn bench_recurrence(brokers: &str, secs: usize) -> anyhow::Result<()> {
    println!("taskflow-bench recurrence: {secs} s of completions per rate, broker {brokers}");
    for rate in [50usize, 500] {
        let n = rate * secs;
        let (p50, p99, max, created, checked) = run_rate(brokers, rate, n).await?;
        let (b50, b99, bmax) = baseline(brokers, n, rate as f64).await?;
        println!("  {rate}/s: {created}/{n} next instances created, {checked} read back through GET /tasks");
        println!("    completion response -> next instance committed (ms): p50 {p50:.1}  p99 {p99:.1}  max {max:.1}");
        println!("    plain rdkafka produce -> consume (ms):               p50 {b50:.1}  p99 {b99:.1}  max {bmax:.1}");
        println!(
            "    ratio recurrence / plain:                           p50 {:.2}x  p99 {:.2}x",
            p50 / b50,
            p99 / b99
        );
    }
    Ok(())
}

async fn run_rate(
    brokers: &str,
    rate: usize,
    n: usize,
) -> anyhow::Result<(f64, f64, f64, usize, usize)> {
    let topic = unique("bench-recurrence");
    create_topic(brokers, &topic, 6).await;
    let sys = TestSystem::start(brokers, &topic).await;
    let token = sys.user().await;
    let metrics = prometheus::Registry::new();
    let mut settings = RecurrenceSettings::new(brokers, &unique("bench-recurrence"), &topic);
    settings
        .runtime
        .consumer_overrides
        .push(("fetch.wait.max.ms".to_owned(), "10".to_owned()));
    let stop = CancellationToken::new();
    let worker = recurrence::spawn_recurrence_worker(
        settings,
        sys.db.pool.clone(),
        OutboxWaker::new(sys.db.pool.clone()),
        sys.codec.clone(),
        &metrics,
        stop.clone(),
    )?;

    let due = (chrono::Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .map(|t| t.and_utc())
        .ok_or_else(|| anyhow::anyhow!("no 09:00"))?;
    let ids: Vec<Uuid> = stream::iter(0..n)
        .map(|i| {
            let (sys, token) = (&sys, &token);
            async move {
                let r: Value = sys
                    .http
                    .post(format!("{}/tasks", sys.api))
                    .bearer_auth(token)
                    .json(
                        &json!({"title": format!("bench {i}"), "due_at": due.to_rfc3339(),
                                  "tags": [format!("b{i}")],
                                  "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC"}}),
                    )
                    .send()
                    .await?
                    .json()
                    .await?;
                r["id"]
                    .as_str()
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .ok_or_else(|| anyhow::anyhow!("create answered {r}"))
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<anyhow::Result<Uuid>>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    // The creates' events consumed first, so the completions do not queue behind them.
    let deadline = Instant::now() + Duration::from_secs(600);
    while messages_ok(&metrics) < n as f64 {
        anyhow::ensure!(Instant::now() < deadline, "the worker never caught up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Uuid, Instant)>();
    let pool = sys.db.pool.clone();
    let poller = tokio::spawn(async move {
        let mut pending: HashMap<Uuid, Instant> = HashMap::new();
        let mut latencies = Vec::with_capacity(n);
        let mut open = true;
        let mut idle_since = Instant::now();
        while latencies.len() < n {
            while let Ok((id, at)) = rx.try_recv() {
                pending.insert(id, at);
            }
            if open && rx.is_closed() && rx.is_empty() {
                open = false;
                idle_since = Instant::now();
            }
            if !open && idle_since.elapsed() > Duration::from_secs(60) {
                break;
            }
            if !pending.is_empty() {
                let keys: Vec<Uuid> = pending.keys().copied().collect();
                let seen: Vec<Uuid> = sqlx::query_scalar(
                    "SELECT previous_task_id FROM tasks WHERE previous_task_id = ANY($1)",
                )
                .bind(&keys)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
                let now = Instant::now();
                for id in seen {
                    if let Some(at) = pending.remove(&id) {
                        latencies.push(now.duration_since(at).as_secs_f64() * 1000.0);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies
    });

    let started = Instant::now();
    stream::iter(ids.iter().copied().enumerate())
        .map(|(i, id)| {
            let (sys, token, tx) = (&sys, &token, tx.clone());
            async move {
                let slot = started + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(slot.into()).await;
                let ok = sys
                    .http
                    .post(format!("{}/tasks/{id}/complete", sys.api))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    let _ = tx.send((id, Instant::now()));
                }
            }
        })
        .buffer_unordered(1024)
        .collect::<Vec<()>>()
        .await;
    drop(tx);
    let latencies = poller.await?;
    let created = latencies.len();

    // Every instance readable through the API: the open task carrying each tag.
    let checked: usize = stream::iter(0..n)
        .map(|i| {
            let (sys, token) = (&sys, &token);
            async move {
                let page: Value = sys
                    .http
                    .get(format!("{}/tasks?status=open&tag=b{i}", sys.api))
                    .bearer_auth(token)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (page["items"].as_array()?.len() == 1).then_some(())
            }
        })
        .buffer_unordered(32)
        .filter_map(|x| async move { x })
        .count()
        .await;
    stop.cancel();
    worker.join().await?;
    let (p50, p99, max) = summary(latencies);
    Ok((p50, p99, max, created, checked))
}
