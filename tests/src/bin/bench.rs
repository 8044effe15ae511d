//! `taskflow-bench`: prints figures, never asserts them.
//!
//! ```sh
//! cargo run --release -p taskflow-tests --bin taskflow-bench -- api [N] [CONCURRENCY] [RATE]
//! ```
//!
//! `api`: N task creates through HTTP with CONCURRENCY clients, with the relay publishing
//! every event to the broker meanwhile (creates/s, after 1,000 warm-up creates), how long
//! after the last answer the broker had acknowledged every event, and pgbench running the
//! API's create transaction (task row + outbox row) at the same concurrency, without and
//! with a `pg_notify`, with creates/s as a share of it. No consumer reads during that load
//! (pgbench runs alone too); one reads every event afterwards. With RATE, requests start
//! at that many per second instead, and a consumer measures the latency from each event's
//! `occurred_at` (stamped in the API's transaction) to its arrival, p50/p99, next to a
//! plain rdkafka producer and consumer at the same rate on the same broker, since the
//! test broker (tansu) is much slower than Redpanda and absolute numbers mislead.
//!
//! ```sh
//! cargo build --release -p taskflow-workers --bins
//! cargo run --release -p taskflow-tests --bin taskflow-bench -- audit [N]
//! ```
//!
//! `audit`: N events pre-loaded on a 6-partition topic, then the real
//! `taskflow-audit` binary (beside this one, same profile) audits them: events
//! per second from process start to the last row (start-up and group join
//! included) and between the first and last insert, and the process's peak
//! RSS. The reference limit is a plain `COPY` of the very same rows into the
//! same table shape in another database on the same PostgreSQL.
//!
//! ```sh
//! cargo run --release -p taskflow-tests --bin taskflow-bench -- relay [N] [_] [RATE]
//! ```
//!
//! `relay`: N committed outbox rows (distinct tasks) drained by the relay,
//! rows/s, next to a plain idempotent producer sending the same encoded
//! bytes; then rows committed one at a time at RATE/s (default 200) with the
//! in-process wake-up, commit -> consumer receipt p50/p99 next to the plain
//! producer paced the same.
//!
//! `audit-rss [EVENTS] [DESCRIPTION_BYTES]`: the audit worker's peak RSS with 12
//! partitions of backlog, bounded prefetch versus librdkafka's defaults (see `bench/rss.rs`).
//!
//! `recurrence [SECONDS]`: completion -> next instance latency, p50/p99, at 50 and 500
//! completions/s for SECONDS each (default 10), next to a plain rdkafka produce -> consume at
//! the same rate on the same broker (see `bench/recurrence.rs` for what is timed).
//!
//! `reminders [PENDING] [DUE]`: the reminders worker over PENDING stored timers (default
//! 1,000,000) of which DUE (default 10,000) come due within one second: lateness to commit
//! and to a consumer, p50/p99/max, next to plain rdkafka produce -> consume, and the worker's
//! peak RSS (see `bench/reminders.rs`).
//!
//! `live [SECONDS] [STREAMS]`: create response -> the entry on another stream of the same user,
//! p50/p99, at 50 and 500 creates/s next to plain rdkafka; then STREAMS (default 10,000)
//! concurrent streams on one `taskflow-api` process: its RSS and the push latency under load
//! (see `bench/live.rs`).
//!
//! `webhooks [N] [ENDPOINTS]`: the webhook sender's deliveries/s over a backlog of N to a local
//! receiver next to plain reqwest POSTs, and plan-commit -> receiver latency p50/p99 at 200
//! events/s (see `bench/webhooks.rs`).
//!
//! The broker is `TASKFLOW_TEST_BROKERS`, or a tansu process started here.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

