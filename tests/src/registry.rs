//! An in-process stand-in for the Confluent Schema Registry REST API, for
//! tests on machines without Redpanda (tansu has no registry). TEST SUPPORT
//! ONLY: state is in memory and lost with the process.
//!
//! It implements the calls `taskflow_schemas::Codec` makes (through
//! `schema_registry_converter` 6) plus the ones a test needs to set things up:
//! `POST /subjects/{s}/versions` (register), `POST /subjects/{s}` (lookup),
//! `GET /schemas/ids/{id}`, `GET /subjects`, `GET /subjects/{s}/versions`,
//! `GET /subjects/{s}/versions/{latest|n}`, `GET|PUT /config`,
//! `GET|PUT /config/{s}`, `DELETE /subjects/{s}` (as an operator removes a
//! subject that blocks a producer), `POST /compatibility/subjects/{s}/versions/{v}` (what
//! `taskflow-admin schemas check` asks). Like a real registry it enforces the subject's
//! compatibility level on registration (409, `error_code` 409), gives an
//! identical schema the same id, and answers 404 with `error_code` 40403 for
//! an unknown id. The default level is BACKWARD, as in Confluent and Redpanda.
//!
//! [`RegistryStandIn::set_fault`] switches failures on for tests of the codec's error
//! classes: every request answering a given status (401 for refused credentials, 503), or
//! lookups by schema id answering 404 (a registry node that has not seen an id yet).
//!
//! The server runs on its own thread with its own runtime: each
//! `#[tokio::test]` has a runtime that ends with the test, and the shared
//! stand-in of [`registry_url`] must outlive all of them.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{oneshot, OnceCell};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// A failure the stand-in can be switched to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request answers this HTTP status (e.g. 401, 403, 503).
    Status(u16),
    /// `GET /schemas/ids/{id}` answers 404 `error_code` 40403, as a registry node that has not
    /// replicated the id yet; everything else works.
    HideSchemaIds,
}

#[derive(Default)]
struct FaultState {
    fault: Mutex<Option<Fault>>,
    /// Requests answered with the fault instead of normally.
    faulted: AtomicU64,
}

type FaultSwitch = Arc<FaultState>;

/// A running stand-in. Dropping it stops the server.
pub struct RegistryStandIn {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    faults: FaultSwitch,
    _stop: oneshot::Sender<()>,
}

impl RegistryStandIn {
    /// Start a fresh, empty stand-in on `127.0.0.1:0`.
    pub async fn start() -> RegistryStandIn {
        let (addr_tx, addr_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let faults = FaultSwitch::default();
        let server_faults = faults.clone();
        std::thread::Builder::new()
            .name("schema-registry-stand-in".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind stand-in");
                    let _ = addr_tx.send(listener.local_addr().expect("local addr"));
                    axum::serve(listener, router(server_faults))
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .expect("stand-in server");
                });
            })
            .expect("spawn stand-in thread");
        let addr = addr_rx.await.expect("stand-in did not start");
        RegistryStandIn {
            url: format!("http://{addr}"),
            faults,
            _stop: stop_tx,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Switches a failure on (`Some`) or off (`None`).
    pub fn set_fault(&self, fault: Option<Fault>) {
        *self
            .faults
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = fault;
    }

    /// How many requests were answered with a fault so far.
    pub fn faulted_requests(&self) -> u64 {
        self.faults.faulted.load(Ordering::SeqCst)
    }
}

async fn inject_fault(State(faults): State<FaultSwitch>, request: Request, next: Next) -> Response {
    let fault = *faults.fault.lock().unwrap_or_else(PoisonError::into_inner);
    let reject = match fault {
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Some(Reject(
                status,
                u32::from(code),
                format!("injected fault: HTTP {code}"),
            ))
        }
        Some(Fault::HideSchemaIds) if request.uri().path().starts_with("/schemas/ids/") => Some(
            not_found(40403, "Schema not found (injected fault)".to_owned()),
        ),
        _ => None,
    };
    match reject {
        Some(reject) => {
            faults.faulted.fetch_add(1, Ordering::SeqCst);
            reject.into_response()
        }
        None => next.run(request).await,
    }
}

