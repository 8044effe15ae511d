//! The `.avsc` files, compiled in and expanded into self-contained schemas.
//!
//! The event files reference the shared records (`EventMetadata`,
//! `TaskSnapshot`) by full name so each shared type is written once. A
//! registry subject, however, must hold a schema without references (we do
//! not use Schema Registry references: Redpanda Console and older clients
//! handle them poorly), so the first reference to each shared type is replaced
//! by its JSON definition; later references stay as names, which Avro allows
//! once the type is defined. This happens once per process ([`catalog`]).

use crate::events::EventType;
use apache_avro::Schema;
use serde_json::Value as Json;
use std::sync::LazyLock;

/// Avro namespace of every Taskflow record.
pub const NAMESPACE: &str = "com.taskflow.events";

/// Shared named types: (full name, file contents).
const SHARED: [(&str, &str); 2] = [
    (
        "com.taskflow.events.EventMetadata",
        include_str!("../avro/EventMetadata.avsc"),
    ),
    (
        "com.taskflow.events.TaskSnapshot",
        include_str!("../avro/TaskSnapshot.avsc"),
    ),
];

/// The shared records' `.avsc` files, compiled in: what [`expand`] needs to make an event's
/// file self-contained (e.g. an operator checking a new schema file against the registry).
pub fn shared_sources() -> [&'static str; SHARED.len()] {
    SHARED.map(|(_, text)| text)
}

/// The `.avsc` file of an event type, as written (with references).
pub fn source(event_type: EventType) -> &'static str {
    match event_type {
        EventType::TaskCreated => include_str!("../avro/TaskCreated.avsc"),
        EventType::TaskUpdated => include_str!("../avro/TaskUpdated.avsc"),
        EventType::TaskCompleted => include_str!("../avro/TaskCompleted.avsc"),
        EventType::TaskReopened => include_str!("../avro/TaskReopened.avsc"),
        EventType::TaskDeleted => include_str!("../avro/TaskDeleted.avsc"),
        EventType::ReminderDue => include_str!("../avro/ReminderDue.avsc"),
        EventType::ReminderSnoozed => include_str!("../avro/ReminderSnoozed.avsc"),
    }
}

/// Why the compiled-in schemas could not be loaded (a build defect; tests catch it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum SchemaError {
    #[error("schema file is not valid JSON: {0}")]
    Json(String),
    #[error("shared schema has no \"name\"")]
    SharedWithoutName,
    #[error("invalid Avro schema for {name}: {reason}")]
    Avro { name: String, reason: String },
}

/// Expand references to `shared` named types (JSON texts of records) into a
/// self-contained schema: the first reference of each becomes its definition.
pub fn expand(schema: &str, shared: &[&str]) -> Result<String, SchemaError> {
    let mut root: Json =
        serde_json::from_str(schema).map_err(|e| SchemaError::Json(e.to_string()))?;
    let mut pending = Vec::with_capacity(shared.len());
    for text in shared {
        let def: Json = serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        pending.push((full_name(&def).ok_or(SchemaError::SharedWithoutName)?, def));
    }
    substitute(&mut root, &mut pending);
    Ok(root.to_string())
}

/// Full name of a named-type definition (`namespace` + `name`, or a dotted `name`).
fn full_name(def: &Json) -> Option<String> {
    let name = def.get("name")?.as_str()?;
    match def.get("namespace").and_then(Json::as_str) {
        Some(ns) if !name.contains('.') && !ns.is_empty() => Some(format!("{ns}.{name}")),
        _ => Some(name.to_owned()),
    }
}

/// Walk in Avro definition order (depth first, fields in order) and replace
/// the first type reference to each pending shared type by its definition.
fn substitute(node: &mut Json, pending: &mut Vec<(String, Json)>) {
    if pending.is_empty() {
        return;
    }
    match node {
        Json::String(name) => {
            if let Some(pos) = pending.iter().position(|(n, _)| n == name) {
                *node = pending.swap_remove(pos).1;
            }
        }
        // A union: each branch is a type.
        Json::Array(items) => items.iter_mut().for_each(|i| substitute(i, pending)),
        Json::Object(map) => {
            // Only positions that hold a type; never "name", "doc", "default", ...
            for key in ["type", "items", "values"] {
                if let Some(child) = map.get_mut(key) {
                    substitute(child, pending);
                }
            }
            if let Some(Json::Array(fields)) = map.get_mut("fields") {
                for field in fields {
                    if let Some(t) = field.get_mut("type") {
                        substitute(t, pending);
                    }
                }
            }
        }
        _ => {}
    }
}

/// A current record schema: its registered JSON and parsed form.
pub(crate) struct Record {
    pub(crate) json: String,
    pub(crate) schema: Schema,
}

/// Every current schema, expanded and parsed once per process.
pub(crate) struct Catalog {
    records: Vec<Record>,
}

impl Catalog {
    fn load() -> Result<Catalog, SchemaError> {
        let shared: Vec<&str> = SHARED.iter().map(|(_, text)| *text).collect();
        let mut records = Vec::with_capacity(EventType::ALL.len());
        for event_type in EventType::ALL {
            let json = expand(source(event_type), &shared)?;
            let schema = Schema::parse_str(&json).map_err(|e| SchemaError::Avro {
                name: event_type.full_name().to_owned(),
                reason: e.to_string(),
            })?;
            records.push(Record { json, schema });
        }
        Ok(Catalog { records })
    }

    pub(crate) fn record(&self, event_type: EventType) -> &Record {
        // `records` is built from `EventType::ALL`, which lists the variants in
        // declaration order, so the discriminant is the index.
        &self.records[event_type as usize]
    }
}

static CATALOG: LazyLock<Result<Catalog, SchemaError>> = LazyLock::new(Catalog::load);

pub(crate) fn catalog() -> Result<&'static Catalog, SchemaError> {
    CATALOG.as_ref().map_err(Clone::clone)
}

/// The self-contained schema registered for `event_type` (JSON text).
pub fn registered_json(event_type: EventType) -> Result<&'static str, SchemaError> {
    Ok(catalog()?.record(event_type).json.as_str())
}

/// The parsed current schema of `event_type`.
pub fn current(event_type: EventType) -> Result<&'static Schema, SchemaError> {
    Ok(&catalog()?.record(event_type).schema)
}

/// Full name of a record schema (`None` for non-record schemas).
pub fn record_full_name(schema: &Schema) -> Option<String> {
    match schema {
        Schema::Record(r) => Some(r.name.fullname(None)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_loads_self_contained_and_named_as_its_event_type() {
        for t in EventType::ALL {
            let json = registered_json(t).expect("catalog loads");
            // Parses alone: no unresolved references left.
            let schema = Schema::parse_str(json).expect("self-contained");
            assert_eq!(record_full_name(&schema).as_deref(), Some(t.full_name()));
            assert!(json.contains("\"doc\""), "{t} keeps its docs");
        }
    }

    #[test]
    fn only_the_first_reference_is_expanded() {
        let outer = r#"{"type":"record","name":"O","namespace":"n","fields":[
            {"name":"a","type":"n.S"},{"name":"b","type":["null","n.S"],"default":null}]}"#;
        let shared =
            r#"{"type":"record","name":"S","namespace":"n","fields":[{"name":"x","type":"long"}]}"#;
        let out: Json =
            serde_json::from_str(&expand(outer, &[shared]).expect("expands")).expect("json");
        assert_eq!(out["fields"][0]["type"]["name"], "S");
        assert_eq!(out["fields"][1]["type"][1], "n.S");
        assert!(Schema::parse_str(&out.to_string()).is_ok());
    }
}
