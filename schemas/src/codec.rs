//! Confluent wire-format Avro codec backed by a Schema Registry.
//!
//! Frame: magic byte 0, schema id (4 bytes, big endian), Avro binary datum.
//! Subjects follow TopicRecordNameStrategy (`<topic>-<record full name>`)
//! because several record types share `taskflow.task-events`.
//!
//! Every schema is parsed and resolved once per process: the current ones in
//! [`crate::wire`], and each writer schema fetched by id once, kept with its
//! resolved reader. After the first call per subject, encode does no I/O;
//! after the first message per schema id, decode does none either.

use crate::error::{is_transient_status, CodecError};
use crate::events::{Event, EventType};
use crate::schema::{self, record_full_name};
use crate::wire::{
    split_frame, static_entry, to_event, write_event, CURRENT_READERS, MAGIC_BYTE, WRITERS,
};
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::Schema;
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_id, post_schema, SrSettings,
};
use schema_registry_converter::schema_registry_common::{SchemaType, SuppliedSchema};
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How to read data of one writer schema id (cached per id).
enum ReadPlan {
    /// The writer schema is our current schema.
    Current(EventType),
    /// An older (or otherwise different) writer schema, resolved to our current one.
    Resolving {
        event_type: EventType,
        reader: GenericDatumReader<'static>,
    },
}

/// Encodes events into, and decodes them from, Confluent-framed Avro.
/// Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct Codec {
    inner: Arc<Inner>,
}

