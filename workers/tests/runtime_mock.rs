//! The consumer runtime against librdkafka's in-process mock cluster: ordering per partition,
//! commits after the effect, dead letters, transient retries, shutdown and rebalances.
// Test code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use prometheus::Registry;
use rdkafka::message::Headers;
use rdkafka::Message;
use taskflow_workers::runtime::{self, Decoded, Handler, HandlerError, RuntimeSettings};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Default)]
struct Record {
    /// (partition, offset, task_id, version) in handling order.
    seen: Vec<(i32, i64, Uuid, i64)>,
    /// Remaining transient failures per event.
    transient: HashMap<Uuid, u32>,
    permanent: HashSet<Uuid>,
}

#[derive(Clone, Default)]
struct Recorder {
    inner: Arc<Mutex<Record>>,
    delay: Duration,
}

impl Recorder {
    fn seen(&self) -> Vec<(i32, i64, Uuid, i64)> {
        self.inner.lock().unwrap().seen.clone()
    }
}

impl Handler for Recorder {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let meta = msg.event.metadata();
        let mut r = self.inner.lock().unwrap();
        if let Some(left) = r.transient.get_mut(&meta.event_id) {
            if *left > 0 {
                *left -= 1;
                return Err(HandlerError::Transient("database down".to_owned()));
            }
        }
        if r.permanent.contains(&meta.event_id) {
            return Err(HandlerError::Permanent("violates a constraint".to_owned()));
        }
        r.seen
            .push((msg.partition, msg.offset, meta.task_id, meta.version));
        Ok(())
    }
}

fn settings(group: &str, topic: &str) -> RuntimeSettings {
    let mut s = RuntimeSettings::new(group, &[topic]);
    s.commit_interval = Duration::from_millis(100);
    s.initial_backoff = Duration::from_millis(10);
    s.max_backoff = Duration::from_millis(50);
    s.lag_interval = Duration::from_millis(200);
    s.drain_timeout = Duration::from_secs(5);
    s.consumer_overrides = vec![
        ("session.timeout.ms".to_owned(), "6000".to_owned()),
        ("heartbeat.interval.ms".to_owned(), "500".to_owned()),
    ];
    s
}

