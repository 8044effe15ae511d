//! `schemas register` and `schemas check`.
//!
//! Register sets the registry's global compatibility to BACKWARD_TRANSITIVE (registries
//! default to BACKWARD, which only compares with the previous version) and registers every
//! subject Taskflow writes through the codec itself ([`Codec::register_all`], as the
//! producing binaries do at start-up: same schemas, same subject naming, each subject set to
//! BACKWARD_TRANSITIVE too). It then looks each subject up to report its id and version.
//!
//! Check asks the registry whether a schema file could be registered under a subject
//! (`POST /compatibility/subjects/{s}/versions/latest`); the registry applies the subject's
//! own level. Registration enforces the full rule regardless, and
//! `schemas/tests` proves every kept version of our own files.

use serde::Serialize;
use serde_json::{json, Value as Json};
use taskflow_schemas::{schema, Codec, EventType};

use super::table::Table;
use super::topics::Layout;
use super::{AdminError, Human};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
pub const LEVEL: &str = "BACKWARD_TRANSITIVE";

/// Every (topic, record) Taskflow produces: the API, recurrence and the relay write the task
/// lifecycle records to the task-events topic, the reminders worker `ReminderDue` to the
/// reminders topic.
pub fn produced(layout: &Layout) -> Vec<(String, Vec<EventType>)> {
    vec![
        (
            layout.task_events.clone(),
            EventType::TASK_LIFECYCLE.to_vec(),
        ),
        (layout.reminders.clone(), vec![EventType::ReminderDue]),
    ]
}

/// The registry's REST API with the binaries' settings (URL, optional basic auth).
#[derive(Clone)]
pub struct Registry {
    base_url: String,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
    codec: Codec,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// `TASKFLOW_SCHEMA_REGISTRY_URL`, `_USERNAME`, `_PASSWORD`, as every binary reads them.
    pub fn from_env() -> Result<Self, AdminError> {
        use taskflow_infra::config::{env_opt, env_or};
        let url: String = env_or(
            "TASKFLOW_SCHEMA_REGISTRY_URL",
            "http://localhost:8081".to_owned(),
        )?;
        let user: Option<String> = env_opt("TASKFLOW_SCHEMA_REGISTRY_USERNAME")?;
        let password: Option<String> = env_opt("TASKFLOW_SCHEMA_REGISTRY_PASSWORD")?;
        Self::new(&url, user.as_deref(), password.as_deref())
    }

    pub fn new(url: &str, user: Option<&str>, password: Option<&str>) -> Result<Self, AdminError> {
        // Validates the URL and that credentials come in pairs, with the binaries' messages.
        let codec = taskflow_infra::config::codec_from_settings(url, user, password)?;
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| AdminError::Registry(format!("building the HTTP client: {e}")))?;
        Ok(Self {
            base_url: url.trim_end_matches('/').to_owned(),
            credentials: user
                .zip(password)
                .map(|(u, p)| (u.to_owned(), p.to_owned())),
            http,
            codec,
        })
    }

    /// Sends `body` with `method` to `path`; `Ok((status, json))` for any answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Json,
    ) -> Result<(u16, Json), AdminError> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .body(body.to_string());
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| AdminError::Registry(format!("{method} {url}: {e}")))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| {
            AdminError::Registry(format!("{method} {url}: reading the answer: {e}"))
        })?;
        let json = serde_json::from_str(&text).unwrap_or(Json::String(text));
        Ok((status, json))
    }

    async fn expect_ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Json,
    ) -> Result<Json, AdminError> {
        let (status, json) = self.call(method.clone(), path, body).await?;
        if (200..300).contains(&status) {
            Ok(json)
        } else {
            Err(AdminError::RegistryStatus {
                request: format!("{method} {path}"),
                status,
                message: error_message(&json),
            })
        }
    }
}

