//! `taskflow-bench relay` and the pgbench reference of `taskflow-bench api`.

use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::{
    message::{Header, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use taskflow_infra::{
    config::KafkaSettings,
    outbox::{self, OutboxWaker, Relay, RelayConfig},
};
use taskflow_schemas::{Codec, Event, EventType};
use taskflow_tests::{
    broker::{create_topic, Collector},
    db,
    events::versioned,
    registry::registry_url,
    unique,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::summary;

fn relay_config() -> RelayConfig {
    RelayConfig {
        idle_poll: Duration::from_millis(200),
        ..RelayConfig::default()
    }
}

/// Throughput: `n` rows already committed (distinct tasks), drained by the
/// relay, against a plain idempotent producer sending the same encoded bytes.
/// Latency: rows committed one by one at `rate`/s with the in-process wake,
/// commit -> consumer receipt, against the plain producer paced the same.
pub(crate) async fn bench_relay(brokers: &str, n: usize, rate: f64) -> anyhow::Result<()> {
    let registry = registry_url().await;
    let codec = Codec::new(&registry);
    let events: Vec<Event> = (0..n)
        .map(|_| versioned(EventType::TaskCreated, Uuid::now_v7(), 1))
        .collect();

    // --- throughput -------------------------------------------------------
    let topic = unique("bench-relay");
    create_topic(brokers, &topic, 6).await;
    let target = db::fresh().await;
    let mut tx = target.pool.begin().await?;
    for e in &events {
        outbox::enqueue(&mut tx, &topic, e, None).await?;
    }
    tx.commit().await?;
    let stop = CancellationToken::new();
    let started = Instant::now();
    let relay = Relay::new(
        target.pool.clone(),
        &KafkaSettings::new(brokers, "bench-relay"),
        codec.clone(),
        relay_config(),
        &prometheus::Registry::new(),
    )?;
    tokio::spawn(relay.run(stop.clone()));
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&target.pool)
            .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(900),
            "relay stalled at {left} rows"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let relay_secs = started.elapsed().as_secs_f64();
    stop.cancel();

    let mut encoded = Vec::with_capacity(n);
    for e in &events {
        encoded.push((e.key(), codec.encode(&topic, e).await?));
    }
    let plain_topic = unique("bench-relay-plain");
    create_topic(brokers, &plain_topic, 6).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()?;
    let started = Instant::now();
    let sends: Vec<_> = encoded
        .iter()
        .map(|(key, bytes)| {
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_type",
                value: Some("TaskCreated"),
            });
            producer
                .send_result(
                    FutureRecord::to(&plain_topic)
                        .key(key)
                        .payload(bytes)
                        .headers(headers),
                )
                .map_err(|(e, _)| e)
        })
        .collect();
    for s in sends {
        s?.await
            .map_err(|_| anyhow::anyhow!("canceled"))?
            .map_err(|(e, _)| e)?;
    }
    let plain_secs = started.elapsed().as_secs_f64();

    println!("taskflow-bench relay: {n} rows (distinct tasks), broker {brokers}");
    println!(
        "  relay, committed backlog -> all acknowledged: {relay_secs:.2} s = {:.0} rows/s (start-up included)",
        n as f64 / relay_secs
    );
    println!(
        "  plain idempotent producer, same bytes:        {plain_secs:.2} s = {:.0} msgs/s",
        n as f64 / plain_secs
    );
    println!(
        "  ratio relay / plain:                          {:.2}",
        plain_secs / relay_secs
    );

    // --- latency at a paced rate -------------------------------------------
    let m = n.min((rate * 10.0) as usize).max(1);
    let topic = unique("bench-relay-latency");
    create_topic(brokers, &topic, 6).await;
    let target = db::fresh().await;
    let waker = OutboxWaker::new(target.pool.clone());
    let stop = CancellationToken::new();
    let relay = Relay::new(
        target.pool.clone(),
        &KafkaSettings::new(brokers, "bench-relay-latency"),
        codec.clone(),
        relay_config(),
        &prometheus::Registry::new(),
    )?
    .with_waker(waker.clone());
    tokio::spawn(relay.run(stop.clone()));
    let collector = Collector::new(brokers, &topic);
    collector.wait_for_assignment(Duration::from_secs(60)).await;
    let collecting =
        tokio::spawn(async move { collector.collect(m, Duration::from_secs(600)).await });
    let mut committed = std::collections::HashMap::with_capacity(m);
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    for (i, e) in events.iter().take(m).enumerate() {
        tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        let mut tx = target.pool.begin().await?;
        outbox::enqueue(&mut tx, &topic, e, None).await?;
        tx.commit().await?;
        committed.insert(e.metadata().event_id.to_string(), Utc::now());
        waker.wake();
    }
    let received = collecting.await?;
    stop.cancel();
    let lat: Vec<f64> = received
        .iter()
        .filter_map(|msg| {
            let at = committed.get(msg.headers.get("event_id")?)?;
            Some((msg.received_at - *at).num_microseconds()? as f64 / 1000.0)
        })
        .collect();
    let (p50, p99, max) = summary(lat);
    let (b50, b99, bmax) = crate::baseline(brokers, m, rate).await?;
    println!("  paced at {rate:.0} rows/s, {m} rows:");
    println!("    relay, commit -> consumer receipt (ms):          p50 {p50:.1}  p99 {p99:.1}  max {max:.1}");
    println!("    plain producer, send -> consumer receipt (ms):   p50 {b50:.1}  p99 {b99:.1}  max {bmax:.1}");
    println!(
        "    difference relay - plain (ms):                   p50 {:+.1}  p99 {:+.1}",
        p50 - b50,
        p99 - b99
    );
    Ok(())
}