/// Asserts each task's versions 1..=versions were all handled, in order: a redelivery (after a
/// rebalance) may restart from an earlier version, but never skips one.
fn assert_in_order(seen: &[(i32, i64, Uuid, i64)], tasks: &[Uuid], versions: i64) {
    for task in tasks {
        let got: Vec<i64> = seen.iter().filter(|s| s.2 == *task).map(|s| s.3).collect();
        assert_eq!(got.first(), Some(&1), "task {task}: {got:?}");
        for pair in got.windows(2) {
            assert!(
                pair[1] == pair[0] + 1 || pair[1] <= pair[0],
                "task {task}: {got:?} skips from {} to {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(got.iter().max(), Some(&versions), "task {task}: {got:?}");
    }
}

fn metric(registry: &Registry, name: &str, label: (&str, &str)) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|f| f.name() == name)
        .flat_map(|f| f.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == label.0 && l.value() == label.1)
        })
        .map(|m| m.get_counter().get_value())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_in_order_commits_and_dead_letters() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-orders";
    let group = "rt-g1";
    cluster.create_topic(topic, 3, 1).unwrap();
    cluster
        .create_topic(&taskflow_schemas::topics::dlq(group), 1, 1)
        .unwrap();
    let producer = producer(&brokers);

    let tasks: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let mut events = Vec::new();
    for v in 1..=5 {
        for t in &tasks {
            events.push(common::event(*t, v));
        }
    }
    for chunk in events.chunks(6) {
        produce_events(&producer, topic, chunk).await;
    }
    produce_raw(
        &producer,
        topic,
        "garbage-key",
        b"\x00\x00\x00\x00\x07not avro",
    )
    .await;

    let recorder = Recorder::default();
    // One event fails transiently twice, one permanently.
    let flaky = events[3].metadata().event_id;
    let refused = events[4].metadata().event_id;
    {
        let mut r = recorder.inner.lock().unwrap();
        r.transient.insert(flaky, 2);
        r.permanent.insert(refused);
    }
    let registry = Registry::new();
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        recorder.clone(),
        &registry,
        CancellationToken::new(),
    )
    .unwrap();
    let probe = handle.probe();

    let highs = high_watermarks(&brokers, topic, 3);
    assert_eq!(highs.iter().sum::<i64>(), 31);
    wait_for(
        "every partition committed to its high watermark",
        Duration::from_secs(30),
        || {
            (0..3).all(|p| {
                probe.committed(topic, p) == (highs[p as usize] > 0).then_some(highs[p as usize])
            })
        },
    )
    .await;
    handle.stop().await.unwrap();

    let seen = recorder.seen();
    assert_eq!(
        seen.len(),
        29,
        "30 events minus the refused one, no duplicates without a crash"
    );
    let refused_task = events[4].metadata().task_id;
    let others: Vec<Uuid> = tasks
        .iter()
        .copied()
        .filter(|t| *t != refused_task)
        .collect();
    assert_in_order(&seen, &others, 5);
    let refused_versions: Vec<i64> = seen
        .iter()
        .filter(|s| s.2 == refused_task)
        .map(|s| s.3)
        .collect();
    assert_eq!(
        refused_versions,
        vec![2, 3, 4, 5],
        "the partition moved on past the dead letter"
    );
    assert!(seen.iter().any(|s| events
        .iter()
        .any(|e| e.metadata().event_id == flaky && e.metadata().task_id == s.2)));
    assert_eq!(
        committed(&brokers, group, topic, 3),
        highs
            .iter()
            .map(|h| (*h > 0).then_some(*h))
            .collect::<Vec<_>>()
    );

    // Two dead letters: the undecodable bytes and the refused event, each with the reason.
    let dlq = read_all(&brokers, &taskflow_schemas::topics::dlq(group), 1, 2).await;
    assert_eq!(dlq.len(), 2);
    let header = |m: &rdkafka::message::OwnedMessage, k: &str| {
        m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == k)
                .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
        })
    };
    let garbage = dlq
        .iter()
        .find(|m| m.key() == Some(b"garbage-key".as_slice()))
        .expect("garbage dead-lettered");
    assert_eq!(
        garbage.payload(),
        Some(b"\x00\x00\x00\x00\x07not avro".as_slice())
    );
    assert_eq!(header(garbage, "error.kind").as_deref(), Some("decode"));
    assert_eq!(header(garbage, "source.topic").as_deref(), Some(topic));
    assert!(header(garbage, "source.offset").is_some());
    let refused_msg = dlq
        .iter()
        .find(|m| m.key() != Some(b"garbage-key".as_slice()))
        .unwrap();
    assert_eq!(
        header(refused_msg, "error.kind").as_deref(),
        Some("handler")
    );
    assert_eq!(
        header(refused_msg, "error").as_deref(),
        Some("violates a constraint")
    );
    assert_eq!(
        header(refused_msg, "event_type").as_deref(),
        Some("ReminderDue"),
        "original headers kept"
    );
    assert_eq!(header(refused_msg, "attempts").as_deref(), Some("1"));

    assert_eq!(
        metric(
            &registry,
            "taskflow_consumer_messages_total",
            ("outcome", "ok")
        ),
        29.0
    );
    assert_eq!(
        metric(
            &registry,
            "taskflow_consumer_messages_total",
            ("outcome", "dlq")
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            "taskflow_consumer_messages_total",
            ("outcome", "retry")
        ),
        2.0
    );
    assert_eq!(
        metric(
            &registry,
            "taskflow_consumer_rebalances_total",
            ("kind", "assign")
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_block_the_partition_without_committing() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-blocked";
    let group = "rt-g2";
    cluster.create_topic(topic, 1, 1).unwrap();
    let producer = producer(&brokers);
    let task = Uuid::now_v7();
    let events: Vec<_> = (1..=3).map(|v| common::event(task, v)).collect();
    produce_events(&producer, topic, &events[..1]).await;
    produce_events(&producer, topic, &events[1..2]).await;
    produce_events(&producer, topic, &events[2..]).await;

    let recorder = Recorder::default();
    // The second event keeps failing: the "database" stays down.
    recorder
        .inner
        .lock()
        .unwrap()
        .transient
        .insert(events[1].metadata().event_id, u32::MAX);
    let registry = Registry::new();
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        recorder.clone(),
        &registry,
        CancellationToken::new(),
    )
    .unwrap();
    let probe = handle.probe();
    wait_for("the first event committed", Duration::from_secs(20), || {
        probe.committed(topic, 0) == Some(1)
    })
    .await;
    wait_for("several retries", Duration::from_secs(20), || {
        metric(
            &registry,
            "taskflow_consumer_messages_total",
            ("outcome", "retry"),
        ) >= 3.0
    })
    .await;
    // Stop while the second event is still failing: nothing past it is committed or skipped.
    handle.stop().await.unwrap();
    assert_eq!(recorder.seen().len(), 1);
    assert_eq!(committed(&brokers, group, topic, 1), vec![Some(1)]);
    assert_eq!(
        metric(&registry, "taskflow_consumer_dlq_total", ("topic", topic)),
        0.0
    );

    // The dependency recovers; a restarted worker resumes at the committed offset.
    recorder.inner.lock().unwrap().transient.clear();
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        recorder.clone(),
        &Registry::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let probe = handle.probe();
    wait_for(
        "all committed after recovery",
        Duration::from_secs(20),
        || probe.committed(topic, 0) == Some(3),
    )
    .await;
    handle.stop().await.unwrap();
    let versions: Vec<i64> = recorder.seen().iter().map(|s| s.3).collect();
    assert_eq!(versions, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_the_in_flight_message_and_commits() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-shutdown";
    let group = "rt-g3";
    cluster.create_topic(topic, 1, 1).unwrap();
    let producer = producer(&brokers);
    let task = Uuid::now_v7();
    let events: Vec<_> = (1..=20).map(|v| common::event(task, v)).collect();
    produce_events(&producer, topic, &events).await;

    let recorder = Recorder {
        delay: Duration::from_millis(200),
        ..Recorder::default()
    };
    let mut s = settings(group, topic);
    // No periodic commit: whatever is committed comes from the final synchronous commit.
    s.commit_interval = Duration::from_secs(3600);
    let token = CancellationToken::new();
    let handle = runtime::spawn(
        base_config(&brokers),
        s,
        JsonDecoder,
        recorder.clone(),
        &Registry::new(),
        token.clone(),
    )
    .unwrap();
    wait_for("a few messages handled", Duration::from_secs(20), || {
        recorder.seen().len() >= 3
    })
    .await;
    // Cancel through the caller's token, as SIGTERM does.
    token.cancel();
    handle.join().await.unwrap();
    let handled = recorder.seen().len() as i64;
    assert!(handled < 20, "shutdown stopped taking work");
    // Everything handled, including the message in flight at cancel time, is committed.
    assert_eq!(committed(&brokers, group, topic, 1), vec![Some(handled)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_partitions_over_without_losing_messages() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-rebalance";
    let group = "rt-g4";
    cluster.create_topic(topic, 4, 1).unwrap();
    let producer = producer(&brokers);
    let tasks: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();

    let a = Recorder {
        delay: Duration::from_millis(5),
        ..Recorder::default()
    };
    let b = Recorder {
        inner: a.inner.clone(),
        delay: Duration::from_millis(5),
    };
    let registry_a = Registry::new();
    let first = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        a.clone(),
        &registry_a,
        CancellationToken::new(),
    )
    .unwrap();
    let probe_a = first.probe();
    wait_for("first member assigned", Duration::from_secs(30), || {
        probe_a.assigned().len() == 4
    })
    .await;

    for v in 1..=10 {
        let batch: Vec<_> = tasks.iter().map(|t| common::event(*t, v)).collect();
        produce_events(&producer, topic, &batch).await;
        if v == 3 {
            // Join while messages are flowing.
            let second = runtime::spawn(
                base_config(&brokers),
                settings(group, topic),
                JsonDecoder,
                b.clone(),
                &Registry::new(),
                CancellationToken::new(),
            )
            .unwrap();
            let probe_b = second.probe();
            wait_for(
                "partitions split between members",
                Duration::from_secs(60),
                || !probe_b.assigned().is_empty() && probe_a.assigned().len() < 4,
            )
            .await;
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(8)).await;
                second.stop().await.unwrap();
            });
        }
    }
    let highs = high_watermarks(&brokers, topic, 4);
    wait_for("every event handled", Duration::from_secs(60), || {
        let seen = a.seen();
        tasks.iter().all(|t| {
            seen.iter()
                .filter(|s| s.2 == *t)
                .map(|s| s.3)
                .collect::<HashSet<_>>()
                .len()
                == 10
        })
    })
    .await;
    // After the second member leaves, the first owns everything again and commits it all.
    let expected: Vec<Option<i64>> = highs.iter().map(|h| (*h > 0).then_some(*h)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while committed(&brokers, group, topic, 4) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "offsets not committed: {:?} vs {expected:?}",
            committed(&brokers, group, topic, 4)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    first.stop().await.unwrap();
    assert_in_order(&a.seen(), &tasks, 10);
    // Random keys may leave a partition empty: it has nothing to commit (None, not Some(0)).
    assert_eq!(committed(&brokers, group, topic, 4), expected);
    assert!(
        metric(
            &registry_a,
            "taskflow_consumer_rebalances_total",
            ("kind", "revoke")
        ) >= 1.0
    );
}