#[path = "bench/live.rs"]
mod live;
#[path = "bench/recurrence.rs"]
mod recurrence;
#[path = "bench/relay.rs"]
mod relay;
#[path = "bench/reminders.rs"]
mod reminders;
#[path = "bench/rss.rs"]
mod rss;
#[path = "bench/webhooks.rs"]
mod webhooks;

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{stream, StreamExt};
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use taskflow_tests::{
    broker::{create_topic, Collector, TansuBroker},
    db,
    events::{produce, producer, task_events},
    metrics::histogram,
    registry::registry_url,
    system::TestSystem,
    unique,
    worker::WorkerProcess,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("api");
    // `_` keeps a positional argument's default (`relay 20000 _ 200`).
    let arg = |i: usize| args.get(i).map(String::as_str).filter(|a| *a != "_");
    let n: usize = arg(2).map(str::parse).transpose()?.unwrap_or(5000);
    let concurrency: usize = arg(3).map(str::parse).transpose()?.unwrap_or(32);
    let rate: Option<f64> = arg(4).map(str::parse).transpose()?;
    let (_own_broker, brokers) = match std::env::var("TASKFLOW_TEST_BROKERS") {
        Ok(b) => (None, b),
        Err(_) => {
            let b = TansuBroker::start_new().await;
            let addr = b.address();
            (Some(b), addr)
        }
    };
    match what {
        "api" => bench_api(&brokers, n, concurrency, rate).await,
        "audit" => bench_audit(&brokers, n).await,
        "relay" => relay::bench_relay(&brokers, n, rate.unwrap_or(200.0)).await,
        "txn-probe" => relay::probe_transactions(&brokers).await,
        "recurrence" => {
            let secs: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(10);
            recurrence::bench_recurrence(&brokers, secs).await
        }
        "reminders" => {
            let pending: usize = arg(2).map(str::parse).transpose()?.unwrap_or(1_000_000);
            let due: usize = arg(3).map(str::parse).transpose()?.unwrap_or(10_000);
            reminders::bench_reminders(&brokers, pending, due).await
        }
        "webhooks" => {
            let n: usize = arg(2).map(str::parse).transpose()?.unwrap_or(20_000);
            let endpoints: usize = arg(3).map(str::parse).transpose()?.unwrap_or(8);
            webhooks::bench_webhooks(n, endpoints).await
        }
        "live" => {
            let secs: usize = arg(2).map(str::parse).transpose()?.unwrap_or(10);
            let streams: usize = arg(3).map(str::parse).transpose()?.unwrap_or(10_000);
            live::bench_live(&brokers, secs, streams).await
        }
        "audit-rss" => {
            let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(6000);
            let bytes: usize = args
                .get(3)
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(48 * 1024);
            rss::bench_audit_rss(&brokers, n, bytes).await
        }
        other => {
            anyhow::bail!(
                "unknown benchmark {other:?}; expected: api, audit, relay, txn-probe, audit-rss, recurrence or reminders"
            )
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

pub(crate) fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        percentile(&ms, 1.0),
    )
}

/// Creates sent before the figure of an unpaced `api` run starts: the pool opens its
/// connections and fills its statement caches, as pgbench's connections are open before it
/// counts.
const API_WARMUP: usize = 1000;

/// `n` creates through HTTP, `concurrency` at a time, optionally started at `pace` per
/// second; the HTTP statuses in order of completion.
async fn send_creates(
    sys: &TestSystem,
    token: &str,
    range: std::ops::Range<usize>,
    concurrency: usize,
    pace: Option<f64>,
) -> Vec<u16> {
    let started = Instant::now();
    let first = range.start;
    stream::iter(range)
        .map(|i| async move {
            if let Some(per_sec) = pace {
                let slot = started + Duration::from_secs_f64((i - first) as f64 / per_sec);
                tokio::time::sleep_until(slot.into()).await;
            }
            // The body is serialised up front, as pgbench's script is parsed once: the
            // load generator should cost the machine as little as it can.
            let body = format!(r#"{{"title":"bench {i}","priority":"high","tags":["bench"]}}"#);
            sys.http
                .post(format!("{}/tasks", sys.api))
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

/// Polls the outbox every 2 ms until the relay has had every row acknowledged; how long
/// that took.
async fn wait_outbox_empty(pool: &sqlx::PgPool) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(pool)
            .await?;
        if left == 0 {
            return Ok(start.elapsed());
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the relay left {left} rows unpublished for 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn bench_api(
    brokers: &str,
    n: usize,
    concurrency: usize,
    pace: Option<f64>,
) -> anyhow::Result<()> {
    let topic = unique("bench-task-events");
    create_topic(brokers, &topic, 6).await;
    let sys = TestSystem::start(brokers, &topic).await;
    let token = sys.user().await;
    match pace {
        Some(rate) => bench_api_latency(brokers, &sys, &token, n, concurrency, rate).await,
        None => bench_api_throughput(brokers, sys, &token, n, concurrency).await,
    }
}

/// Creates as fast as `concurrency` clients can, with the relay publishing every event
/// to the broker meanwhile, next to pgbench running the same transaction.
///
/// No consumer reads during the load: pgbench runs alone, and a consumer is a reader of
/// the broker, not part of the write path (on tansu every fetched record costs the
/// broker SQL statements on these same two cores). Afterwards the run waits for the
/// relay to have every event acknowledged, prints how long that took after the last
/// answer, and a consumer reads every event from the topic.
async fn bench_api_throughput(
    brokers: &str,
    sys: TestSystem,
    token: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let warm = send_creates(&sys, token, 0..API_WARMUP, concurrency, None).await;
    anyhow::ensure!(
        warm.iter().all(|s| *s == 201),
        "warm-up creates failed: {:?}",
        warm.iter().find(|s| **s != 201)
    );
    wait_outbox_empty(&sys.db.pool).await?;

    let batches_before = histogram(&sys.metrics, "taskflow_outbox_batch_rows");
    let started = Instant::now();
    let results = send_creates(&sys, token, API_WARMUP..API_WARMUP + n, concurrency, None).await;
    let elapsed = started.elapsed();
    let drained = wait_outbox_empty(&sys.db.pool).await?;
    let batches_after = histogram(&sys.metrics, "taskflow_outbox_batch_rows");
    let passes = batches_after.0 - batches_before.0;
    let rows = batches_after.1 - batches_before.1;
    let ok = results.iter().filter(|s| **s == 201).count();
    let rate = ok as f64 / elapsed.as_secs_f64();
    let rate_published = ok as f64 / (elapsed + drained).as_secs_f64();

    let collector = Collector::new(brokers, &sys.topic);
    let expected = API_WARMUP + ok;
    let received = collector.collect(expected, Duration::from_secs(600)).await;

    println!(
        "taskflow-bench api: {n} creates, {concurrency} concurrent clients, as fast as possible \
         (after {API_WARMUP} warm-up creates), broker {brokers}"
    );
    println!(
        "  HTTP creates:                  {ok}/{n} answered 201 in {:.2} s = {rate:.0} creates/s",
        elapsed.as_secs_f64()
    );
    println!(
        "  relay: every event acknowledged by the broker {:.1} ms after the last answer \
         ({rate_published:.0} creates/s counted to that moment)",
        drained.as_secs_f64() * 1000.0
    );
    println!(
        "  relay: {passes} batches ({:.0}/s), {:.1} events per batch on average",
        passes as f64 / (elapsed + drained).as_secs_f64(),
        rows / passes.max(1) as f64
    );
    println!(
        "  events on the topic afterwards: {} of {expected} (warm-up included)",
        received.len()
    );
    drop(sys);
    let secs = elapsed.as_secs().clamp(5, 30);
    let pg = relay::pgbench_reference(concurrency, secs).await?;
    println!("  pgbench, the same transaction, {concurrency} clients, {secs} s each:");
    println!(
        "    without NOTIFY:                {:.0} tps (pgbench's default simple protocol)",
        pg.plain
    );
    println!("    with a NOTIFY inside:          {:.0} tps", pg.notify);
    println!(
        "    without NOTIFY, prepared:      {:.0} tps (-M prepared: parsed once, as the API's statements are)",
        pg.prepared
    );
    println!(
        "    the API's one statement:       {:.0} tps (-M prepared: task + outbox row in one WITH ... INSERT)",
        pg.statement
    );
    println!(
        "  HTTP creates/s / pgbench without NOTIFY: {:.2} (counted to the last acknowledgement: {:.2})",
        rate / pg.plain,
        rate_published / pg.plain,
    );
    println!(
        "  HTTP creates/s / the same, prepared: {:.2}; / the API's one statement: {:.2}",
        rate / pg.prepared,
        rate / pg.statement
    );
    Ok(())
}

/// Creates started at `pace` per second, and the latency from each event's `occurred_at`
/// (stamped in the API's transaction) to its arrival at a plain consumer, next to a plain
/// rdkafka producer and consumer at the same rate on the same broker.
async fn bench_api_latency(
    brokers: &str,
    sys: &TestSystem,
    token: &str,
    n: usize,
    concurrency: usize,
    pace: f64,
) -> anyhow::Result<()> {
    // Consume while the load runs: arrival is stamped on receipt.
    let collector = Collector::new(brokers, &sys.topic);
    collector.wait_for_assignment(Duration::from_secs(60)).await;
    let collecting =
        tokio::spawn(async move { collector.collect(n, Duration::from_secs(600)).await });

    let started = Instant::now();
    let results = send_creates(sys, token, 0..n, concurrency, Some(pace)).await;
    let elapsed = started.elapsed();
    let ok = results.iter().filter(|s| **s == 201).count();
    let rate = ok as f64 / elapsed.as_secs_f64();

    let received = collecting.await?;
    let mut latencies = Vec::with_capacity(received.len());
    for msg in &received {
        let event = sys.codec.decode(&msg.payload).await?;
        latencies.push(msg_latency_ms(msg, event.metadata().occurred_at));
    }
    let (p50, p99, max) = summary(latencies);

    println!(
        "taskflow-bench api: {n} creates, {concurrency} concurrent clients, paced at {pace:.0}/s, broker {brokers}"
    );
    println!(
        "  HTTP creates:                  {ok}/{n} answered 201 in {:.2} s = {rate:.0} creates/s",
        elapsed.as_secs_f64()
    );
    println!("  events received:               {}", received.len());
    println!("  API commit -> consumer (ms):   p50 {p50:.1}  p99 {p99:.1}  max {max:.1}");

    let (b50, b99, bmax) = baseline(brokers, ok.max(1), rate.max(1.0)).await?;
    println!("  plain rdkafka produce -> consume at {rate:.0}/s (ms): p50 {b50:.1}  p99 {b99:.1}  max {bmax:.1}");
    println!(
        "  ratio taskflow / plain:        p50 {:.2}x  p99 {:.2}x",
        p50 / b50,
        p99 / b99
    );
    Ok(())
}

/// Arrival is when the collector received the message, before decoding, so
/// the registry lookup is not part of the figure.
fn msg_latency_ms(msg: &taskflow_tests::broker::Received, sent: chrono::DateTime<Utc>) -> f64 {
    (msg.received_at - sent).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// A plain idempotent acks=all producer paced at `rate` msg/s, and a consumer
/// measuring send -> receive for each message.
pub(crate) async fn baseline(
    brokers: &str,
    n: usize,
    rate: f64,
) -> anyhow::Result<(f64, f64, f64)> {
    let topic = unique("bench-baseline");
    create_topic(brokers, &topic, 6).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()?;
    let collector = Collector::new(brokers, &topic);
    collector.wait_for_assignment(Duration::from_secs(60)).await;
    let collecting =
        tokio::spawn(async move { collector.collect(n, Duration::from_secs(600)).await });
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let due = start + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let sent = Utc::now().timestamp_micros().to_string();
        let key = format!("k{}", i % 997);
        let record = FutureRecord::to(&topic).key(&key).payload(&sent);
        deliveries.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for d in deliveries {
        let _ = d.await;
    }
    let received = collecting.await?;
    let lat = received
        .iter()
        .filter_map(|m| {
            let sent: i64 = std::str::from_utf8(&m.payload).ok()?.parse().ok()?;
            Some((m.received_at.timestamp_micros() - sent) as f64 / 1000.0)
        })
        .collect();
    Ok(summary(lat))
}

async fn bench_audit(brokers: &str, n: usize) -> anyhow::Result<()> {
    let topic = unique("bench-audit");
    let group = unique("bench-audit");
    create_topic(brokers, &topic, 6).await;
    create_topic(brokers, &taskflow_schemas::topics::dlq(&group), 1).await;
    let registry = registry_url().await;
    let codec = taskflow_schemas::Codec::new(&registry);
    let events = task_events(n, (n / 10).max(1));
    let p = producer(brokers);
    for chunk in events.chunks(1000) {
        produce(&p, &codec, &topic, chunk).await;
    }
    let target = db::fresh().await;

    let started = Instant::now();
    let worker = WorkerProcess::start(&[
        ("TASKFLOW_DATABASE_URL", target.url.clone()),
        ("TASKFLOW_KAFKA_BROKERS", brokers.to_owned()),
        ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.clone()),
        ("TASKFLOW_KAFKA_GROUP_ID", group.clone()),
        ("TASKFLOW_KAFKA_TOPICS", topic.clone()),
    ]);
    let mut peak_kib = 0;
    loop {
        peak_kib = peak_kib.max(worker.peak_rss_kib().unwrap_or(0));
        let c: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&target.pool)
            .await?;
        if c as usize >= n {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1800),
            "audit worker stalled at {c} rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let wall = started.elapsed();
    peak_kib = peak_kib.max(worker.peak_rss_kib().unwrap_or(0));
    let _ = worker.terminate().await;
    let (first, last): (chrono::DateTime<Utc>, chrono::DateTime<Utc>) =
        sqlx::query_as("SELECT min(recorded_at), max(recorded_at) FROM audit_log")
            .fetch_one(&target.pool)
            .await?;
    let steady = (last - first).num_microseconds().unwrap_or(1).max(1) as f64 / 1e6;

    // Reference: how fast a plain consumer reads the same topic from this broker.
    let reader = Collector::new(brokers, &topic);
    let read_started = Instant::now();
    let read = reader.collect(n, Duration::from_secs(600)).await.len();
    let read_secs = read_started.elapsed().as_secs_f64();

    // Reference: COPY the same rows into an empty database with the same schema.
    const COLS: &str = "event_id, event_type, task_id, user_id, occurred_at, version, correlation_id, causation_id, payload, source_topic, source_partition, source_offset";
    let mut out = target.pool.acquire().await?;
    let mut csv = Vec::new();
    let mut stream = out
        .copy_out_raw(&format!(
            "COPY (SELECT {COLS} FROM audit_log) TO STDOUT WITH (FORMAT csv)"
        ))
        .await?;
    while let Some(chunk) = stream.next().await {
        csv.extend_from_slice(&chunk?);
    }
    drop(stream);
    let reference = db::fresh().await;
    let mut conn = reference.pool.acquire().await?;
    let copy_started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY audit_log ({COLS}) FROM STDIN WITH (FORMAT csv)"
        ))
        .await?;
    copy.send(csv).await?;
    let copied = copy.finish().await?;
    let copy_secs = copy_started.elapsed().as_secs_f64();

    println!("taskflow-bench audit: {n} events on 6 partitions, broker {brokers}");
    println!(
        "  audit worker, process start -> last row: {:.2} s = {:.0} events/s",
        wall.as_secs_f64(),
        n as f64 / wall.as_secs_f64()
    );
    println!(
        "  audit worker, first -> last insert:      {steady:.2} s = {:.0} events/s",
        n as f64 / steady
    );
    println!(
        "  audit worker peak RSS (VmHWM):           {:.1} MiB",
        peak_kib as f64 / 1024.0
    );
    println!(
        "  plain rdkafka consumer, same topic:      {read} msgs in {read_secs:.2} s = {:.0} msg/s (group join included)",
        read as f64 / read_secs
    );
    println!(
        "  reference COPY of the same {copied} rows:  {copy_secs:.2} s = {:.0} rows/s",
        copied as f64 / copy_secs
    );
    println!(
        "  worker steady rate / COPY rate:          {:.3}",
        (n as f64 / steady) / (copied as f64 / copy_secs)
    );
    Ok(())
}