static SHARED: OnceCell<RegistryStandIn> = OnceCell::const_new();

/// `TASKFLOW_TEST_SCHEMA_REGISTRY_URL` if set, else the URL of a stand-in
/// shared by the whole test process (started on first use, never stopped).
pub async fn registry_url() -> String {
    if let Ok(url) = std::env::var("TASKFLOW_TEST_SCHEMA_REGISTRY_URL") {
        if !url.is_empty() {
            return url;
        }
    }
    SHARED.get_or_init(RegistryStandIn::start).await.url.clone()
}

struct Stored {
    text: String,
    parsed: Schema,
    canonical: String,
}

#[derive(Default)]
struct Subject {
    /// Schema ids; version N is `versions[N - 1]`.
    versions: Vec<u32>,
    compatibility: Option<String>,
}

struct RegistryState {
    /// Schema id N is `schemas[N - 1]`.
    schemas: Vec<Stored>,
    subjects: BTreeMap<String, Subject>,
    compatibility: String,
}

type Shared = Arc<Mutex<RegistryState>>;

fn router(faults: FaultSwitch) -> Router {
    let state: Shared = Arc::new(Mutex::new(RegistryState {
        schemas: Vec::new(),
        subjects: BTreeMap::new(),
        compatibility: "BACKWARD".to_owned(),
    }));
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            post(register).get(list_versions),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route("/schemas/ids/{id}", get(get_by_id))
        .route("/config", get(get_global_config).put(put_global_config))
        .route("/config/{subject}", get(get_config).put(put_config))
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(test_compatibility),
        )
        .with_state(state)
        .layer(middleware::from_fn_with_state(faults, inject_fault))
}

fn ok(body: Json) -> Answer {
    let headers = [(header::CONTENT_TYPE, CONTENT_TYPE)];
    Ok((StatusCode::OK, headers, body.to_string()).into_response())
}

/// An error answer: HTTP status, Confluent `error_code`, message.
struct Reject(StatusCode, u32, String);

type Answer = Result<Response, Reject>;

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        let body = json!({"error_code": self.1, "message": self.2}).to_string();
        (self.0, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
    }
}

fn unprocessable(code: u32, message: impl Into<String>) -> Reject {
    Reject(StatusCode::UNPROCESSABLE_ENTITY, code, message.into())
}

fn not_found(code: u32, message: String) -> Reject {
    Reject(StatusCode::NOT_FOUND, code, message)
}

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, RegistryState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Parse a `{"schema": "...", "schemaType": ...}` request body.
fn parse_request(body: &[u8]) -> Result<(String, Schema), Reject> {
    let json: Json =
        serde_json::from_slice(body).map_err(|e| unprocessable(42201, e.to_string()))?;
    let schema_type = json.get("schemaType").and_then(Json::as_str);
    if schema_type.is_some_and(|t| t != "AVRO") {
        return Err(unprocessable(42201, "only AVRO schemas are supported"));
    }
    if json["references"].as_array().is_some_and(|r| !r.is_empty()) {
        return Err(unprocessable(42201, "references are not supported"));
    }
    let text = json["schema"]
        .as_str()
        .ok_or_else(|| unprocessable(42201, "missing \"schema\""))?;
    let parsed = Schema::parse_str(text)
        .map_err(|e| unprocessable(42201, format!("invalid schema: {e}")))?;
    Ok((text.to_owned(), parsed))
}

/// (backward, forward, transitive) of a compatibility level; `None` if unknown.
fn level_rules(level: &str) -> Option<(bool, bool, bool)> {
    Some(match level {
        "NONE" => (false, false, false),
        "BACKWARD" => (true, false, false),
        "BACKWARD_TRANSITIVE" => (true, false, true),
        "FORWARD" => (false, true, false),
        "FORWARD_TRANSITIVE" => (false, true, true),
        "FULL" => (true, true, false),
        "FULL_TRANSITIVE" => (true, true, true),
        _ => return None,
    })
}

