//! `taskflow-admin` run as an operator runs it: the built binary as a child process,
//! configured from `TASKFLOW_*` variables, against the real broker, PostgreSQL and the
//! registry stand-in. Each test has its own topics, groups and database, so they run in
//! parallel.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use taskflow_schemas::{schema, Codec, EventType};
use taskflow_tests::broker::{brokers, create_topic, Collector};
use taskflow_tests::registry::registry_url;
use taskflow_tests::worker::binary;
use taskflow_tests::{db, unique};
use taskflow_workers::runtime::dlq::{dlq_headers, Failure, FailureKind, Source};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        assert_eq!(self.code, 0, "exit {}: {}", self.code, self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("--json output does not parse ({e}): {}", self.stdout))
    }
}

/// Runs `taskflow-admin args...` with the broker, registry and (when given) database of
/// this test.
async fn admin(database_url: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(binary("taskflow-admin"));
    cmd.args(args)
        .env("TASKFLOW_KAFKA_BROKERS", brokers())
        .env("TASKFLOW_SCHEMA_REGISTRY_URL", registry_url().await)
        .env(
            "TASKFLOW_LOG",
            std::env::var("TASKFLOW_TEST_LOG").unwrap_or_else(|_| "warn".to_owned()),
        )
        // Nothing of the developer's environment may leak into a test.
        .env_remove("TASKFLOW_TOPIC_TASK_EVENTS")
        .env_remove("TASKFLOW_TOPIC_REMINDERS")
        .kill_on_drop(true);
    match database_url {
        Some(url) => cmd.env("TASKFLOW_DATABASE_URL", url),
        // Nothing listens on port 9: commands that need no database must not touch it.
        None => cmd.env(
            "TASKFLOW_DATABASE_URL",
            "postgres://nobody@127.0.0.1:9/none",
        ),
    };
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("taskflow-admin did not finish in 120 s")
        .expect("run taskflow-admin");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer")
}

