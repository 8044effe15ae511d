//! Schema evolution guard: every current schema must read data written with
//! every earlier version kept in `schemas/avro/history/<Record>/v<N>.avsc`
//! (BACKWARD_TRANSITIVE, what the registry subjects are set to).
//!
//! When you change a schema: add the new version as the next `v<N>.avsc`
//! (the self-contained form, `schema::registered_json`), never edit old ones.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use serde_json::{json, Value as Json};
use std::path::PathBuf;
use taskflow_schemas::{schema, EventType};

fn history_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("avro/history")
}

/// Versions kept for a record, in order: (N, schema).
fn history(event_type: EventType) -> Vec<(u32, Schema)> {
    let dir = history_dir().join(event_type.as_str());
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .map(|path| {
            let stem = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default();
            let n = stem
                .strip_prefix('v')
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected file {}", path.display()));
            assert_eq!(path.extension().and_then(|e| e.to_str()), Some("avsc"));
            (n, path)
        })
        .collect();
    versions.sort();
    let numbers: Vec<u32> = versions.iter().map(|(n, _)| *n).collect();
    let expected: Vec<u32> = (1..=versions.len() as u32).collect();
    assert_eq!(
        numbers, expected,
        "{event_type}: versions must be v1..vN without gaps"
    );
    versions
        .into_iter()
        .map(|(n, path)| {
            let text = std::fs::read_to_string(&path).expect("readable");
            let parsed = Schema::parse_str(&text)
                .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
            (n, parsed)
        })
        .collect()
}

#[test]
fn current_schemas_read_every_earlier_version() {
    for event_type in EventType::ALL {
        let current = schema::current(event_type).expect("current schema");
        let versions = history(event_type);
        assert!(!versions.is_empty(), "{event_type}: no history kept");
        for (n, old) in &versions {
            if let Err(e) = SchemaCompatibility::can_read(old, current) {
                panic!("{event_type}: current schema cannot read v{n}: {e}");
            }
        }
    }
}

#[test]
fn latest_history_version_is_the_current_schema() {
    // Otherwise a schema change could skip the history and the check above.
    for event_type in EventType::ALL {
        let current = schema::current(event_type).expect("current schema");
        let versions = history(event_type);
        let (n, latest) = versions.last().expect("at least v1");
        assert_eq!(
            latest.canonical_form(),
            current.canonical_form(),
            "{event_type}: schemas/avro changed but history/{event_type}/v{} was not added",
            n + 1
        );
    }
}

#[test]
fn history_has_no_stray_records() {
    for entry in std::fs::read_dir(history_dir()).expect("history dir") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            EventType::parse(&name).is_some(),
            "history/{name} is not an event type"
        );
    }
}

/// The current TaskCreated schema with one more field added to the record.
fn task_created_with_field(field: Json) -> Schema {
    let mut json: Json =
        serde_json::from_str(schema::registered_json(EventType::TaskCreated).expect("json"))
            .expect("valid json");
    json["fields"].as_array_mut().expect("fields").push(field);
    Schema::parse_str(&json.to_string()).expect("still a valid schema")
}

#[test]
fn checker_rejects_known_incompatible_changes() {
    let v1 = &history(EventType::TaskCreated)[0].1;
    // A new required field: old data has no value for it.
    let required = task_created_with_field(json!({"name": "assignee", "type": "string"}));
    assert!(SchemaCompatibility::can_read(v1, &required).is_err());

    // A changed field type (string -> long) inside the shared metadata.
    let mut json: Json =
        serde_json::from_str(schema::registered_json(EventType::TaskCreated).expect("json"))
            .expect("valid json");
    json["fields"][0]["type"]["fields"][5]["type"] = json!("long");
    assert_eq!(
        json["fields"][0]["type"]["fields"][5]["name"],
        "correlation_id"
    );
    let retyped = Schema::parse_str(&json.to_string()).expect("valid schema");
    assert!(SchemaCompatibility::can_read(v1, &retyped).is_err());
}

#[test]
fn checker_accepts_a_new_optional_field() {
    // Positive control: the evolution we expect to make most often.
    let v1 = &history(EventType::TaskCreated)[0].1;
    let optional = task_created_with_field(
        json!({"name": "assignee", "type": ["null", "string"], "default": null}),
    );
    assert!(SchemaCompatibility::can_read(v1, &optional).is_ok());
}
