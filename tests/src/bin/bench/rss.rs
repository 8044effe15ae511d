//! `taskflow-bench audit-rss [EVENTS] [DESCRIPTION_BYTES]`: the audit worker's peak RSS with
//! 12 partitions of backlog, with the runtime's bounded prefetch (its defaults) and, as a
//! reference measured in the same run, with librdkafka's own prefetch defaults.
//!
//! EVENTS task events (default 6000) whose descriptions are DESCRIPTION_BYTES long (default
//! 48 KiB: about 280 MiB of backlog) are preloaded on a 12-partition topic. Each run starts the
//! real `taskflow-audit` binary (beside this one, same profile) in its own consumer group and
//! database, with the `audit_log` table locked, so its handlers block and librdkafka
//! prefetches whatever its limits allow: a worker lagging far behind. Once the RSS has not
//! grown for a few seconds the lock is released, the run waits for every event to be audited,
//! and the process's peak RSS (VmHWM from /proc/<pid>/status) is printed.

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};
use taskflow_schemas::Event;
use taskflow_tests::{
    broker::create_topic,
    db,
    events::{produce, producer, task_events},
    registry::registry_url,
    unique,
    worker::WorkerProcess,
};

const PARTITIONS: i32 = 12;

/// librdkafka's prefetch defaults, passed explicitly to the reference run.
const LIBRDKAFKA_DEFAULTS: [(&str, &str); 4] = [
    ("TASKFLOW_CONSUMER_QUEUED_MAX_KBYTES", "65536"),
    ("TASKFLOW_CONSUMER_QUEUED_MIN_MESSAGES", "100000"),
    ("TASKFLOW_CONSUMER_FETCH_MAX_BYTES", "52428800"),
    ("TASKFLOW_CONSUMER_MAX_PARTITION_FETCH_BYTES", "1048576"),
];

pub(crate) async fn bench_audit_rss(
    brokers: &str,
    n: usize,
    description_bytes: usize,
) -> anyhow::Result<()> {
    let topic = unique("bench-audit-rss");
    create_topic(brokers, &topic, PARTITIONS).await;
    let registry = registry_url().await;
    let codec = taskflow_schemas::Codec::new(&registry);
    let description = "d".repeat(description_bytes);
    let events: Vec<Event> = task_events(n, (n / 10).max(PARTITIONS as usize * 4))
        .into_iter()
        .map(|e| with_description(e, &description))
        .collect();
    let p = producer(brokers);
    let loading = Instant::now();
    let mut bytes = 0usize;
    for chunk in events.chunks(100) {
        for e in chunk {
            bytes += codec.encode(&topic, e).await?.len();
        }
        produce(&p, &codec, &topic, chunk).await;
    }
    let backlog_mib = bytes as f64 / 1024.0 / 1024.0;
    println!(
        "taskflow-bench audit-rss: {n} events of {description_bytes} B descriptions on {PARTITIONS} partitions = {backlog_mib:.0} MiB of backlog (loaded in {:.1} s), broker {brokers}",
        loading.elapsed().as_secs_f64()
    );

    let bounded = run_worker(brokers, &registry, &topic, n, &[]).await?;
    let reference = run_worker(brokers, &registry, &topic, n, &LIBRDKAFKA_DEFAULTS).await?;
    println!(
        "  peak RSS (VmHWM), taskflow prefetch defaults:  {:>6.1} MiB  (all {n} audited in {:.1} s)",
        bounded.peak_mib, bounded.secs
    );
    println!(
        "  peak RSS (VmHWM), librdkafka defaults (ref.):  {:>6.1} MiB  (all {n} audited in {:.1} s)",
        reference.peak_mib, reference.secs
    );
    println!(
        "  bound: 150 MiB; ratio bounded / librdkafka defaults: {:.2}",
        bounded.peak_mib / reference.peak_mib
    );
    Ok(())
}

fn with_description(event: Event, description: &str) -> Event {
    match event {
        Event::TaskCreated(mut e) => {
            e.task.description = Some(description.to_owned());
            Event::TaskCreated(e)
        }
        Event::TaskUpdated(mut e) => {
            e.task.description = Some(description.to_owned());
            Event::TaskUpdated(e)
        }
        other => other,
    }
}

struct Run {
    peak_mib: f64,
    secs: f64,
}

async fn run_worker(
    brokers: &str,
    registry: &str,
    topic: &str,
    n: usize,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Run> {
    let group = unique("bench-audit-rss");
    create_topic(brokers, &taskflow_schemas::topics::dlq(&group), 1).await;
    let target = db::fresh().await;
    // Handlers block on this lock: the worker lags, and prefetch is all that grows.
    let mut lock = PgConnection::connect(&target.url).await?;
    sqlx::query("BEGIN").execute(&mut lock).await?;
    sqlx::query("LOCK TABLE audit_log IN ACCESS EXCLUSIVE MODE")
        .execute(&mut lock)
        .await?;

    let mut env = vec![
        ("TASKFLOW_DATABASE_URL", target.url.clone()),
        ("TASKFLOW_KAFKA_BROKERS", brokers.to_owned()),
        ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.to_owned()),
        ("TASKFLOW_KAFKA_GROUP_ID", group.clone()),
        ("TASKFLOW_KAFKA_TOPICS", topic.to_owned()),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let started = Instant::now();
    let worker = WorkerProcess::start(&env);

    // Wait until the RSS has settled: no growth for 5 s (at most 3 minutes).
    let mut peak = 0;
    let mut grew_at = Instant::now();
    while grew_at.elapsed() < Duration::from_secs(5) && started.elapsed() < Duration::from_secs(180)
    {
        let now = worker.peak_rss_kib().unwrap_or(0);
        if now > peak + 1024 {
            peak = now;
            grew_at = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query("ROLLBACK").execute(&mut lock).await?;

    loop {
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = worker.peak_rss_kib().unwrap_or(0).max(peak);
    let _ = worker.terminate().await;
    Ok(Run {
        peak_mib: peak as f64 / 1024.0,
        secs,
    })
}
