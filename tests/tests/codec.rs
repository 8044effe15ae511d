//! The codec against a Schema Registry: the in-process stand-in, or the one at
//! `TASKFLOW_TEST_SCHEMA_REGISTRY_URL` (e.g. docker-compose Redpanda). Every
//! test uses its own topic/subject names, so they also run against a shared
//! real registry.

use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::{types::Value, Schema};
use serde_json::{json, Value as Json};
use taskflow_schemas::{examples, schema, Codec, CodecError, Event, EventType, MAGIC_BYTE};
use taskflow_tests::registry::registry_url;
use taskflow_tests::unique;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

async fn post_schema(url: &str, subject: &str, schema: &str) -> (u16, Json) {
    let response = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", CONTENT_TYPE)
        .body(json!({"schema": schema}).to_string())
        .send()
        .await
        .expect("registry reachable");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

async fn put_compatibility(url: &str, subject: &str, level: &str) {
    let response = reqwest::Client::new()
        .put(format!("{url}/config/{subject}"))
        .header("content-type", CONTENT_TYPE)
        .body(json!({"compatibility": level}).to_string())
        .send()
        .await
        .expect("registry reachable");
    assert!(response.status().is_success(), "{}", response.status());
}

fn frame(id: u32, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![MAGIC_BYTE];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(body);
    bytes
}

fn schema_id(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]])
}

#[tokio::test]
async fn every_event_type_round_trips() {
    let url = registry_url().await;
    let codec = Codec::new(&url);
    let topic = unique("codec-roundtrip");
    for event in examples::all() {
        let bytes = codec.encode(&topic, &event).await.expect("encodes");
        assert_eq!(bytes[0], MAGIC_BYTE);
        assert_eq!(codec.decode(&bytes).await.expect("decodes"), event);
        // A second codec (another process) decodes by fetching the schema by id.
        let fresh = Codec::new(&url);
        assert_eq!(fresh.decode(&bytes).await.expect("decodes"), event);
        // The same schema keeps its id.
        let again = codec.encode(&topic, &event).await.expect("encodes");
        assert_eq!(schema_id(&again), schema_id(&bytes));
    }
    // Subjects follow TopicRecordNameStrategy and are BACKWARD_TRANSITIVE.
    let subject = Codec::subject(&topic, EventType::TaskCreated);
    assert_eq!(subject, format!("{topic}-com.taskflow.events.TaskCreated"));
    let config: Json = reqwest::get(format!("{url}/config/{subject}"))
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    assert_eq!(config["compatibilityLevel"], "BACKWARD_TRANSITIVE");
}

/// `value` with the field `name` removed from every record, recursively.
fn without_field(value: Value, name: &str) -> Value {
    match value {
        Value::Record(fields) => Value::Record(
            fields
                .into_iter()
                .filter(|(n, _)| n != name)
                .map(|(n, v)| (n, without_field(v, name)))
                .collect(),
        ),
        Value::Union(i, v) => Value::Union(i, Box::new(without_field(*v, name))),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| without_field(v, name)).collect())
        }
        other => other,
    }
}

#[tokio::test]
async fn data_from_an_older_writer_decodes() {
    let url = registry_url().await;
    let topic = unique("codec-old-writer");
    let subject = Codec::subject(&topic, EventType::TaskCreated);
    // "v1" of the subject: EventMetadata had no causation_id yet.
    let mut old: Json =
        serde_json::from_str(schema::registered_json(EventType::TaskCreated).unwrap()).unwrap();
    let metadata_fields = old["fields"][0]["type"]["fields"].as_array_mut().unwrap();
    metadata_fields.retain(|f| f["name"] != "causation_id");
    let old_text = old.to_string();
    let (status, body) = post_schema(&url, &subject, &old_text).await;
    assert_eq!(status, 200, "{body}");
    let old_id = body["id"].as_u64().unwrap() as u32;

    // The codec registers the current schema as v2 (compatible: the new field has a default).
    let codec = Codec::new(&url);
    let Event::TaskCreated(mut created) = examples::example(EventType::TaskCreated) else {
        unreachable!()
    };
    let current_bytes = codec
        .encode(&topic, &Event::TaskCreated(created.clone()))
        .await
        .expect("encodes");
    assert_ne!(schema_id(&current_bytes), old_id);

    // Bytes an old producer wrote.
    let old_schema = Schema::parse_str(&old_text).unwrap();
    let value = without_field(apache_avro::to_value(&created).unwrap(), "causation_id");
    let value = value.resolve(&old_schema).expect("value fits v1");
    let body = GenericDatumWriter::builder(&old_schema)
        .build()
        .unwrap()
        .write_value_to_vec(value)
        .unwrap();
    let decoded = codec
        .decode(&frame(old_id, &body))
        .await
        .expect("old data decodes");
    created.metadata.causation_id = None; // the reader's default
    assert_eq!(decoded, Event::TaskCreated(created));
}

