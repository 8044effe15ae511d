//! `taskflow-bench`: prints figures, never asserts them.
//!
//! ```sh
//! cargo run --release -p taskflow-tests --bin taskflow-bench -- api [N] [CONCURRENCY]
//! ```
//!
//! `api`: N task creates through HTTP with CONCURRENCY clients (creates/s),
//! then the latency from each event's `occurred_at` (stamped in the API's
//! transaction) to its arrival at a plain consumer, p50/p99, while the relay
//! publishes at that rate. For scale it runs a plain rdkafka producer and
//! consumer at the same rate on the same broker, since the test broker
//! (tansu) is much slower than Redpanda and absolute numbers mislead.
//!
//! The broker is `TASKFLOW_TEST_BROKERS`, or a tansu process started here.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::{stream, StreamExt};
use rdkafka::{
    producer::{FutureProducer, FutureRecord},
    ClientConfig,
};
use serde_json::json;
use taskflow_tests::{
    broker::{create_topic, Collector, TansuBroker},
    system::TestSystem,
    unique,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("api");
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(5000);
    let concurrency: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
    let (_own_broker, brokers) = match std::env::var("TASKFLOW_TEST_BROKERS") {
        Ok(b) => (None, b),
        Err(_) => {
            let b = TansuBroker::start_new().await;
            let addr = b.address();
            (Some(b), addr)
        }
    };
    match what {
        "api" => bench_api(&brokers, n, concurrency).await,
        other => anyhow::bail!("unknown benchmark {other:?}; expected: api"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn summary(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        percentile(&ms, 1.0),
    )
}

async fn bench_api(brokers: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let topic = unique("bench-task-events");
    create_topic(brokers, &topic, 6).await;
    let sys = TestSystem::start(brokers, &topic).await;
    let token = sys.user().await;
    // Consume while the load runs: arrival is stamped on receipt.
    let collector = Collector::new(brokers, &topic);
    collector.wait_for_assignment(Duration::from_secs(60)).await;
    let collecting =
        tokio::spawn(async move { collector.collect(n, Duration::from_secs(600)).await });

    let started = Instant::now();
    let results: Vec<u16> = stream::iter(0..n)
        .map(|i| {
            let (sys, token) = (&sys, &token);
            async move {
                sys.http
                    .post(format!("{}/tasks", sys.api))
                    .bearer_auth(token)
                    .json(&json!({"title": format!("bench {i}"), "priority": "high", "tags": ["bench"]}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
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

    println!("taskflow-bench api: {n} creates, {concurrency} concurrent clients, broker {brokers}");
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
async fn baseline(brokers: &str, n: usize, rate: f64) -> anyhow::Result<(f64, f64, f64)> {
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
