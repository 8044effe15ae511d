//! The outbox relay under failure: per-task order when one task's rows cannot
//! be encoded, parked rows at the lowest ids, a deposed leader fenced while
//! the broker stalls, and the selection SQL against its model.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng};
use serde_json::json;
use taskflow_infra::{
    config::KafkaSettings,
    outbox::{self, plan, Fencing, OutboxWaker, Relay, RelayConfig},
};
use taskflow_schemas::{Codec, Event, EventType};
use taskflow_tests::{
    broker::{brokers, create_topic, Collector, Received, TansuBroker},
    db::{self, TestDb},
    events::versioned,
    metrics::{gauge, wait_for_gauge},
    registry::RegistryStandIn,
    unique,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn fast_config() -> RelayConfig {
    RelayConfig {
        idle_poll: Duration::from_millis(200),
        message_timeout: Duration::from_secs(5),
        fence_margin: Duration::from_millis(500),
        heartbeat: Duration::from_millis(200),
        retry_initial: Duration::from_millis(100),
        retry_max: Duration::from_millis(500),
        ..RelayConfig::default()
    }
}

struct RunningRelay {
    metrics: prometheus::Registry,
    stop: CancellationToken,
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn start_relay(db: &TestDb, brokers: &str, codec: &Codec, config: RelayConfig) -> RunningRelay {
    let metrics = prometheus::Registry::new();
    let stop = CancellationToken::new();
    let relay = Relay::new(
        db.pool.clone(),
        &KafkaSettings::new(brokers, &unique("relay")),
        codec.clone(),
        config,
        &metrics,
    )
    .expect("relay");
    tokio::spawn(relay.run(stop.clone()));
    RunningRelay { metrics, stop }
}

async fn enqueue_all(db: &TestDb, topic: &str, events: &[Event]) {
    for e in events {
        let mut tx = db.pool.begin().await.expect("begin");
        outbox::enqueue(&mut tx, topic, e, None)
            .await
            .expect("enqueue");
        tx.commit().await.expect("commit");
    }
}

/// (task, version) of every received message, decoded through the registry.
async fn decoded(codec: &Codec, received: &[Received]) -> Vec<(Uuid, i64, EventType)> {
    let mut out = Vec::with_capacity(received.len());
    for m in received {
        let e = codec.decode(&m.payload).await.expect("decode");
        out.push((e.metadata().task_id, e.metadata().version, e.event_type()));
    }
    out
}

fn by_task(seen: &[(Uuid, i64, EventType)]) -> HashMap<Uuid, Vec<i64>> {
    let mut map: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for (t, v, _) in seen {
        map.entry(*t).or_default().push(*v);
    }
    map
}

/// Registers a schema the task-update subject cannot evolve from, so the
/// registry refuses the real one with 409 until an operator removes it.
async fn block_subject(registry: &str, subject: &str) {
    let http = reqwest::Client::new();
    let blocker = json!({"type": "record", "name": "Blocker",
        "fields": [{"name": "a", "type": "string"}]});
    let r = http
        .post(format!("{registry}/subjects/{subject}/versions"))
        .json(&json!({"schema": blocker.to_string()}))
        .send()
        .await
        .expect("register blocker");
    assert!(r.status().is_success(), "register blocker: {}", r.status());
    let r = http
        .put(format!("{registry}/config/{subject}"))
        .json(&json!({"compatibility": "BACKWARD"}))
        .send()
        .await
        .expect("set compatibility");
    assert!(r.status().is_success());
}

/// The operator removes the schema that blocks the subject.
async fn unblock_subject(registry: &str, subject: &str) {
    let r = reqwest::Client::new()
        .delete(format!("{registry}/subjects/{subject}"))
        .send()
        .await
        .expect("delete subject");
    assert!(r.status().is_success(), "delete subject: {}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_type_holds_back_only_its_own_task() {
    let brokers = brokers();
    let topic = unique("relay-refused");
    create_topic(&brokers, &topic, 3).await;
    let db = db::fresh().await;
    let registry = RegistryStandIn::start().await;
    let codec = Codec::new(registry.url());
    let subject = Codec::subject(&topic, EventType::TaskUpdated);
    block_subject(registry.url(), &subject).await;
    let relay = start_relay(
        &db,
        &brokers,
        &codec,
        RelayConfig {
            park_after: 1_000,
            ..fast_config()
        },
    );

    // Task A: v1 is published; v2 (an update) is refused; v3 waits behind it.
    let a = Uuid::now_v7();
    let others: Vec<Uuid> = (0..1_000).map(|_| Uuid::now_v7()).collect();
    enqueue_all(&db, &topic, &[versioned(EventType::TaskCreated, a, 1)]).await;
    let mut writes = Vec::new();
    for (i, t) in others.iter().enumerate() {
        writes.push(versioned(EventType::TaskCreated, *t, 1));
        if i == 300 {
            writes.push(versioned(EventType::TaskUpdated, a, 2));
        }
        if i == 600 {
            writes.push(versioned(EventType::TaskCompleted, a, 3));
        }
    }
    // Every other task's second event is a completion: a type the registry accepts.
    writes.extend(
        others
            .iter()
            .map(|t| versioned(EventType::TaskCompleted, *t, 2)),
    );
    enqueue_all(&db, &topic, &writes).await;

    let collector = Collector::new(&brokers, &topic);
    let received = collector.collect(2_001, Duration::from_secs(180)).await;
    let extra = collector.drain_extra(Duration::from_secs(2)).await;
    let seen = decoded(&codec, &received).await;
    assert_eq!(seen.len(), 2_001, "A's v1 and both events of 1,000 tasks");
    let tasks = by_task(&seen);
    for t in &others {
        assert_eq!(tasks[t], [1, 2], "task {t} in order, once each");
    }
    assert_eq!(
        tasks[&a],
        [1],
        "A's v2 and v3 wait while the registry refuses v2"
    );
    assert!(extra.is_empty(), "nothing else: {} extra", extra.len());
    let (attempts, error): (i32, Option<String>) = sqlx::query_as(
        "SELECT attempts, last_error FROM outbox WHERE partition_key = $1 ORDER BY id LIMIT 1",
    )
    .bind(a.to_string())
    .fetch_one(&db.pool)
    .await
    .expect("A's head");
    assert!(attempts >= 1);
    assert!(
        error.unwrap_or_default().contains("409"),
        "the reason is recorded"
    );

    unblock_subject(registry.url(), &subject).await;
    let received = collector.collect(2, Duration::from_secs(60)).await;
    let extra = collector.drain_extra(Duration::from_secs(2)).await;
    let seen = decoded(&codec, &received).await;
    assert_eq!(
        seen.iter().map(|(t, v, _)| (*t, *v)).collect::<Vec<_>>(),
        [(a, 2), (a, 3)],
        "A's v2 then v3, once each, once the registry accepts"
    );
    assert!(extra.is_empty(), "no duplicates: {} extra", extra.len());
    assert_eq!(gauge(&relay.metrics, "taskflow_outbox_parked_rows"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unencodable_rows_at_the_lowest_ids_are_parked_and_the_rest_flows() {
    let brokers = brokers();
    let topic = unique("relay-parked");
    create_topic(&brokers, &topic, 3).await;
    let db = db::fresh().await;
    let codec = Codec::new(&taskflow_tests::registry::registry_url().await);

    // 600 rows no version of this binary can decode, at the lowest ids:
    // 300 tasks with two such rows each.
    let broken: Vec<Uuid> = (0..300).map(|_| Uuid::now_v7()).collect();
    for round in 0..2 {
        for t in &broken {
            sqlx::query(
                "INSERT INTO outbox (event_id, topic, partition_key, event_type, payload)
                 VALUES ($1, $2, $3, 'TaskFromTheFuture', $4)",
            )
            .bind(Uuid::now_v7())
            .bind(&topic)
            .bind(t.to_string())
            .bind(json!({"type": "TaskFromTheFuture", "round": round}))
            .execute(&db.pool)
            .await
            .expect("insert broken row");
        }
    }
    let healthy: Vec<Uuid> = (0..1_000).map(|_| Uuid::now_v7()).collect();
    let events: Vec<Event> = healthy
        .iter()
        .map(|t| versioned(EventType::TaskCreated, *t, 1))
        .collect();
    enqueue_all(&db, &topic, &events).await;
    let relay = start_relay(&db, &brokers, &codec, fast_config());

    let collector = Collector::new(&brokers, &topic);
    let received = collector.collect(1_000, Duration::from_secs(120)).await;
    let seen = decoded(&codec, &received).await;
    assert_eq!(seen.len(), 1_000, "every healthy row is published");
    assert!(collector
        .drain_extra(Duration::from_secs(1))
        .await
        .is_empty());

    // Each broken task's head is parked with its reason; the row behind it waits.
    let parked = outbox::list_parked(&db.pool).await.expect("list parked");
    assert_eq!(parked.len(), 300);
    assert!(parked.iter().all(|p| p.waiting_behind == 1));
    assert!(parked
        .iter()
        .all(|p| p.last_error.as_deref().unwrap_or("").contains("payload")));
    wait_for_gauge(
        &relay.metrics,
        "taskflow_outbox_parked_rows",
        300,
        Duration::from_secs(10),
        "parked gauge never reached 300",
    )
    .await;

    // The operator repairs one task's rows (as a newer binary would read
    // them) and retries: both go out, in order, and only those.
    let fixed = broken[0];
    let ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM outbox WHERE partition_key = $1 ORDER BY id")
            .bind(fixed.to_string())
            .fetch_all(&db.pool)
            .await
            .expect("ids");
    for (i, id) in ids.iter().enumerate() {
        let kind = if i == 0 {
            EventType::TaskCreated
        } else {
            EventType::TaskUpdated
        };
        let e = versioned(kind, fixed, i as i64 + 1);
        sqlx::query("UPDATE outbox SET payload = $2, event_type = $3 WHERE id = $1")
            .bind(id)
            .bind(serde_json::to_value(&e).expect("json"))
            .bind(kind.as_str())
            .execute(&db.pool)
            .await
            .expect("repair");
    }
    let n = outbox::retry_parked(&db.pool, Some(&ids[..1]))
        .await
        .expect("retry");
    assert_eq!(n, 1);
    let received = collector.collect(2, Duration::from_secs(60)).await;
    let seen = decoded(&codec, &received).await;
    assert_eq!(
        seen.iter().map(|(t, v, _)| (*t, *v)).collect::<Vec<_>>(),
        [(fixed, 1), (fixed, 2)]
    );
    assert!(collector
        .drain_extra(Duration::from_secs(1))
        .await
        .is_empty());
    assert_eq!(
        outbox::list_parked(&db.pool).await.expect("list").len(),
        299
    );
}

/// The backend pid holding the relay's advisory lock in this test's
/// database (every test's relays share the default key, each in its own
/// database), once its batch transaction has been open for longer than a
/// healthy batch takes: the batch is in flight to the stalled broker.
async fn leader_in_flight(db: &TestDb, lock_key: i64, timeout: Duration) -> i32 {
    let deadline = Instant::now() + timeout;
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.objid = ($1::bigint & 4294967295)::oid
               AND clock_timestamp() - a.xact_start > interval '300 milliseconds'",
        )
        .bind(lock_key)
        .fetch_optional(&db.pool)
        .await
        .expect("pg_locks");
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "no batch in flight");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_cannot_land_an_older_version_after_a_newer_one() {
    let mut broker = TansuBroker::start_new().await;
    let brokers = broker.address();
    let topic = unique("relay-fenced");
    create_topic(&brokers, &topic, 3).await;
    let db = db::fresh().await;
    let codec = Codec::new(&taskflow_tests::registry::registry_url().await);
    let config = RelayConfig {
        fencing: Fencing::MessageTimeout,
        message_timeout: Duration::from_secs(3),
        fence_margin: Duration::from_secs(1),
        ..fast_config()
    };
    let leader = start_relay(&db, &brokers, &codec, config.clone());
    wait_for_gauge(
        &leader.metrics,
        "taskflow_outbox_relay_active",
        1,
        Duration::from_secs(20),
        "the first relay never led",
    )
    .await;
    let standby = start_relay(&db, &brokers, &codec, config.clone());

    // 50 tasks, 12 versions each, written version by version.
    let tasks: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    let write = |version: i64| {
        tasks
            .iter()
            .map(|t| {
                let kind = if version == 1 {
                    EventType::TaskCreated
                } else {
                    EventType::TaskUpdated
                };
                versioned(kind, *t, version)
            })
            .collect::<Vec<_>>()
    };
    for v in 1..=4 {
        enqueue_all(&db, &topic, &write(v)).await;
    }
    let collector = Collector::new(&brokers, &topic);
    let first = collector.collect(50, Duration::from_secs(60)).await;
    assert_eq!(first.len(), 50, "the leader publishes");

    // The broker stalls; the leader's next batch hangs in flight; its lock
    // connection is terminated while the stand-by is ready.
    broker.pause();
    for v in 5..=8 {
        enqueue_all(&db, &topic, &write(v)).await;
    }
    let epoch = |db: &TestDb| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT epoch FROM outbox_leader")
                .fetch_one(&pool)
                .await
                .expect("epoch")
        }
    };
    let pid = leader_in_flight(&db, config.lock_key, Duration::from_secs(30)).await;
    let deposed_epoch = epoch(&db).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .expect("terminate");
    assert!(terminated);
    // A new term starts: the stand-by's, or the old leader's own on a new
    // connection (whichever takes the lock first); both wait out the fence.
    let deadline = Instant::now() + Duration::from_secs(30);
    while epoch(&db).await <= deposed_epoch
        || gauge(&standby.metrics, "taskflow_outbox_relay_active")
            + gauge(&leader.metrics, "taskflow_outbox_relay_active")
            != 1
    {
        assert!(Instant::now() < deadline, "no new leadership term began");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the new leader wait out the fence with the broker still stalled,
    // then let everything through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    broker.resume();
    for v in 9..=12 {
        enqueue_all(&db, &topic, &write(v)).await;
    }

    // Everything arrives; no task ever shows an older version after a newer.
    let mut all = first;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let got = collector.collect(usize::MAX, Duration::from_secs(2)).await;
        all.extend(got);
        let seen = decoded(&codec, &all).await;
        let tasks_seen = by_task(&seen);
        let complete = tasks
            .iter()
            .all(|t| tasks_seen.get(t).and_then(|v| v.last()) == Some(&12));
        if complete {
            for t in &tasks {
                let versions = &tasks_seen[t];
                for w in versions.windows(2) {
                    assert!(
                        w[1] == w[0] || w[1] == w[0] + 1,
                        "task {t}: {versions:?} (an older version after a newer one, or a gap)"
                    );
                }
                assert_eq!(versions.first(), Some(&1));
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every task reached version 12"
        );
    }
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    assert_eq!(remaining, 0);
    broker.kill().await;
}

/// The relay's SQL selects exactly what [`plan::select_heads`] defines, on
/// random outboxes with parked rows, waiting rows and shared keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_head_selection_sql_matches_its_model() {
    let db = db::fresh().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7a5c);
    for round in 0..25 {
        sqlx::query("TRUNCATE outbox")
            .execute(&db.pool)
            .await
            .expect("truncate");
        let n = rng.gen_range(0..80);
        let keys = rng.gen_range(1..12);
        let mut model = Vec::new();
        for _ in 0..n {
            let key = format!("k{}", rng.gen_range(0..keys));
            let topic = if rng.gen_bool(0.8) { "a" } else { "b" };
            let parked = rng.gen_bool(0.1);
            let waiting = rng.gen_bool(0.1);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO outbox (event_id, topic, partition_key, event_type, payload,
                                     parked_at, not_before)
                 VALUES ($1, $2, $3, 'TaskCreated', '{}',
                         CASE WHEN $4 THEN now() END,
                         CASE WHEN $5 THEN now() + interval '1 hour'
                              ELSE now() - interval '1 second' END)
                 RETURNING id",
            )
            .bind(Uuid::now_v7())
            .bind(topic)
            .bind(&key)
            .bind(parked)
            .bind(waiting)
            .fetch_one(&db.pool)
            .await
            .expect("insert");
            model.push(plan::Candidate {
                id,
                key: (topic.to_owned(), key),
                parked,
                ready: !waiting,
            });
        }
        let limit = rng.gen_range(1..20);
        let expected = plan::select_heads(&model, limit);
        let got: Vec<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM ({}) heads ORDER BY id",
            outbox::SELECT_HEADS
        ))
        .bind(limit as i64)
        .fetch_all(&db.pool)
        .await
        .expect("select heads");
        assert_eq!(got, expected, "round {round}: {model:?}");
    }
}