/// Handling log of one member: (member, partition, offset, task_id, version), in global
/// handling order (the members share the log).
type MemberLog = Arc<Mutex<Vec<(&'static str, i32, i64, Uuid, i64)>>>;

#[derive(Clone)]
struct Member {
    name: &'static str,
    log: MemberLog,
    delay: Duration,
}

impl Handler for Member {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        tokio::time::sleep(self.delay).await;
        let meta = msg.event.metadata();
        self.log.lock().unwrap().push((
            self.name,
            msg.partition,
            msg.offset,
            meta.task_id,
            meta.version,
        ));
        Ok(())
    }
}

/// Records every change of a member's assignment, sampled every millisecond on a plain thread
/// (so it is not starved by the runtime's workers), until `stop` is cancelled.
fn watch_assignment(
    probe: runtime::Probe,
    stop: CancellationToken,
) -> std::thread::JoinHandle<Vec<Vec<runtime::TopicPartition>>> {
    std::thread::spawn(move || {
        let mut history: Vec<Vec<runtime::TopicPartition>> = Vec::new();
        while !stop.is_cancelled() {
            let now = probe.assigned();
            if history.last() != Some(&now) {
                history.push(now);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        history
    })
}

/// The cooperative protocol (KIP-429) as docker-compose runs it: member A alone, B joins while
/// messages flow (A gives up only the moved partitions, keeps processing the others), then A
/// leaves while messages flow (B takes A's partitions incrementally). Nothing is lost, every
/// offset ends committed, neither member stops on an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_moves_only_the_moved_partitions_without_losing_messages() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-cooperative";
    let group = "rt-g5";
    cluster.create_topic(topic, 4, 1).unwrap();
    let producer = producer(&brokers);
    let tasks: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let cooperative = || {
        let mut s = settings(group, topic);
        s.assignor = runtime::Assignor::CooperativeSticky;
        s
    };
    let log: MemberLog = Arc::default();
    let member = |name| Member {
        name,
        log: log.clone(),
        delay: Duration::from_millis(5),
    };
    let handled = |log: &MemberLog| -> HashSet<(Uuid, i64)> {
        log.lock()
            .unwrap()
            .iter()
            .map(|e| (e.3, e.4))
            .collect::<HashSet<_>>()
    };
    let all_handled_up_to = |v: i64| {
        let got = handled(&log);
        tasks
            .iter()
            .all(|t| (1..=v).all(|version| got.contains(&(*t, version))))
    };
    let produce_version = |v: i64| {
        // Task i always goes to partition i % 4: two tasks, 20 messages per partition.
        let batch: Vec<_> = (0..)
            .zip(&tasks)
            .map(|(i, t)| (i % 4, common::event(*t, v)))
            .collect();
        let producer = producer.clone();
        async move { produce_events_to(&producer, topic, &batch).await }
    };

    // Phase 1: A alone owns all four partitions.
    let registry_a = Registry::new();
    let first = runtime::spawn(
        base_config(&brokers),
        cooperative(),
        JsonDecoder,
        member("a"),
        &registry_a,
        CancellationToken::new(),
    )
    .unwrap();
    let probe_a = first.probe();
    wait_for("first member assigned", Duration::from_secs(30), || {
        probe_a.assigned().len() == 4
    })
    .await;
    let watching = CancellationToken::new();
    let watcher = watch_assignment(probe_a.clone(), watching.clone());
    for v in 1..=3 {
        produce_version(v).await;
    }

    // Phase 2: B joins while messages flow.
    let registry_b = Registry::new();
    let second = runtime::spawn(
        base_config(&brokers),
        cooperative(),
        JsonDecoder,
        member("b"),
        &registry_b,
        CancellationToken::new(),
    )
    .unwrap();
    let probe_b = second.probe();
    produce_version(4).await;
    wait_for(
        "partitions split between members",
        Duration::from_secs(60),
        || probe_b.assigned().len() == 2 && probe_a.assigned().len() == 2,
    )
    .await;
    let retained = probe_a.assigned();
    let moved = probe_b.assigned();
    let split_at = log.lock().unwrap().len();
    for v in 5..=7 {
        produce_version(v).await;
    }
    wait_for("versions 1..=7 handled", Duration::from_secs(60), || {
        all_handled_up_to(7)
    })
    .await;
    watching.cancel();
    let history = watcher.join().unwrap();

    // A never gave up a partition it kept: the cooperative revoke named only the moved ones
    // (an eager rebalance revokes everything, which the watcher sees as a gap).
    for snapshot in &history {
        for tp in &retained {
            assert!(
                snapshot.contains(tp),
                "retained partition {tp} was revoked: assignment history {history:?}"
            );
        }
    }
    assert_eq!(
        history.first().map(Vec::len),
        Some(4),
        "history {history:?}"
    );
    assert_eq!(history.last(), Some(&retained), "history {history:?}");
    assert_eq!(
        metric(
            &registry_a,
            "taskflow_consumer_rebalances_total",
            ("kind", "revoke")
        ),
        1.0,
        "A saw exactly one (incremental) revoke"
    );
    {
        let log = log.lock().unwrap();
        let retained_partitions: HashSet<i32> = retained.iter().map(|tp| tp.partition).collect();
        // A kept processing its retained partitions after the split, and only A did...
        for p in &retained_partitions {
            assert!(
                log[split_at..].iter().any(|e| e.0 == "a" && e.1 == *p),
                "A stopped processing retained partition {p} after the split"
            );
            assert!(
                !log.iter().any(|e| e.0 == "b" && e.1 == *p),
                "B handled A's retained partition {p}"
            );
        }
        // ...without a restart: each offset of a retained partition handled once, in order.
        for p in &retained_partitions {
            let offsets: Vec<i64> = log
                .iter()
                .filter(|e| e.0 == "a" && e.1 == *p)
                .map(|e| e.2)
                .collect();
            assert!(
                offsets.windows(2).all(|w| w[1] == w[0] + 1),
                "partition {p} was re-read or skipped: {offsets:?}"
            );
        }
        // The moved partitions are B's now.
        for tp in &moved {
            assert!(
                log[split_at..]
                    .iter()
                    .any(|e| e.0 == "b" && e.1 == tp.partition),
                "B never processed moved partition {tp}"
            );
        }
    }

    // Phase 3: A leaves while messages flow; B takes A's partitions over.
    produce_version(8).await;
    assert!(probe_a.is_running(), "A stopped on its own");
    let leaving = tokio::spawn(first.stop());
    for v in 9..=10 {
        produce_version(v).await;
    }
    leaving.await.unwrap().expect("A left cleanly");
    wait_for("B owns every partition", Duration::from_secs(60), || {
        probe_b.assigned().len() == 4
    })
    .await;
    wait_for("every event handled", Duration::from_secs(60), || {
        all_handled_up_to(10)
    })
    .await;

    let highs = high_watermarks(&brokers, topic, 4);
    let expected: Vec<Option<i64>> = highs.iter().map(|h| Some(*h)).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while committed(&brokers, group, topic, 4) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "offsets not committed: {:?} vs {expected:?}",
            committed(&brokers, group, topic, 4)
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // A StrayMessage (or any fatal error) would have stopped B's loop and surface here.
    assert!(probe_b.is_running(), "B stopped on its own");
    second.stop().await.expect("B stopped cleanly");
    assert_eq!(committed(&brokers, group, topic, 4), expected);

    let log = log.lock().unwrap();
    let seen: Vec<(i32, i64, Uuid, i64)> = log.iter().map(|e| (e.1, e.2, e.3, e.4)).collect();
    assert_in_order(&seen, &tasks, 10);
    assert_eq!(highs, vec![20; 4], "every produced message is in the topic");
    assert!(
        metric(
            &registry_b,
            "taskflow_consumer_rebalances_total",
            ("kind", "assign")
        ) >= 2.0
    );
}

/// Panics on one marker event, records the others.
#[derive(Clone)]
struct PanicsOn {
    marker: Uuid,
    inner: Recorder,
}

impl Handler for PanicsOn {
    async fn handle(&self, msg: &Decoded) -> Result<(), HandlerError> {
        if msg.event.metadata().event_id == self.marker {
            panic!("handler bug on offset {}", msg.offset);
        }
        self.inner.handle(msg).await
    }
}

/// Decodes JSON, but panics on the bytes `PANIC`.
struct PanickingDecoder;

impl runtime::Decoder for PanickingDecoder {
    async fn decode(&self, bytes: &[u8]) -> Result<taskflow_schemas::Event, runtime::DecodeError> {
        assert!(bytes != b"PANIC", "decoder bug");
        runtime::Decoder::decode(&JsonDecoder, bytes).await
    }
}

fn panic_count(registry: &Registry, topic: &str) -> f64 {
    metric(registry, "taskflow_consumer_panics_total", ("topic", topic))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_stops_the_worker_without_committing_its_message() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-panic";
    let group = "rt-g-panic";
    cluster.create_topic(topic, 1, 1).unwrap();
    let producer = producer(&brokers);
    let task = Uuid::now_v7();
    let events: Vec<_> = (1..=10).map(|v| common::event(task, v)).collect();
    produce_events(&producer, topic, &events[..5]).await;
    produce_events(&producer, topic, &events[5..6]).await;
    produce_events(&producer, topic, &events[6..]).await;
    // Offsets 0..=4 are fine, offset 5 is the marker, 6..=9 come after it.
    let marker = events[5].metadata().event_id;

    let recorder = Recorder::default();
    let registry = Registry::new();
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        PanicsOn {
            marker,
            inner: recorder.clone(),
        },
        &registry,
        CancellationToken::new(),
    )
    .unwrap();
    let probe = handle.probe();
    // The worker stops by itself, with an error the binary turns into a non-zero exit.
    let result = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("the worker stops after the panic");
    match result {
        Err(runtime::RuntimeError::PartitionPanicked {
            topic: t,
            partition,
            offset,
            message,
        }) => {
            assert_eq!((t.as_str(), partition, offset), (topic, 0, Some(5)));
            assert!(message.contains("handler bug on offset 5"), "{message}");
        }
        other => panic!("expected PartitionPanicked, got {other:?}"),
    }
    assert!(!probe.is_running(), "readiness turns red");
    assert_eq!(panic_count(&registry, topic), 1.0);
    // Nothing from the marker on was handled or committed; what came before was committed.
    let versions: Vec<i64> = recorder.seen().iter().map(|s| s.3).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    assert_eq!(committed(&brokers, group, topic, 1), vec![Some(5)]);
    assert_eq!(
        metric(&registry, "taskflow_consumer_dlq_total", ("topic", topic)),
        0.0,
        "a panic is not a dead letter"
    );

    // The supervisor restarts the worker (the bug fixed): the marker is delivered again.
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        JsonDecoder,
        recorder.clone(),
        &Registry::new(),
        CancellationToken::new(),
    )
    .unwrap();
    let probe = handle.probe();
    wait_for(
        "everything committed after the restart",
        Duration::from_secs(20),
        || probe.committed(topic, 0) == Some(10),
    )
    .await;
    handle.stop().await.unwrap();
    let versions: Vec<i64> = recorder.seen().iter().map(|s| s.3).collect();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_decoder_stops_the_worker_and_other_partitions_commit_only_done_work() {
    init_tracing();
    let cluster = mock_cluster();
    let brokers = cluster.bootstrap_servers();
    let topic = "rt-panic-decode";
    let group = "rt-g-panic-decode";
    cluster.create_topic(topic, 2, 1).unwrap();
    let producer = producer(&brokers);
    let task = Uuid::now_v7();
    let events: Vec<_> = (1..=3).map(|v| (0, common::event(task, v))).collect();
    produce_events_to(&producer, topic, &events).await;
    producer
        .send(
            rdkafka::producer::FutureRecord::to(topic)
                .partition(1)
                .key("k")
                .payload(b"PANIC".as_slice()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();

    let recorder = Recorder::default();
    let registry = Registry::new();
    let handle = runtime::spawn(
        base_config(&brokers),
        settings(group, topic),
        PanickingDecoder,
        recorder.clone(),
        &registry,
        CancellationToken::new(),
    )
    .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("the worker stops after the panic");
    assert!(
        matches!(
            result,
            Err(runtime::RuntimeError::PartitionPanicked {
                partition: 1,
                offset: Some(0),
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(panic_count(&registry, topic), 1.0);
    let committed = committed(&brokers, group, topic, 2);
    assert_eq!(committed[1], None, "the panicking message is not committed");
    // Partition 0 commits exactly what it handled before the worker stopped.
    let handled = recorder.seen().len() as i64;
    assert_eq!(committed[0], (handled > 0).then_some(handled));
}