/// What pgbench did with the API's create transaction.
pub(crate) struct PgbenchReference {
    /// tps without a NOTIFY, pgbench's default (simple) protocol: the bar's reference.
    pub plain: f64,
    /// tps with a `pg_notify` inside the transaction.
    pub notify: f64,
    /// tps without a NOTIFY, `-M prepared`: each statement parsed once per connection,
    /// as sqlx's cached statements are in the API.
    pub prepared: f64,
    /// tps of the API's own single-statement create (task, series when recurring, outbox
    /// row in one `WITH ... INSERT`), `-M prepared`: the same round trips as the API.
    pub statement: f64,
}

/// pgbench running the API's create transaction (task row + outbox row) with
/// `clients` clients for `secs` seconds: without a NOTIFY, with a `pg_notify` in
/// it, and without one in prepared mode; then the API's single statement, prepared.
pub(crate) async fn pgbench_reference(
    clients: usize,
    secs: u64,
) -> anyhow::Result<PgbenchReference> {
    let target = db::fresh().await;
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(user)
        .bind(format!("{}@bench.test", user.simple()))
        .execute(&target.pool)
        .await?;
    let sample = versioned(EventType::TaskCreated, Uuid::now_v7(), 1);
    // pgbench reads `:name` as a variable, and in prepared mode `"at":null` would become a
    // parameter: a space after each key's colon keeps the JSON the same value. (No string
    // in this sample event holds `":`.)
    let payload = serde_json::to_string(&sample)?
        .replace('\'', "''")
        .replace("\":", "\": ");
    let body = format!(
        "BEGIN;
INSERT INTO tasks (id, user_id, title, status, priority, tags, reminders, version, created_at, updated_at)
  VALUES (gen_random_uuid(), '{user}', 'bench', 'open', 'high', '{{bench}}', '[]', 1, now(), now());
INSERT INTO outbox (event_id, topic, partition_key, event_type, payload, traceparent)
  VALUES (gen_random_uuid(), 'bench', gen_random_uuid()::text, 'TaskCreated', '{payload}',
          '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
"
    );
    // What the API sends for a create without an Idempotency-Key since it became one
    // statement (`insert_task_with_events` in producer/src/tasks/store.rs), values inlined.
    let statement = format!(
        "WITH series_row AS (
  INSERT INTO series (id, user_id, dtstart)
  SELECT NULL::uuid, '{user}'::uuid, NULL::timestamptz WHERE NULL::uuid IS NOT NULL),
task_row AS (
  INSERT INTO tasks (id, user_id, title, description, status, due_at, priority, tags,
                     recurrence, reminders, version, completed_at, created_at, updated_at,
                     series_id, occurrence, series_index)
  VALUES (gen_random_uuid(), '{user}', 'bench', NULL, 'open', NULL, 'high', '{{bench}}',
          NULL, '[]', 1, NULL, now(), now(), NULL, NULL, NULL))
INSERT INTO outbox (event_id, topic, partition_key, event_type, payload, traceparent)
SELECT u.event_id, 'bench', u.partition_key, u.event_type, u.payload::jsonb, u.traceparent
FROM UNNEST(ARRAY[gen_random_uuid()], ARRAY[gen_random_uuid()::text], ARRAY['TaskCreated'],
            ARRAY['{payload}'],
            ARRAY['00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'])
     WITH ORDINALITY AS u(event_id, partition_key, event_type, payload, traceparent, n)
ORDER BY u.n;
"
    );
    let dir = tempfile::tempdir()?;
    let one_statement = dir.path().join("create_statement.sql");
    std::fs::write(&one_statement, statement)?;
    let plain = dir.path().join("create.sql");
    let notify = dir.path().join("create_notify.sql");
    std::fs::write(&plain, format!("{body}COMMIT;\n"))?;
    std::fs::write(
        &notify,
        format!("{body}SELECT pg_notify('taskflow_outbox', '');\nCOMMIT;\n"),
    )?;
    let run = |script: std::path::PathBuf, mode: &'static str| {
        let url = target.url.clone();
        async move {
            let out = tokio::process::Command::new("pgbench")
                .args([
                    "-n",
                    "-M",
                    mode,
                    "-c",
                    &clients.to_string(),
                    "-j",
                    "2",
                    "-T",
                ])
                .arg(secs.to_string())
                .arg("-f")
                .arg(&script)
                .arg(&url)
                .output()
                .await?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            anyhow::ensure!(
                out.status.success(),
                "pgbench failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            text.lines()
                .find(|l| l.starts_with("tps = "))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|v| v.parse::<f64>().ok())
                .ok_or_else(|| anyhow::anyhow!("no tps in pgbench output: {text}"))
        }
    };
    Ok(PgbenchReference {
        plain: run(plain.clone(), "simple").await?,
        notify: run(notify, "simple").await?,
        prepared: run(plain, "prepared").await?,
        statement: run(one_statement, "prepared").await?,
    })
}