/// The in-process waker reaches a leader in this process with no NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_the_relay_in_process() {
    let brokers = brokers();
    let topic = unique("relay-wake");
    create_topic(&brokers, &topic, 1).await;
    let db = db::fresh().await;
    let codec = Codec::new(&taskflow_tests::registry::registry_url().await);
    let waker = OutboxWaker::new(db.pool.clone());
    let metrics = prometheus::Registry::new();
    let stop = CancellationToken::new();
    // An idle poll far beyond the test's patience: only the waker can wake it.
    let relay = Relay::new(
        db.pool.clone(),
        &KafkaSettings::new(&brokers, &unique("relay")),
        codec.clone(),
        RelayConfig {
            idle_poll: Duration::from_secs(600),
            ..fast_config()
        },
        &metrics,
    )
    .expect("relay")
    .with_waker(waker.clone());
    tokio::spawn(relay.run(stop.clone()));
    wait_for_gauge(
        &metrics,
        "taskflow_outbox_relay_active",
        1,
        Duration::from_secs(20),
        "the relay never led",
    )
    .await;
    let collector = Collector::new(&brokers, &topic);
    collector.wait_for_assignment(Duration::from_secs(30)).await;
    let t = Uuid::now_v7();
    enqueue_all(&db, &topic, &[versioned(EventType::TaskCreated, t, 1)]).await;
    waker.wake();
    let got = collector.collect(1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "published without a NOTIFY or a poll");
    stop.cancel();
}