fn headers(pairs: &[(String, Option<Vec<u8>>)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
        h.insert(Header {
            key: k,
            value: v.as_deref(),
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_create_is_idempotent_and_describe_shows_them() {
    let events = unique("admin-events");
    let reminders = unique("admin-reminders");
    let group = unique("admin-group");
    let create = [
        "--json",
        "topics",
        "create",
        "--task-events-topic",
        &events,
        "--reminders-topic",
        &reminders,
        "--group",
        &group,
        "--task-events-partitions",
        "3",
        "--reminders-partitions",
        "2",
    ];
    let dlq = format!("taskflow.dlq.{group}");

    let first = admin(None, &create).await.json();
    let topics = first["topics"].as_array().expect("topics");
    let got: Vec<(&str, i64, i64, &str)> = topics
        .iter()
        .map(|t| {
            (
                t["topic"].as_str().unwrap(),
                t["partitions"].as_i64().unwrap(),
                t["retention_ms"].as_i64().unwrap(),
                t["action"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (events.as_str(), 3, -1, "created"),
            (reminders.as_str(), 2, 2_592_000_000, "created"),
            (dlq.as_str(), 1, -1, "created"),
        ]
    );

    // Again: nothing is created, nothing fails; the retention is set again where the broker
    // has AlterConfigs, and the report says so where it has not (tansu 0.6).
    let second = admin(None, &create).await.json();
    for t in second["topics"].as_array().expect("topics") {
        assert_eq!(t["action"], "exists", "{t}");
        match t["configs"].as_str() {
            Some("altered") => assert!(t["note"].is_null(), "{t}"),
            Some("unsupported") => {
                assert!(t["note"].as_str().unwrap().contains("AlterConfigs"), "{t}")
            }
            other => panic!("configs {other:?}: {t}"),
        }
        assert!(t["existing_partitions"].is_null(), "{t}");
    }
    // A wanted partition count that differs from the topic's is reported, not applied.
    let mut differing = create.to_vec();
    differing[10] = "4";
    let third = admin(None, &differing).await.json();
    assert_eq!(third["topics"][0]["existing_partitions"], 3);
    assert_eq!(third["topics"][0]["partitions"], 3);

    let described = admin(
        None,
        &["--json", "topics", "describe", &events, &reminders, &dlq],
    )
    .await
    .json();
    let described = described["topics"].as_array().expect("topics");
    assert_eq!(described.len(), 3);
    for (d, partitions) in described.iter().zip([3, 2, 1]) {
        let ps = d["partitions"].as_array().expect("partitions");
        assert_eq!(ps.len(), partitions, "{d}");
        for (i, p) in ps.iter().enumerate() {
            assert_eq!(p["partition"], i);
            assert_eq!(p["low"], 0);
            assert_eq!(p["high"], 0);
            assert!(p["leader"].as_i64().unwrap() >= 0, "{p}");
        }
        // DescribeConfigs works on tansu 0.6 and Redpanda: the configs set on creation.
        assert!(d["configs_error"].is_null(), "{d}");
        let retention = if partitions == 2 { "2592000000" } else { "-1" };
        assert_eq!(d["configs"]["retention.ms"], retention, "{d}");
        assert_eq!(d["configs"]["cleanup.policy"], "delete", "{d}");
        assert_eq!(d["configs"]["retention.bytes"], "-1", "{d}");
    }

    // For people: one header line per topic and a partition table.
    let human = admin(None, &["topics", "describe", &events]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human
            .stdout
            .starts_with(&format!("{events}  (3 partitions)")),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("PARTITION  LEADER"),
        "{}",
        human.stdout
    );

    let missing = admin(None, &["topics", "describe", &unique("admin-missing")]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("does not exist"),
        "{}",
        missing.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_the_high_watermark_minus_the_committed_offset() {
    let topic = unique("admin-lag");
    create_topic(&brokers(), &topic, 2).await;
    let producer = producer();
    for (partition, n) in [(0, 5), (1, 3)] {
        for i in 0..n {
            producer
                .send(
                    FutureRecord::<str, str>::to(&topic)
                        .partition(partition)
                        .key("k")
                        .payload(&format!("m{i}")),
                    Timeout::After(Duration::from_secs(5)),
                )
                .await
                .expect("produce");
        }
    }
    // A group that committed 2 on partition 0 and everything on partition 1, without ever
    // joining (as an admin tool or a manual consumer commits).
    let group = unique("admin-lag-group");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(2))
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(3))
        .unwrap();
    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
    drop(consumer);

    let idle = unique("admin-lag-idle");
    let report = admin(
        None,
        &[
            "--json", "lag", "--group", &group, "--group", &idle, "--topic", &topic,
        ],
    )
    .await
    .json();
    let groups = report["groups"].as_array().expect("groups");
    let rows = |g: &Value| -> Vec<(i64, Option<i64>, i64, i64)> {
        g["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["partition"].as_i64().unwrap(),
                    p["committed"].as_i64(),
                    p["high"].as_i64().unwrap(),
                    p["lag"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(groups[0]["group"], group.as_str());
    assert_eq!(
        rows(&groups[0]),
        vec![(0, Some(2), 5, 3), (1, Some(3), 3, 0)]
    );
    assert_eq!(groups[0]["total"], 3);
    // Nothing committed: everything retained is lag.
    assert_eq!(groups[1]["group"], idle.as_str());
    assert_eq!(rows(&groups[1]), vec![(0, None, 5, 5), (1, None, 3, 3)]);

    // An unknown group without --topic: the topics it committed on are found.
    let found = admin(None, &["--json", "lag", "--group", &group])
        .await
        .json();
    assert_eq!(
        rows(&found["groups"][0]),
        vec![(0, Some(2), 5, 3), (1, Some(3), 3, 0)]
    );

    let human = admin(None, &["lag", "--group", &group, "--topic", &topic]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains(&format!("{group}: total lag 3")),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_replayed_once() {
    let database = db::fresh().await;
    // The tool connects as the services do: the grants must allow it.
    let url = Some(database.service_url.as_str());
    let source = unique("admin-source");
    let group = unique("admin-dlq");
    let dlq = format!("taskflow.dlq.{group}");
    create_topic(&brokers(), &source, 1).await;
    create_topic(&brokers(), &dlq, 1).await;

    let producer = producer();
    let original = vec![
        ("event_type".to_owned(), Some(b"TaskCreated".to_vec())),
        ("traceparent".to_owned(), Some(b"00-abc-def-01".to_vec())),
    ];
    for (i, kind) in [FailureKind::Handler, FailureKind::Decode]
        .into_iter()
        .enumerate()
    {
        let all = dlq_headers(
            &original,
            &Failure {
                kind,
                reason: format!("refused {i}"),
            },
            Source {
                topic: &source,
                partition: 0,
                offset: 10 + i as i64,
                attempts: 3,
            },
        );
        let key = format!("task-{i}");
        let value = [0u8, 0, 0, 0, 7, i as u8];
        producer
            .send(
                FutureRecord::to(&dlq)
                    .key(key.as_bytes())
                    .payload(&value[..])
                    .headers(headers(&all)),
                Timeout::After(Duration::from_secs(5)),
            )
            .await
            .expect("produce dead letter");
    }

    let listed = admin(url, &["--json", "dlq", "list", &group]).await.json();
    assert_eq!(listed["topic"], dlq.as_str());
    let letters = listed["dead_letters"].as_array().expect("dead letters");
    assert_eq!(letters.len(), 2);
    assert_eq!(letters[0]["offset"], 0);
    assert_eq!(letters[0]["error"], "refused 0");
    assert_eq!(letters[0]["error_kind"], "handler");
    assert_eq!(letters[1]["error_kind"], "decode");
    assert_eq!(letters[0]["source_topic"], source.as_str());
    assert_eq!(letters[1]["source_offset"], 11);
    assert_eq!(letters[0]["attempts"], 3);
    assert_eq!(letters[0]["schema_id"], 7);
    assert_eq!(letters[0]["replay_state"], "known");
    assert!(letters[0]["replayed_at"].is_null());
    assert_eq!(letters[0]["headers"].as_array().unwrap().len(), 2);
    let limited = admin(url, &["--json", "dlq", "list", &group, "--limit", "1"])
        .await
        .json();
    assert_eq!(limited["dead_letters"].as_array().unwrap().len(), 1);

    let shown = admin(url, &["--json", "dlq", "show", &group, "1"])
        .await
        .json();
    assert_eq!(shown["key"], "task-1");
    assert_eq!(shown["error"], "refused 1");
    let human = admin(url, &["dlq", "show", &group, "0:0"]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(
        human.stdout.contains("header traceparent  00-abc-def-01"),
        "{}",
        human.stdout
    );
    let missing = admin(url, &["dlq", "show", &group, "5"]).await;
    assert_eq!(missing.code, 2);
    assert!(
        missing.stderr.contains("no dead letter"),
        "{}",
        missing.stderr
    );

    // Replay one, then the same again: it is sent once.
    let replay = |args: Vec<String>| {
        let mut full = vec![
            "--json".to_owned(),
            "dlq".to_owned(),
            "replay".to_owned(),
            group.clone(),
        ];
        full.extend(args);
        async move {
            let refs: Vec<&str> = full.iter().map(String::as_str).collect();
            admin(url, &refs).await.json()
        }
    };
    let once = replay(vec!["--offset".into(), "0".into()]).await;
    assert_eq!(
        (once["replayed"].as_i64(), once["already_replayed"].as_i64()),
        (Some(1), Some(0)),
        "{once}"
    );
    assert_eq!(once["records"][0]["target_topic"], source.as_str());
    let again = replay(vec!["--offset".into(), "0".into()]).await;
    assert_eq!(
        (
            again["replayed"].as_i64(),
            again["already_replayed"].as_i64()
        ),
        (Some(0), Some(1)),
        "{again}"
    );
    let all = replay(vec!["--all".into()]).await;
    assert_eq!(
        (all["replayed"].as_i64(), all["already_replayed"].as_i64()),
        (Some(1), Some(1)),
        "{all}"
    );
    let all_again = replay(vec!["--all".into()]).await;
    assert_eq!(
        (
            all_again["replayed"].as_i64(),
            all_again["already_replayed"].as_i64(),
            all_again["failed"].as_i64()
        ),
        (Some(0), Some(2), Some(0)),
        "{all_again}"
    );

    // The source topic got each dead letter once: original key, value and headers, no
    // failure headers.
    let collector = Collector::new(&brokers(), &source);
    let got = collector.collect(2, Duration::from_secs(60)).await;
    assert_eq!(got.len(), 2, "{got:?}");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.key.as_deref(), Some(format!("task-{i}").as_bytes()));
        assert_eq!(m.payload, vec![0u8, 0, 0, 0, 7, i as u8]);
        let mut keys: Vec<&str> = m.headers.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, vec!["event_type", "traceparent"]);
        assert_eq!(m.headers["traceparent"], "00-abc-def-01");
    }
    let extra = collector.drain_extra(Duration::from_secs(3)).await;
    assert!(extra.is_empty(), "replayed more than once: {extra:?}");

    let listed = admin(url, &["--json", "dlq", "list", &group]).await.json();
    for d in listed["dead_letters"].as_array().unwrap() {
        assert!(d["replayed_at"].is_string(), "{d}");
    }
    // Without a database, list still works and says the replay state is unknown.
    let no_db = admin(None, &["--json", "dlq", "list", &group]).await.json();
    let state = no_db["dead_letters"][0]["replay_state"].as_str().unwrap();
    assert!(state.starts_with("database unavailable"), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_outbox_row_is_listed_and_retried() {
    let database = db::fresh().await;
    let url = Some(database.service_url.as_str());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO outbox (event_id, topic, partition_key, event_type, payload, attempts,
                             last_error, parked_at)
         VALUES ($1, 'taskflow.task-events', 'task-9', 'TaskCreated', '{}', 5,
                 'registry refused the schema (409)', now())
         RETURNING id",
    )
    .bind(uuid::Uuid::now_v7())
    .fetch_one(&database.pool)
    .await
    .expect("insert a parked row");

    let listed = admin(url, &["--json", "outbox", "list"]).await.json();
    let rows = listed["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id);
    assert_eq!(rows[0]["last_error"], "registry refused the schema (409)");
    let human = admin(url, &["outbox", "list"]).await;
    assert_eq!(human.code, 0, "{}", human.stderr);
    assert!(human.stdout.starts_with("ID "), "{}", human.stdout);
    assert!(human.stdout.contains("task-9"), "{}", human.stdout);

    let retried = admin(url, &["--json", "outbox", "retry", &id.to_string()])
        .await
        .json();
    assert_eq!(retried["unparked"], 1);
    let (parked, attempts): (Option<chrono::DateTime<chrono::Utc>>, i32) =
        sqlx::query_as("SELECT parked_at, attempts FROM outbox WHERE id = $1")
            .bind(id)
            .fetch_one(&database.pool)
            .await
            .expect("row");
    assert_eq!((parked, attempts), (None, 0));
    let listed = admin(url, &["--json", "outbox", "list"]).await.json();
    assert_eq!(listed["rows"].as_array().unwrap().len(), 0);
    let none_left = admin(url, &["--json", "outbox", "retry", "--all"])
        .await
        .json();
    assert_eq!(none_left["unparked"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_are_registered_and_files_checked_against_the_registry() {
    let events = unique("admin-schema-events");
    let reminders = unique("admin-schema-reminders");
    let registered = admin(
        None,
        &[
            "--json",
            "schemas",
            "register",
            "--task-events-topic",
            &events,
            "--reminders-topic",
            &reminders,
        ],
    )
    .await
    .json();
    assert_eq!(registered["global_compatibility"], "BACKWARD_TRANSITIVE");
    let subjects: Vec<&str> = registered["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subject"].as_str().unwrap())
        .collect();
    let mut expected: Vec<String> = EventType::TASK_LIFECYCLE
        .iter()
        .map(|t| Codec::subject(&events, *t))
        .collect();
    expected.push(Codec::subject(&reminders, EventType::ReminderDue));
    assert_eq!(subjects, expected);
    for s in registered["subjects"].as_array().unwrap() {
        assert!(s["id"].as_u64().unwrap() >= 1, "{s}");
        assert_eq!(s["version"], 1, "{s}");
    }
    // Idempotent: the same ids, no new versions.
    let again = admin(
        None,
        &[
            "--json",
            "schemas",
            "register",
            "--task-events-topic",
            &events,
            "--reminders-topic",
            &reminders,
        ],
    )
    .await
    .json();
    assert_eq!(again["subjects"], registered["subjects"]);
    let http = reqwest::Client::new();
    let registry = registry_url().await;
    let config: Value = http
        .get(format!("{registry}/config"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(config["compatibilityLevel"], "BACKWARD_TRANSITIVE");

    let dir = tempfile::tempdir().unwrap();
    let subject = Codec::subject(&events, EventType::TaskCreated);
    // The file as kept in the repository, with references to the shared records.
    let same = dir.path().join("TaskCreated.avsc");
    std::fs::write(&same, schema::source(EventType::TaskCreated)).unwrap();
    let ok = admin(
        None,
        &[
            "--json",
            "schemas",
            "check",
            same.to_str().unwrap(),
            "--subject",
            &subject,
        ],
    )
    .await;
    let verdict = ok.json();
    assert_eq!(verdict["compatible"], true, "{verdict}");

    // A new field without a default cannot read the old records.
    let mut broken: Value =
        serde_json::from_str(schema::registered_json(EventType::TaskCreated).unwrap()).unwrap();
    broken["fields"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "required_without_default", "type": "string"}));
    let bad = dir.path().join("broken.avsc");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let refused = admin(
        None,
        &[
            "--json",
            "schemas",
            "check",
            bad.to_str().unwrap(),
            "--subject",
            &subject,
        ],
    )
    .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    let verdict: Value = serde_json::from_str(&refused.stdout).unwrap();
    assert_eq!(verdict["compatible"], false);
    assert!(
        !verdict["messages"].as_array().unwrap().is_empty(),
        "{verdict}"
    );
    let human = admin(
        None,
        &[
            "schemas",
            "check",
            bad.to_str().unwrap(),
            "--subject",
            &subject,
        ],
    )
    .await;
    assert_eq!(human.code, 1);
    assert!(human.stdout.contains("INCOMPATIBLE"), "{}", human.stdout);

    // A subject that does not exist is an error, never "compatible".
    let typo = admin(
        None,
        &[
            "schemas",
            "check",
            same.to_str().unwrap(),
            "--subject",
            "no-such-subject",
        ],
    )
    .await;
    assert_eq!(typo.code, 2, "{}", typo.stdout);
    assert!(typo.stderr.contains("not registered"), "{}", typo.stderr);
}