/// Measures what the broker does with Kafka transactions: can a producer
/// initialise, commit and abort, and does a `read_committed` consumer see
/// the records of an aborted transaction? Prints each step's outcome.
pub(crate) async fn probe_transactions(brokers: &str) -> anyhow::Result<()> {
    use rdkafka::producer::Producer;
    let topic = unique("probe-txn");
    create_topic(brokers, &topic, 1).await;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", unique("probe-txn"))
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()?;
    let timeout = Duration::from_secs(20);
    println!("taskflow-bench txn-probe: broker {brokers}");
    let step = |name: &str, r: Result<(), rdkafka::error::KafkaError>| {
        match &r {
            Ok(()) => println!("  {name:<22} ok"),
            Err(e) => println!("  {name:<22} FAILED: {e}"),
        }
        r.is_ok()
    };
    if !step("init_transactions", producer.init_transactions(timeout)) {
        return Ok(());
    }
    let send = |value: &'static str| {
        let p = producer.clone();
        let topic = topic.clone();
        async move {
            p.send(
                FutureRecord::to(&topic).key("k").payload(value),
                Duration::from_secs(10),
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
        }
    };
    step("begin (to commit)", producer.begin_transaction());
    step("send committed", send("committed").await);
    let committed = step("commit_transaction", producer.commit_transaction(timeout));
    if !committed {
        let _ = producer.abort_transaction(timeout);
    }
    step("begin (to abort)", producer.begin_transaction());
    step("send aborted", send("aborted").await);
    step("abort_transaction", producer.abort_transaction(timeout));

    for isolation in ["read_committed", "read_uncommitted"] {
        let consumer: rdkafka::consumer::StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", unique("probe-txn"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("isolation.level", isolation)
            .create()?;
        rdkafka::consumer::Consumer::subscribe(&consumer, &[&topic])?;
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_secs(3), consumer.recv()).await {
                Ok(Ok(m)) => seen.push(
                    rdkafka::Message::payload(&m)
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .unwrap_or_default(),
                ),
                Ok(Err(e)) => println!("  {isolation}: receive error {e}"),
                Err(_) if !seen.is_empty() => break,
                Err(_) => {}
            }
        }
        println!("  {isolation:<22} consumer sees {seen:?}");
    }
    Ok(())
}