#[tokio::test]
async fn incompatible_schema_is_rejected_with_409() {
    let url = registry_url().await;
    let topic = unique("codec-incompatible");
    let codec = Codec::new(&url);
    codec
        .encode(&topic, &examples::example(EventType::TaskReopened))
        .await
        .expect("encodes");
    let mut next: Json =
        serde_json::from_str(schema::registered_json(EventType::TaskReopened).unwrap()).unwrap();
    next["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "assignee", "type": "string"}));
    let subject = Codec::subject(&topic, EventType::TaskReopened);
    let (status, body) = post_schema(&url, &subject, &next.to_string()).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error_code"], 409);
}

#[tokio::test]
async fn backward_transitive_checks_every_version_backward_only_the_latest() {
    let url = registry_url().await;
    let record = |fields: Json| {
        json!({"type": "record", "name": "R", "namespace": "t", "fields": fields}).to_string()
    };
    let v1 = record(json!([{"name": "a", "type": "string"}]));
    let v2 = record(json!([]));
    // Reads v2 (default) but not v1 (string vs int).
    let v3 = record(json!([{"name": "a", "type": "int", "default": 0}]));
    for (level, expected) in [("BACKWARD_TRANSITIVE", 409), ("BACKWARD", 200)] {
        let subject = unique("compat-levels");
        put_compatibility(&url, &subject, level).await;
        assert_eq!(post_schema(&url, &subject, &v1).await.0, 200);
        assert_eq!(post_schema(&url, &subject, &v2).await.0, 200);
        assert_eq!(
            post_schema(&url, &subject, &v3).await.0,
            expected,
            "{level}"
        );
    }
}

#[tokio::test]
async fn unknown_schema_id_is_retried_for_a_window_not_forever() {
    let codec = Codec::new(&registry_url().await);
    let err = codec
        .decode(&frame(0x7fff_fff0, b"\x02"))
        .await
        .expect_err("unknown id");
    assert!(
        matches!(err, CodecError::UnknownSchemaId(0x7fff_fff0)),
        "{err}"
    );
    // Not transient (retried forever) and not permanent at once: consumers retry it for
    // TASKFLOW_UNKNOWN_SCHEMA_RETRY_SECS, then dead-letter it.
    assert!(!err.is_transient());
    assert_eq!(
        err.class(),
        taskflow_schemas::CodecErrorClass::UnknownSchema
    );
}

#[tokio::test]
async fn foreign_record_on_our_topic_is_permanent() {
    let url = registry_url().await;
    let subject = unique("foreign");
    let other = json!({"type": "record", "name": "Other", "namespace": "x", "fields": [{"name": "n", "type": "long"}]});
    let (status, body) = post_schema(&url, &subject, &other.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let id = body["id"].as_u64().unwrap() as u32;
    let err = Codec::new(&url)
        .decode(&frame(id, b"\x02"))
        .await
        .expect_err("not ours");
    assert!(
        matches!(err, CodecError::UnknownRecordName(ref n) if n == "x.Other"),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn registry_down_is_transient() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let codec = Codec::new(&format!("http://127.0.0.1:{port}"));
    let err = codec.decode(&frame(1, b"\x02")).await.expect_err("down");
    assert!(err.is_transient(), "{err}");
    let err = codec
        .encode(
            &unique("codec-down"),
            &examples::example(EventType::TaskCreated),
        )
        .await
        .expect_err("down");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn register_all_classes_refused_credentials_as_transient_then_registers_every_subject() {
    use taskflow_infra::backoff::Backoff;
    use taskflow_infra::registration::{SchemaRegistration, Subjects};
    use taskflow_schemas::CodecErrorClass;
    use taskflow_tests::registry::{Fault, RegistryStandIn};

    let registry = RegistryStandIn::start().await;
    let topic = unique("register-all");
    registry.set_fault(Some(Fault::Status(401)));
    let codec = Codec::new(registry.url());
    let err = codec
        .register_all(&topic, &EventType::TASK_LIFECYCLE)
        .await
        .expect_err("credentials refused");
    assert!(
        matches!(err, CodecError::RegistryUnauthorized { status: 401, .. }),
        "{err}"
    );
    assert_eq!(err.class(), CodecErrorClass::Transient);

    // The start-up registration keeps retrying and reports not ready meanwhile.
    let metrics = prometheus::Registry::new();
    let registration = SchemaRegistration::spawn(
        codec.clone(),
        vec![Subjects::new(topic.as_str(), &EventType::TASK_LIFECYCLE)],
        Backoff::new(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_millis(100),
        ),
        &metrics,
        tokio_util::sync::CancellationToken::new(),
    )
    .expect("metrics");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while registry.faulted_requests() < 3 {
        assert!(std::time::Instant::now() < deadline, "no retries");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let reason = registration.check().expect_err("not ready");
    assert!(reason.contains("401"), "{reason}");

    // The credential is fixed: every subject of the topic gets registered, then ready.
    registry.set_fault(None);
    while !registration.is_registered() {
        assert!(std::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(registration.check().is_ok());
    let subjects: Vec<String> = reqwest::get(format!("{}/subjects", registry.url()))
        .await
        .expect("registry reachable")
        .json()
        .await
        .expect("json");
    let mut want: Vec<String> = EventType::TASK_LIFECYCLE
        .iter()
        .map(|t| Codec::subject(&topic, *t))
        .collect();
    want.sort();
    let mut got: Vec<String> = subjects
        .into_iter()
        .filter(|s| s.starts_with(&topic))
        .collect();
    got.sort();
    assert_eq!(got, want);
}