/// The registry's `message`, or the whole answer.
fn error_message(json: &Json) -> String {
    json.get("message")
        .and_then(Json::as_str)
        .map_or_else(|| json.to_string(), str::to_owned)
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisteredSubject {
    pub subject: String,
    pub id: u64,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterReport {
    pub global_compatibility: String,
    pub subjects: Vec<RegisteredSubject>,
}

impl Human for RegisterReport {
    fn human(&self) -> String {
        let mut t = Table::new(&["SUBJECT", "ID", "VERSION"]);
        for s in &self.subjects {
            t.row(vec![
                s.subject.clone(),
                s.id.to_string(),
                s.version.to_string(),
            ]);
        }
        format!(
            "global compatibility: {}\n{}",
            self.global_compatibility,
            t.render()
        )
    }
}

/// `schemas register`.
pub async fn register(registry: &Registry, layout: &Layout) -> Result<RegisterReport, AdminError> {
    registry
        .expect_ok(
            reqwest::Method::PUT,
            "/config",
            &json!({ "compatibility": LEVEL }),
        )
        .await?;
    let mut subjects = Vec::new();
    for (topic, types) in produced(layout) {
        registry.codec.register_all(&topic, &types).await?;
        for t in types {
            let subject = Codec::subject(&topic, t);
            let body = json!({ "schema": schema::registered_json(t)? });
            let found = registry
                .expect_ok(
                    reqwest::Method::POST,
                    &format!("/subjects/{}", encode(&subject)),
                    &body,
                )
                .await?;
            let number = |k: &str| {
                found.get(k).and_then(Json::as_u64).ok_or_else(|| {
                    AdminError::Registry(format!("looking up {subject}: no {k:?} in {found}"))
                })
            };
            subjects.push(RegisteredSubject {
                id: number("id")?,
                version: number("version")?,
                subject,
            });
        }
    }
    Ok(RegisterReport {
        global_compatibility: LEVEL.to_owned(),
        subjects,
    })
}

/// Subjects contain dots and dashes only in practice; anything else is percent-encoded so
/// a path segment stays one segment.
fn encode(subject: &str) -> String {
    subject
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A schema file made self-contained: references to the shared records (`EventMetadata`,
/// `TaskSnapshot`) become their definitions, from `shared` when given (a changed shared
/// record being checked with its event), else the compiled-in ones. A self-contained file
/// is unchanged in meaning.
pub fn prepare(file_text: &str, shared: &[String]) -> Result<String, AdminError> {
    let compiled;
    let shared: Vec<&str> = if shared.is_empty() {
        compiled = schema::shared_sources();
        compiled.to_vec()
    } else {
        shared.iter().map(String::as_str).collect()
    };
    Ok(schema::expand(file_text, &shared)?)
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub subject: String,
    pub compatible: bool,
    pub messages: Vec<String>,
}

impl Human for CheckReport {
    fn human(&self) -> String {
        let mut out = format!(
            "{}: {}\n",
            self.subject,
            if self.compatible {
                "compatible"
            } else {
                "INCOMPATIBLE"
            }
        );
        for m in &self.messages {
            out.push_str(&format!("  {m}\n"));
        }
        out
    }
}

/// `schemas check`: `Ok` with the verdict; an unknown subject is an error (a typo must not
/// pass as "compatible").
pub async fn check(
    registry: &Registry,
    subject: &str,
    schema_json: &str,
) -> Result<CheckReport, AdminError> {
    let path = format!(
        "/compatibility/subjects/{}/versions/latest?verbose=true",
        encode(subject)
    );
    let (status, json) = registry
        .call(
            reqwest::Method::POST,
            &path,
            &json!({ "schema": schema_json }),
        )
        .await?;
    if status == 404 {
        return Err(AdminError::NotFound(format!(
            "subject {subject} is not registered ({})",
            error_message(&json)
        )));
    }
    // 409 is how some registries answer "incompatible"; a 422 names an invalid schema.
    if !(200..300).contains(&status) && status != 409 {
        return Err(AdminError::RegistryStatus {
            request: format!("POST {path}"),
            status,
            message: error_message(&json),
        });
    }
    let compatible = json
        .get("is_compatible")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let messages = match json.get("messages") {
        Some(Json::Array(m)) => m
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ if status == 409 => vec![error_message(&json)],
        _ => Vec::new(),
    };
    Ok(CheckReport {
        subject: subject.to_owned(),
        compatible,
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_produced_subject_uses_the_codecs_naming() {
        let subjects: Vec<String> = produced(&Layout::default())
            .into_iter()
            .flat_map(|(topic, types)| types.into_iter().map(move |t| Codec::subject(&topic, t)))
            .collect();
        assert_eq!(subjects.len(), 7);
        assert!(
            subjects.contains(&"taskflow.task-events-com.taskflow.events.TaskCreated".to_owned())
        );
        assert!(subjects.contains(&"taskflow.reminders-com.taskflow.events.ReminderDue".to_owned()));
    }

    #[test]
    fn a_file_with_references_is_expanded_like_the_registered_schema() {
        let file = schema::source(EventType::TaskCreated);
        let prepared = prepare(file, &[]).expect("expands");
        let registered = schema::registered_json(EventType::TaskCreated).expect("compiled in");
        assert_eq!(prepared, registered);
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(encode("taskflow.x-com.a.B"), "taskflow.x-com.a.B");
        assert_eq!(encode("a/b c"), "a%2Fb%20c");
    }
}
