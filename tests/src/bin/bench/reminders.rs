//! `reminders [PENDING] [DUE]`: the real `taskflow-reminders` binary (beside this one, same
//! profile) over PENDING timers (default 1,000,000) stored in PostgreSQL, of which DUE
//! (default 10,000) come due within one second; the others lie hours ahead.
//!
//! Printed:
//! * lateness to commit (the commit of each `ReminderDue` outbox row minus the instant it was
//!   scheduled for), p50/p99/max, read from the worker's own
//!   `taskflow_reminder_lateness_seconds` histogram as Prometheus' `histogram_quantile`
//!   computes it (linear within a bucket; max = the upper bound of the highest bucket hit);
//! * the same from the database (`fired_at`, stamped before the batch's writes, minus the
//!   scheduled instant), exact per timer;
//! * lateness to the broker (a plain consumer's receipt of `ReminderDue` minus the
//!   scheduled instant), p50/p99/max, next to a plain idempotent rdkafka producer ->
//!   consumer paced at the same rate on the same broker in the same run;
//! * the worker's peak RSS (VmHWM).
//!
//! Timers are loaded with SQL (tasks, their reminders, the worker's version rows and
//! timers), as the API and the worker would have written them, since a million API calls
//! would measure the API instead.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use taskflow_schemas::{topics, Event};
use taskflow_tests::{
    broker::{create_topic, Collector},
    db,
    registry::registry_url,
    unique,
    worker::{binary, WorkerProcess},
};
use uuid::Uuid;

use super::{baseline, summary};