struct Inner {
    base_url: String,
    /// Basic-auth credentials for hosted registries (Redpanda Cloud, Confluent Cloud).
    credentials: Option<(String, String)>,
    sr: SrSettings,
    http: reqwest::Client,
    /// topic -> schema id of each current record schema (indexed like
    /// `EventType::ALL`) under that topic's subjects. Keyed by topic so the hot
    /// path looks up a `&str` without building the subject name.
    subject_ids: RwLock<HashMap<String, [Option<u32>; EventType::ALL.len()]>>,
    /// schema id -> how to read it.
    read_plans: RwLock<HashMap<u32, Arc<ReadPlan>>>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("registry_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

impl Codec {
    /// A codec for the registry at `registry_url` (e.g. `http://127.0.0.1:8081`), without
    /// credentials. No I/O. For tests and tools; binaries use [`Codec::with_credentials`],
    /// which reports a client that cannot be built instead of degrading.
    pub fn new(registry_url: &str) -> Codec {
        Self::with_credentials(registry_url, None).unwrap_or_else(|error| {
            // Only the HTTP client's TLS backend can fail here, and there are no credentials
            // to lose: fall back to the converter's default client (no request timeout).
            tracing::error!(%error, "registry client settings failed; using default client");
            let base_url = registry_url.trim_end_matches('/').to_owned();
            Codec::from_parts(
                base_url.clone(),
                None,
                SrSettings::new(base_url),
                reqwest::Client::default(),
            )
        })
    }

    /// A codec for a registry, with HTTP basic auth (`username`, `password`) when given.
    /// No I/O. Fails when the registry client cannot be built: credentials are never silently
    /// dropped.
    pub fn with_credentials(
        registry_url: &str,
        credentials: Option<(&str, &str)>,
    ) -> Result<Codec, CodecError> {
        let base_url = registry_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(CodecError::Settings(format!(
                "registry URL {base_url:?} must start with http:// or https://"
            )));
        }
        let mut builder = SrSettings::new_builder(base_url.clone());
        builder.set_timeout(REGISTRY_TIMEOUT);
        if let Some((user, password)) = credentials {
            builder.set_basic_authorization(user, Some(password));
        }
        let sr = builder
            .build()
            .map_err(|e| CodecError::Settings(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(REGISTRY_TIMEOUT)
            .build()
            .map_err(|e| CodecError::Settings(e.to_string()))?;
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        Ok(Codec::from_parts(base_url, credentials, sr, http))
    }

    fn from_parts(
        base_url: String,
        credentials: Option<(String, String)>,
        sr: SrSettings,
        http: reqwest::Client,
    ) -> Codec {
        Codec {
            inner: Arc::new(Inner {
                base_url,
                credentials,
                sr,
                http,
                subject_ids: RwLock::default(),
                read_plans: RwLock::default(),
            }),
        }
    }

    /// Registers the current schema of each of `event_types` under `topic` (setting each
    /// subject to BACKWARD_TRANSITIVE first), so later encodes do no I/O. Producers call this
    /// at start-up and report not ready until it succeeded: a subject the registry refuses
    /// then surfaces before the API acknowledges a single write, not after. Idempotent.
    pub async fn register_all(
        &self,
        topic: &str,
        event_types: &[EventType],
    ) -> Result<(), CodecError> {
        for event_type in event_types {
            self.schema_id(topic, *event_type).await?;
        }
        Ok(())
    }

    /// Registry subject of `event_type` on `topic` (TopicRecordNameStrategy).
    pub fn subject(topic: &str, event_type: EventType) -> String {
        format!("{topic}-{}", event_type.full_name())
    }

    /// Encode `event` for `topic`. The first call per subject sets the
    /// subject's compatibility to BACKWARD_TRANSITIVE and registers (or looks
    /// up) the current schema; later calls use the cached id and do no I/O.
    pub async fn encode(&self, topic: &str, event: &Event) -> Result<Vec<u8>, CodecError> {
        let event_type = event.event_type();
        let id = self.schema_id(topic, event_type).await?;
        let writer = static_entry(&WRITERS, event_type)?;
        let mut buf = Vec::with_capacity(256);
        buf.push(MAGIC_BYTE);
        buf.extend_from_slice(&id.to_be_bytes());
        write_event(writer, event, &mut buf)?;
        Ok(buf)
    }

    /// Decode a Confluent-framed value written with any registered version of
    /// one of our records; older versions are resolved to the current schema.
    pub async fn decode(&self, bytes: &[u8]) -> Result<Event, CodecError> {
        let (id, mut payload) = split_frame(bytes)?;
        let plan = self.read_plan(id).await?;
        let (event_type, value) = match plan.as_ref() {
            ReadPlan::Current(t) => (
                *t,
                static_entry(&CURRENT_READERS, *t)?.read_value(&mut payload)?,
            ),
            ReadPlan::Resolving { event_type, reader } => {
                (*event_type, reader.read_value(&mut payload)?)
            }
        };
        to_event(event_type, &value)
    }

    async fn schema_id(&self, topic: &str, event_type: EventType) -> Result<u32, CodecError> {
        let cached = read(&self.inner.subject_ids)
            .get(topic)
            .and_then(|ids| ids[event_type as usize]);
        if let Some(id) = cached {
            return Ok(id);
        }
        let subject = Codec::subject(topic, event_type);
        // Concurrent first calls may both register: the registry answers the
        // same id for an identical schema, so the race is harmless.
        self.set_backward_transitive(&subject).await?;
        let json = schema::registered_json(event_type)?;
        let supplied = SuppliedSchema::new(
            Some(event_type.full_name().to_owned()),
            SchemaType::Avro,
            json.to_owned(),
        );
        let registered = post_schema(&self.inner.sr, subject.clone(), supplied)
            .await
            .map_err(|e| CodecError::from_registry(e, None))?;
        let id = registered.id;
        write(&self.inner.subject_ids)
            .entry(topic.to_owned())
            .or_default()[event_type as usize] = Some(id);
        write(&self.inner.read_plans).insert(id, Arc::new(ReadPlan::Current(event_type)));
        Ok(id)
    }

    /// PUT /config/{subject}. Registries default to BACKWARD (Redpanda, Confluent),
    /// which only checks the latest version; we want every earlier version readable.
    /// A 4xx (e.g. 403: this key may register but not change config) is logged, not
    /// fatal: the registry still enforces its own level, and CI checks the history. Bad
    /// credentials (401) then fail the registration itself, classed transient.
    async fn set_backward_transitive(&self, subject: &str) -> Result<(), CodecError> {
        let url = format!("{}/config/{subject}", self.inner.base_url);
        let mut request = self
            .inner
            .http
            .put(&url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(r#"{"compatibility":"BACKWARD_TRANSITIVE"}"#);
        if let Some((user, password)) = &self.inner.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| CodecError::RegistryUnavailable(format!("PUT {url}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if is_transient_status(status.as_u16()) {
            Err(CodecError::RegistryUnavailable(format!(
                "PUT {url}: {status}"
            )))
        } else {
            tracing::warn!(%subject, %status, "could not set subject compatibility to BACKWARD_TRANSITIVE");
            Ok(())
        }
    }

    async fn read_plan(&self, id: u32) -> Result<Arc<ReadPlan>, CodecError> {
        if let Some(d) = read(&self.inner.read_plans).get(&id) {
            return Ok(d.clone());
        }
        let registered = get_schema_by_id(id, &self.inner.sr)
            .await
            .map_err(|e| CodecError::from_registry(e, Some(id)))?;
        if registered.schema_type != SchemaType::Avro {
            return Err(CodecError::UnknownRecordName(format!(
                "schema id {id} is not Avro ({:?})",
                registered.schema_type
            )));
        }
        let writer = Schema::parse_str(&registered.schema)?;
        let name = record_full_name(&writer).unwrap_or_default();
        let event_type =
            EventType::parse(&name).ok_or_else(|| CodecError::UnknownRecordName(name.clone()))?;
        let current = schema::current(event_type)?;
        let plan = if writer.canonical_form() == current.canonical_form() {
            ReadPlan::Current(event_type)
        } else {
            // The reader borrows its schemas for its whole life, and it is cached
            // for the life of the process, so the writer schema is leaked. This is
            // bounded: one small allocation per distinct registered schema id
            // decoded (a handful of versions), and ids unknown to the registry
            // never get here.
            let writer: &'static Schema = Box::leak(Box::new(writer));
            let reader = GenericDatumReader::builder(writer)
                .reader_schema(current)
                .human_readable(false)
                .build()?;
            ReadPlan::Resolving { event_type, reader }
        };
        let plan = Arc::new(plan);
        // Another task may have raced us; keep whichever is there (same result). A 404 is
        // never cached: the id may appear on this registry node later.
        let mut map = write(&self.inner.read_plans);
        Ok(map.entry(id).or_insert(plan).clone())
    }
}

// The maps only cache; a panic while holding a lock cannot leave them
// inconsistent, so a poisoned lock is used as is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_errors_are_errors_not_a_client_without_credentials() {
        let err = Codec::with_credentials("registry:8081", Some(("user", "secret")))
            .expect_err("a URL without scheme is refused");
        assert!(matches!(err, CodecError::Settings(_)), "{err}");
        assert!(!err.to_string().contains("secret"));
        let codec = Codec::with_credentials("https://registry.example/", Some(("u", "p")))
            .expect("valid settings");
        assert_eq!(codec.inner.base_url, "https://registry.example");
        assert_eq!(
            codec.inner.credentials,
            Some(("u".to_owned(), "p".to_owned()))
        );
    }
}
