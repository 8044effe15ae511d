//! `webhooks [N] [ENDPOINTS]`: the webhook sender against a local receiver.
//!
//! The receiver is an HTTP server in this process that answers 204 at once and notes when
//! each `webhook-id` arrived. The sender is the notifier's (`spawn_sender`), on a fresh
//! database, with ENDPOINTS endpoints (default 8) of one user, all pointing at the receiver.
//!
//! 1. **Throughput:** N deliveries (default 20,000) planned up front, spread over the
//!    endpoints; deliveries per second from the sender's start to the last success
//!    recorded. Next to it, the reference: a plain reqwest client POSTing the same bodies to
//!    the same receiver with the same concurrency (endpoints × per-endpoint limit), no
//!    database, no signing.
//! 2. **Latency:** deliveries planned one transaction at a time at 200/s (as the notifier
//!    plans them, `NOTIFY` included) for 10 s; from each plan's commit to its arrival at the
//!    receiver, p50/p99/max.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use futures::{stream, StreamExt};
use taskflow_infra::{
    feed::FeedNotifier,
    webhook::{self, signing, target::TargetPolicy},
};
use taskflow_tests::db;
use taskflow_workers::delivery::{
    plan::WebhookMessage, spawn_sender, store, DeliveryMetrics, DeliverySettings,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::summary;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receive(State(arrivals): State<Arrivals>, headers: HeaderMap) -> StatusCode {
    let now = Instant::now();
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_owned(), now);
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&arrivals));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, arrivals))
}

fn count(arrivals: &Arrivals) -> usize {
    arrivals.lock().unwrap_or_else(|e| e.into_inner()).len()
}

pub(crate) async fn bench_webhooks(n: usize, endpoints: usize) -> anyhow::Result<()> {
    let endpoints = endpoints.max(1);
    let settings = DeliverySettings {
        policy: TargetPolicy {
            allow_private: true,
        },
        ..DeliverySettings::default()
    };
    let concurrency = endpoints * settings.per_endpoint;
    println!(
        "taskflow-bench webhooks: {n} deliveries to {endpoints} endpoints ({} in flight each), one local receiver",
        settings.per_endpoint
    );
    let (url, arrivals) = start_receiver().await?;
    let database = db::fresh().await;
    let pool = database.pool.clone();
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'x')")
        .bind(user)
        .bind(format!("{user}@example.test"))
        .execute(&pool)
        .await?;
    let mut ids = Vec::new();
    for _ in 0..endpoints {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO webhook_endpoints (id, user_id, url, secret) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(user)
        .bind(&url)
        .bind(signing::new_secret())
        .execute(&pool)
        .await?;
        ids.push(id);
    }
    let body = webhook::body(
        "task.created",
        chrono::Utc::now(),
        &serde_json::json!({"metadata": {"task_id": Uuid::now_v7()}, "task": {"title": "benchmark"}}),
    );

    // 1. Throughput: a backlog planned up front.
    sqlx::query(
        "INSERT INTO deliveries (id, user_id, channel, target, endpoint_id, event_id, kind, payload) \
         SELECT gen_random_uuid(), $1, 'webhook', e::text, e, gen_random_uuid(), 'task.created', $3 \
         FROM generate_series(0, $2 - 1) i, LATERAL (SELECT ($4::uuid[])[1 + i % array_length($4::uuid[], 1)] AS e) x",
    )
    .bind(user)
    .bind(i64::try_from(n)?)
    .bind(&body)
    .bind(&ids)
    .execute(&pool)
    .await?;
    let stop = CancellationToken::new();
    let registry = prometheus::Registry::new();
    let started = Instant::now();
    let sender = spawn_sender(
        pool.clone(),
        settings.clone(),
        DeliveryMetrics::register(&registry)?,
        FeedNotifier::spawn(pool.clone()),
        stop.clone(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE state = 'succeeded'")
                .fetch_one(&pool)
                .await?;
        if done >= i64::try_from(n)? {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {done} of {n} delivered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed().as_secs_f64();
    let rate = n as f64 / took;

    let client = reqwest::Client::new();
    let plain_started = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let (client, url, body) = (&client, &url, &body);
            async move {
                let _ = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("webhook-id", format!("plain_{i}"))
                    .body(body.clone())
                    .send()
                    .await;
            }
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<()>>()
        .await;
    let plain = n as f64 / plain_started.elapsed().as_secs_f64();
    println!(
        "  backlog of {n}: {rate:.0} deliveries/s (signed, recorded, each attempt in PostgreSQL)"
    );
    println!(
        "  plain reqwest POSTs, same receiver, {concurrency} in flight: {plain:.0} requests/s"
    );
    println!("  ratio sender / plain: {:.2}", rate / plain);

    // 2. Latency: planned at 200/s, one transaction each, as the notifier plans them.
    let per_second = 200usize;
    let total = per_second * 10;
    let message = WebhookMessage {
        kind: "task.created",
        body: body.clone(),
    };
    let mut committed: Vec<(String, Instant)> = Vec::with_capacity(total * endpoints);
    let pace = Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(
            (pace + Duration::from_secs_f64(i as f64 / per_second as f64)).into(),
        )
        .await;
        let mut tx = pool.begin().await?;
        let event = Uuid::now_v7();
        store::plan(&mut tx, user, event, &message, None).await?;
        let planned: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM deliveries WHERE event_id = $1")
                .bind(event)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let at = Instant::now();
        committed.extend(planned.into_iter().map(|id| (webhook::message_id(id), at)));
    }
    let want = committed.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed
        .iter()
        .filter(|(id, _)| {
            arrivals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(id)
        })
        .count()
        < want
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let latencies: Vec<f64> = {
        let seen = arrivals.lock().unwrap_or_else(|e| e.into_inner());
        committed
            .iter()
            .filter_map(|(id, at)| {
                seen.get(id)
                    .map(|r| r.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            })
            .collect()
    };
    let got = latencies.len();
    let (p50, p99, max) = summary(latencies);
    println!(
        "  {per_second} events/s × {endpoints} endpoints for 10 s: {got}/{want} arrived; plan commit -> receiver (ms): p50 {p50:.1}  p99 {p99:.1}  max {max:.1}"
    );
    println!("  (receiver saw {} requests in all)", count(&arrivals));
    stop.cancel();
    let _ = sender.await;
    Ok(())
}