pub(crate) async fn bench_reminders(
    brokers: &str,
    pending: usize,
    due: usize,
) -> anyhow::Result<()> {
    let task_events = unique("bench-reminders-events");
    let reminders_topic = unique("bench-reminders-due");
    let group = unique("bench-reminders");
    create_topic(brokers, &task_events, 3).await;
    create_topic(brokers, &reminders_topic, 6).await;
    create_topic(brokers, &topics::dlq(&group), 1).await;
    let registry = registry_url().await;
    let codec = taskflow_schemas::Codec::new(&registry);
    let target = db::fresh().await;
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(user)
        .bind(format!("{}@bench.test", user.simple()))
        .execute(&target.pool)
        .await?;

    let loading = Instant::now();
    let far = pending.saturating_sub(due);
    load(
        &target.pool,
        user,
        far,
        "now() + interval '1 hour' + g * interval '50 milliseconds'",
    )
    .await?;
    println!(
        "reminders: {far} timers hours ahead loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    // A bulk load leaves work for autovacuum (insert-triggered vacuum, analyze), which
    // would otherwise start at some moment of the measurement; a store of a million
    // timers in service has had it done.
    for table in ["tasks", "reminder_tasks", "reminder_timers"] {
        sqlx::query(&format!("VACUUM (ANALYZE) {table}"))
            .execute(&target.pool)
            .await?;
    }

    let collector = Collector::new(brokers, &reminders_topic);
    collector.wait_for_assignment(Duration::from_secs(60)).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let admin = format!("http://127.0.0.1:{port}");
    let worker = WorkerProcess::start_binary(
        binary("taskflow-reminders"),
        &[
            ("TASKFLOW_DATABASE_URL", target.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", brokers.to_owned()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.clone()),
            ("TASKFLOW_KAFKA_GROUP_ID", group.clone()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", task_events.clone()),
            ("TASKFLOW_TOPIC_REMINDERS", reminders_topic.clone()),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{port}")),
        ],
    );
    let http = reqwest::Client::new();
    let started = Instant::now();
    while !http
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "worker never ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // DUE timers spread over one second, starting 3 s from now; then wake the worker as a
    // replica's consumer would after arming them.
    let window = format!(
        "now() + interval '3 seconds' + g * interval '{} microseconds'",
        1_000_000 / due.max(1)
    );
    load(&target.pool, user, due, &window).await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(taskflow_workers::reminders::AGENDA_CHANNEL)
        .execute(&target.pool)
        .await?;

    let mut peak_kib = 0;
    let firing = Instant::now();
    loop {
        peak_kib = peak_kib.max(worker.peak_rss_kib().unwrap_or(0));
        // The worker's own counter of committed firings, over HTTP: counting fired rows in
        // the database instead is a parallel scan of the million-row table, which every
        // 100 ms took most of this machine's two cores away from the firing it measures.
        // The database's count is checked once at the end.
        let fired = match http.get(format!("{admin}/metrics")).send().await {
            Ok(r) => sample(
                &r.text().await.unwrap_or_default(),
                "taskflow_reminders_fired_total",
            ),
            Err(_) => 0.0,
        };
        if fired as usize >= due {
            break;
        }
        anyhow::ensure!(
            firing.elapsed() < Duration::from_secs(300),
            "only {fired} of {due} fired"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fired: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reminder_timers WHERE state = 'fired'")
            .fetch_one(&target.pool)
            .await?;
    anyhow::ensure!(fired as usize == due, "{fired} timers fired, {due} due");
    let received = collector.collect(due, Duration::from_secs(300)).await;
    peak_kib = peak_kib.max(worker.peak_rss_kib().unwrap_or(0));
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let _ = worker.terminate().await;

    let mut to_broker = Vec::with_capacity(received.len());
    for m in &received {
        if let Ok(Event::ReminderDue(d)) = codec.decode(&m.payload).await {
            to_broker.push(ms(m.received_at - d.fire_at));
        }
    }
    let stamps: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT fire_at, fired_at FROM reminder_timers WHERE state = 'fired'")
            .fetch_all(&target.pool)
            .await?;
    let stamped = stamps.iter().map(|(at, fired)| ms(*fired - *at)).collect();
    let (h50, h99, hmax) = histogram_quantiles(&metrics, "taskflow_reminder_lateness_seconds");
    let (s50, s99, smax) = summary(stamped);
    let (b50, b99, bmax) = summary(to_broker.clone());
    let (p50, p99, pmax) = baseline(brokers, due, due as f64).await?;
    println!("reminders: {pending} pending timers, {due} due within one second");
    println!(
        "    lateness to commit (worker histogram, ms):          p50 {h50:.1}  p99 {h99:.1}  max <= {hmax:.1}"
    );
    println!(
        "    lateness to fired_at stamp (database, ms):          p50 {s50:.1}  p99 {s99:.1}  max {smax:.1}"
    );
    println!(
        "    lateness to a consumer of the topic ({} received, ms): p50 {b50:.1}  p99 {b99:.1}  max {bmax:.1}",
        to_broker.len()
    );
    println!(
        "    plain rdkafka produce -> consume, {due} msg/s (ms):   p50 {p50:.1}  p99 {p99:.1}  max {pmax:.1}"
    );
    let (batches, batch_secs) = (
        sample(&metrics, "taskflow_reminders_batch_seconds_count"),
        sample(&metrics, "taskflow_reminders_batch_seconds_sum"),
    );
    println!(
        "    firing transactions: {batches:.0}, mean {:.1} ms for {:.0} timers each",
        batch_secs * 1000.0 / batches.max(1.0),
        due as f64 / batches.max(1.0)
    );
    println!("    worker peak RSS: {:.1} MiB", peak_kib as f64 / 1024.0);
    Ok(())
}

fn ms(d: chrono::TimeDelta) -> f64 {
    d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0
}

/// `n` open tasks with one absolute reminder each, at `fire_at_sql` (a SQL expression over
/// `g`, 1..=n), with the worker's version row and pending timer, as applying their
/// `TaskCreated` would have left them.
async fn load(pool: &sqlx::PgPool, user: Uuid, n: usize, fire_at_sql: &str) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "CREATE TEMPORARY TABLE bench_gen ON COMMIT DROP AS \
         SELECT gen_random_uuid() AS task_id, gen_random_uuid() AS rid, \
                date_trunc('milliseconds', {fire_at_sql}) AS fire_at \
         FROM generate_series(1, $1) AS g"
    ))
    .bind(n as i64)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO tasks (id, user_id, title, status, priority, reminders, version, \
                            created_at, updated_at) \
         SELECT task_id, $1, 'bench reminder', 'open', 'medium', \
                jsonb_build_array(jsonb_build_object('id', rid, 'at', fire_at, \
                    'before_seconds', NULL, 'snoozed_until', NULL)), \
                1, now(), now() \
         FROM bench_gen",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO reminder_tasks (task_id, user_id, version) SELECT task_id, $1, 1 FROM bench_gen")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO reminder_timers (task_id, reminder_id, user_id, fire_at, state, \
                                      task_version, title) \
         SELECT task_id, rid, $1, fire_at, 'pending', 1, 'bench reminder' FROM bench_gen",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// p50, p99 (linear interpolation within a bucket, as `histogram_quantile` does) and the
/// upper bound of the highest non-empty bucket, in ms, of histogram `name` in a Prometheus
/// text exposition.
fn histogram_quantiles(text: &str, name: &str) -> (f64, f64, f64) {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| -> f64 {
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return lower.0 * 1000.0;
                }
                let width = count - lower.1;
                let frac = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return (lower.0 + (le - lower.0) * frac) * 1000.0;
            }
            lower = (le, count);
        }
        f64::NAN
    };
    let max = buckets
        .iter()
        .zip(std::iter::once(&(0.0, 0.0)).chain(buckets.iter()))
        .filter(|(b, prev)| b.1 > prev.1)
        .map(|(b, _)| b.0 * 1000.0)
        .fold(0.0, f64::max);
    (quantile(0.5), quantile(0.99), max)
}

/// The value of an unlabelled sample `name` in a Prometheus text exposition (0 if absent).
fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}