/// Check `new` against the subject's versions at `level`; Err names the reason.
fn check_compatibility(level: &str, existing: &[&Schema], new: &Schema) -> Result<(), String> {
    let (backward, forward, transitive) = level_rules(level).unwrap_or_default();
    // Non-transitive levels compare with the latest version only.
    let skip = if transitive {
        0
    } else {
        existing.len().saturating_sub(1)
    };
    for (i, old) in existing.iter().enumerate().skip(skip) {
        let version = i + 1;
        if backward {
            SchemaCompatibility::can_read(old, new)
                .map_err(|e| format!("{level}: new schema cannot read version {version}: {e}"))?;
        }
        if forward {
            SchemaCompatibility::can_read(new, old)
                .map_err(|e| format!("{level}: version {version} cannot read new schema: {e}"))?;
        }
    }
    Ok(())
}

async fn register(State(state): State<Shared>, Path(subject): Path<String>, body: Bytes) -> Answer {
    let (text, parsed) = parse_request(&body)?;
    let canonical = parsed.canonical_form();
    let mut guard = lock(&state);
    let reg = &mut *guard;
    let entry = reg.subjects.entry(subject).or_default();
    // An identical schema already under this subject: same id, no new version.
    let stored = |id: &u32| &reg.schemas[*id as usize - 1];
    if let Some(id) = entry
        .versions
        .iter()
        .find(|id| stored(id).canonical == canonical)
    {
        return ok(json!({"id": id}));
    }
    let level = entry.compatibility.as_deref().unwrap_or(&reg.compatibility);
    let existing: Vec<&Schema> = entry.versions.iter().map(|id| &stored(id).parsed).collect();
    check_compatibility(level, &existing, &parsed).map_err(|reason| {
        let message =
            format!("Schema being registered is incompatible with an earlier schema: {reason}");
        Reject(StatusCode::CONFLICT, 409, message)
    })?;
    // The same schema under another subject keeps its global id.
    let id = match reg.schemas.iter().position(|s| s.canonical == canonical) {
        Some(i) => i as u32 + 1,
        None => {
            reg.schemas.push(Stored {
                text,
                parsed,
                canonical,
            });
            reg.schemas.len() as u32
        }
    };
    entry.versions.push(id);
    ok(json!({"id": id}))
}

fn subject<'r>(reg: &'r RegistryState, name: &str) -> Result<&'r Subject, Reject> {
    reg.subjects
        .get(name)
        .filter(|s| !s.versions.is_empty())
        .ok_or_else(|| not_found(40401, format!("Subject '{name}' not found.")))
}

fn version_body(reg: &RegistryState, subject: &str, version: usize, id: u32) -> Answer {
    let schema = &reg.schemas[id as usize - 1].text;
    ok(json!({"subject": subject, "version": version, "id": id, "schema": schema}))
}