/// Two relays on one database with different lock keys (a misconfiguration):
/// one leads, the other stands by, and per-task order holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lock_keys_by_mistake_still_give_one_publisher() {
    let brokers = brokers();
    let topic = unique("relay-two-keys");
    create_topic(&brokers, &topic, 3).await;
    let db = db::fresh().await;
    let codec = Codec::new(&taskflow_tests::registry::registry_url().await);
    let a = start_relay(&db, &brokers, &codec, fast_config());
    wait_for_gauge(
        &a.metrics,
        "taskflow_outbox_relay_active",
        1,
        Duration::from_secs(20),
        "the first relay never led",
    )
    .await;
    let b = start_relay(
        &db,
        &brokers,
        &codec,
        RelayConfig {
            lock_key: 4_242,
            ..fast_config()
        },
    );
    let tasks: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    for v in 1..=6 {
        let events: Vec<Event> = tasks
            .iter()
            .map(|t| {
                let kind = if v == 1 {
                    EventType::TaskCreated
                } else {
                    EventType::TaskUpdated
                };
                versioned(kind, *t, v)
            })
            .collect();
        enqueue_all(&db, &topic, &events).await;
        assert_eq!(
            gauge(&a.metrics, "taskflow_outbox_relay_active")
                + gauge(&b.metrics, "taskflow_outbox_relay_active"),
            1,
            "exactly one relay leads"
        );
    }
    let collector = Collector::new(&brokers, &topic);
    let received = collector.collect(240, Duration::from_secs(120)).await;
    let seen = decoded(&codec, &received).await;
    assert_eq!(seen.len(), 240);
    let per_task = by_task(&seen);
    for t in &tasks {
        assert_eq!(per_task[t], [1, 2, 3, 4, 5, 6], "task {t}");
    }
    assert_eq!(gauge(&a.metrics, "taskflow_outbox_relay_active"), 1);
    assert_eq!(gauge(&b.metrics, "taskflow_outbox_relay_active"), 0);
}