async fn lookup(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> Answer {
    let (_, parsed) = parse_request(&body)?;
    let canonical = parsed.canonical_form();
    let reg = lock(&state);
    let versions = subject(&reg, &name)?.versions.iter();
    match versions
        .enumerate()
        .find(|(_, id)| reg.schemas[**id as usize - 1].canonical == canonical)
    {
        Some((i, id)) => version_body(&reg, &name, i + 1, *id),
        None => Err(not_found(40403, "Schema not found".into())),
    }
}

async fn get_by_id(State(state): State<Shared>, Path(id): Path<u32>) -> Answer {
    let reg = lock(&state);
    match (id as usize)
        .checked_sub(1)
        .and_then(|i| reg.schemas.get(i))
    {
        Some(stored) => ok(json!({"schema": stored.text})),
        None => Err(not_found(40403, format!("Schema {id} not found"))),
    }
}

async fn list_subjects(State(state): State<Shared>) -> Answer {
    let reg = lock(&state);
    let subjects = reg.subjects.iter().filter(|(_, s)| !s.versions.is_empty());
    ok(json!(subjects.map(|(name, _)| name).collect::<Vec<_>>()))
}

async fn list_versions(State(state): State<Shared>, Path(name): Path<String>) -> Answer {
    let reg = lock(&state);
    let count = subject(&reg, &name)?.versions.len();
    ok(json!((1..=count).collect::<Vec<_>>()))
}

async fn get_version(
    State(state): State<Shared>,
    Path((name, version)): Path<(String, String)>,
) -> Answer {
    let reg = lock(&state);
    let versions = &subject(&reg, &name)?.versions;
    let n = match version.as_str() {
        "latest" | "-1" => versions.len(),
        v => v.parse().unwrap_or(0),
    };
    match n.checked_sub(1).and_then(|i| versions.get(i)) {
        Some(id) => version_body(&reg, &name, n, *id),
        None => Err(not_found(40402, format!("Version {version} not found."))),
    }
}

fn parse_level(body: &[u8]) -> Result<String, Reject> {
    let json: Json = serde_json::from_slice(body).unwrap_or_default();
    match json["compatibility"].as_str() {
        Some(level) if level_rules(level).is_some() => Ok(level.to_owned()),
        _ => Err(unprocessable(42203, "Invalid compatibility level")),
    }
}

async fn get_global_config(State(state): State<Shared>) -> Answer {
    ok(json!({"compatibilityLevel": lock(&state).compatibility}))
}

async fn put_global_config(State(state): State<Shared>, body: Bytes) -> Answer {
    let level = parse_level(&body)?;
    lock(&state).compatibility = level.clone();
    ok(json!({"compatibility": level}))
}

/// Falls back to the global level (as Confluent's `defaultToGlobal=true`).
async fn get_config(State(state): State<Shared>, Path(name): Path<String>) -> Answer {
    let reg = lock(&state);
    let own = reg
        .subjects
        .get(&name)
        .and_then(|s| s.compatibility.as_ref());
    ok(json!({"compatibilityLevel": own.unwrap_or(&reg.compatibility)}))
}

/// Like Confluent, a level may be set before the subject's first version.
async fn put_config(State(state): State<Shared>, Path(name): Path<String>, body: Bytes) -> Answer {
    let level = parse_level(&body)?;
    lock(&state).subjects.entry(name).or_default().compatibility = Some(level.clone());
    ok(json!({"compatibility": level}))
}

/// `DELETE /subjects/{s}`: forgets the subject's versions and its own
/// compatibility level and answers the deleted version numbers; the schemas
/// keep their ids, as in Confluent's soft delete.
async fn delete_subject(State(state): State<Shared>, Path(name): Path<String>) -> Answer {
    let removed = lock(&state).subjects.remove(&name);
    match removed {
        Some(s) if !s.versions.is_empty() => {
            let versions: Vec<usize> = (1..=s.versions.len()).collect();
            ok(json!(versions))
        }
        _ => Err(not_found(40401, format!("Subject '{name}' not found."))),
    }
}

/// `POST /compatibility/subjects/{s}/versions/{latest|n}`: whether the schema could be
/// registered, judged at the subject's level against the versions up to `v` (all of them
/// for a transitive level, `v` alone otherwise). Answers `is_compatible` and, as with
/// `?verbose=true`, the reasons in `messages`.
async fn test_compatibility(
    State(state): State<Shared>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let (_, parsed) = parse_request(&body)?;
    let reg = lock(&state);
    let entry = subject(&reg, &name)?;
    let upto = match version.as_str() {
        "latest" | "-1" => entry.versions.len(),
        v => v.parse().unwrap_or(0),
    };
    if upto == 0 || upto > entry.versions.len() {
        return Err(not_found(40402, format!("Version {version} not found.")));
    }
    let level = entry.compatibility.as_deref().unwrap_or(&reg.compatibility);
    let existing: Vec<&Schema> = entry.versions[..upto]
        .iter()
        .map(|id| &reg.schemas[*id as usize - 1].parsed)
        .collect();
    match check_compatibility(level, &existing, &parsed) {
        Ok(()) => ok(json!({"is_compatible": true, "messages": []})),
        Err(reason) => ok(json!({"is_compatible": false, "messages": [reason]})),
    }
}
