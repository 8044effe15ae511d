//! The OpenAPI 3.1 document served at `GET /openapi.json`.
//!
//! It must be exact: a generated client or a fuzzer (`scripts/fuzz-api`
//! runs schemathesis against it in CI) trusts every status, bound and
//! pattern. utoipa derives the paths, the route-specific responses and the
//! response schemas from the handlers' annotations; [`refine`] then adds
//! what utoipa cannot express, in one place:
//!
//! * the request-body schemas, written as JSON Schema: exact patterns
//!   (no NUL, not blank, RFC 5545 subset, ISO-8601 durations, email),
//!   `additionalProperties: false` where the server refuses unknown fields,
//!   and the rule that a relative reminder needs `due_at` (`anyOf`);
//! * parameter schemas by name (bounds, formats, enums, entity tags);
//! * the responses every operation of a kind can give: 500 and 503
//!   everywhere, 401 and 403 (a token without the scope) on protected
//!   routes, 400/413/415/422 with a JSON body, 400 with a parsed header,
//!   400/422 with a query string.
//!
//! Patterns use an explicit whitespace class ([`WS`], Rust's
//! `char::is_whitespace`) rather than `\s`, whose meaning differs between
//! regex engines, so "not blank" means exactly what the server trims.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};
use utoipa::{
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{
    audit, auth, extract, feed, inbox, preferences, problem, recurrence,
    tasks::{self, validate},
    tokens, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "Taskflow API", description = "Tasks with due dates, recurrence and reminders. Errors are application/problem+json."),
    paths(
        auth::signup,
        auth::login,
        tasks::handlers::create_task,
        tasks::handlers::list_tasks,
        tasks::handlers::get_task,
        tasks::handlers::patch_task,
        tasks::handlers::delete_task,
        tasks::handlers::complete_task,
        tasks::handlers::reopen_task,
        tasks::handlers::snooze_reminder,
        recurrence::preview_recurrence,
        audit::handlers::task_history,
        audit::handlers::list_audit,
        tokens::handlers::create_token,
        tokens::handlers::list_tokens,
        tokens::handlers::revoke_token,
        feed::handlers::open_stream,
        feed::handlers::open_socket,
        feed::handlers::create_stream_token,
        inbox::handlers::list_notifications,
        inbox::handlers::unread_count,
        inbox::handlers::mark_read,
        inbox::handlers::mark_all_read,
        preferences::get_preferences,
        preferences::put_preferences,
        webhooks::handlers::create_endpoint,
        webhooks::handlers::list_endpoints,
        webhooks::handlers::delete_endpoint,
        webhooks::handlers::enable_endpoint,
        webhooks::handlers::rotate_secret,
        webhooks::handlers::send_test,
        webhooks::handlers::list_deliveries,
    ),
    components(schemas(
        problem::Problem,
        problem::FieldError,
        auth::UserResponse,
        auth::TokenResponse,
        tasks::model::TaskResponse,
        tasks::model::TaskPage,
        tasks::model::CreateTaskRequest,
        tasks::model::PatchTaskRequest,
        tasks::model::RecurrenceBody,
        tasks::model::ReminderBody,
        audit::model::Change,
        audit::model::AuditEventResponse,
        audit::model::TaskHistory,
        audit::model::AuditPage,
        tokens::model::AccessToken,
        tokens::model::CreatedAccessToken,
        tokens::model::AccessTokenList,
        feed::handlers::StreamTokenResponse,
        inbox::model::NotificationResponse,
        inbox::model::NotificationPage,
        inbox::model::UnreadCount,
        inbox::model::ReadAllResponse,
        preferences::PreferencesBody,
        recurrence::PreviewResponse,
        webhooks::model::WebhookEndpoint,
        webhooks::model::CreatedWebhookEndpoint,
        webhooks::model::WebhookEndpointList,
        webhooks::model::RotatedSecret,
        webhooks::model::TestDeliveryQueued,
        webhooks::model::Delivery,
        webhooks::model::DeliveryAttempt,
        webhooks::model::DeliveryList,
    )),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "tasks"), (name = "audit", description = "Task history and activity, read from the audit log"),
         (name = "tokens", description = "Personal access tokens: long-lived, scoped bearer tokens for scripts and assistants"),
         (name = "feed", description = "The caller's feed, live (Server-Sent Events): every change to their tasks and notifications, in one order"),
         (name = "inbox", description = "Notifications and their read state, the same on every device"),
         (name = "preferences", description = "Where notifications go, the caller's zone and quiet hours"),
         (name = "webhooks", description = "Endpoints that receive the caller's events, signed per the Standard Webhooks specification, with the delivery log"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT or personal access token")
                    .description(Some(
                        "The access token of /auth/login (every scope), or a personal access \
                         token (`tfp_...`) from POST /tokens, limited to its scopes: \
                         `tasks:read` for reading tasks, their history and the audit feed, \
                         `tasks:write` for changing tasks, `notifications:read` for the inbox \
                         and the live feed. A route the token's scopes do not cover answers 403 \
                         naming the missing scope.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "stream_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "access_token",
                "A stream token of POST /feed/stream-tokens (60 s to open a stream), for \
                 clients that cannot send headers (EventSource). Accepted by GET /feed/stream \
                 only.",
            ))),
        );
    }
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        refine(&mut doc);
        doc
    })
}

/// The document serialised once, as served at `/openapi.json`.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| document().to_string())
}

/// Rust's whitespace (`char::is_whitespace`), as a character-class body.
pub const WS: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

const PROBLEM: &str = "application/problem+json";

fn no_nul() -> String {
    r"^[^\x00]*$".to_owned()
}

/// At least one character that is neither whitespace nor NUL, and no NUL.
fn non_blank() -> String {
    format!(r"^[^\x00]*[^\x00{WS}][^\x00]*$")
}

fn email() -> String {
    format!(r"^[{WS}]*[^{WS}@\x00]+@[^{WS}\x00]+[{WS}]*$")
}

const DAY: &str = "(?:MO|TU|WE|TH|FR|SA|SU)";

/// The RFC 5545 subset the document promises (the server accepts any rule
/// the `rrule` crate parses, at most hourly).
fn rrule() -> String {
    format!(
        "^(?:RRULE:)?FREQ=(?:HOURLY|DAILY|WEEKLY|MONTHLY|YEARLY)\
         (?:;INTERVAL=[1-9][0-9]{{0,2}})?(?:;COUNT=[1-9][0-9]{{0,2}})?\
         (?:;BYDAY={DAY}(?:,{DAY}){{0,6}})?$"
    )
}

/// ISO-8601 durations in weeks, days, hours, minutes and seconds. The digit
/// counts keep every match under the server's ten-year bound.
fn duration() -> String {
    let (w, d) = ("[0-9]{1,2}W", "[0-9]{1,3}D");
    let (h, m, s) = ("[0-9]{1,4}H", "[0-9]{1,5}M", "[0-9]{1,7}S");
    let time = format!("T(?:{h}(?:{m})?(?:{s})?|{m}(?:{s})?|{s})");
    format!("^P(?:{w}(?:{d})?(?:{time})?|{d}(?:{time})?|{time})$")
}

/// `If-Match`: `*` or a list of strong entity tags `"<version>"` (the bare
/// version is accepted too); weak tags are refused.
fn entity_tags() -> String {
    let tag = r#"(?:"[0-9]{1,18}"|[0-9]{1,18})"#;
    format!(r"^(?:\*|{tag}(?:[ \t]*,[ \t]*{tag})*)$")
}

fn date_time(nullable: bool) -> Value {
    if nullable {
        json!({"type": ["string", "null"], "format": "date-time"})
    } else {
        json!({"type": "string", "format": "date-time"})
    }
}

fn exdates() -> Value {
    json!({"type": ["array", "null"], "maxItems": validate::MAX_EXDATES, "items": date_time(false),
           "description": "Scheduled instants to skip."})
}

fn reminder_id() -> Value {
    json!({"type": ["string", "null"], "format": "uuid",
           "description": "In a PATCH: keep the task's reminder with this id (and its snooze); \
               an id that is not one of the task's reminders makes the item a new reminder. \
               Ignored on create."})
}

fn reminder_channels() -> Value {
    json!({"type": ["array", "null"], "items": {"type": "string", "enum": ["inbox", "live", "webhook", "email"]},
           "description": "Where this reminder goes instead of the owner's preferences for reminders; \
               absent or null: the preferences.",
           "example": ["inbox", "email"]})
}

fn snoozed_until() -> Value {
    json!({"type": ["string", "null"], "format": "date-time",
           "description": "Read-only (set by the snooze endpoint); ignored in requests."})
}

fn tag_item() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": validate::TAG_MAX_CHARS, "pattern": non_blank()})
}

fn priority() -> Value {
    json!({"type": "string", "enum": ["low", "medium", "high", "urgent"]})
}

/// The properties of a create or patch body; `title` is the only one that
/// cannot be null.
fn task_properties(due_at: Value, reminder: &str, recurrence: &str) -> Map<String, Value> {
    let props = json!({
        "title": {
            "type": "string", "minLength": 1, "maxLength": validate::TITLE_MAX_CHARS,
            "pattern": non_blank(),
            "description": "At most 500 characters, not blank; stored trimmed."
        },
        "description": {
            "type": ["string", "null"], "maxLength": validate::DESCRIPTION_MAX_CHARS,
            "pattern": no_nul(),
            "description": "`null` or a blank string clears it."
        },
        "due_at": due_at,
        "priority": priority(),
        "tags": {
            "type": ["array", "null"], "maxItems": validate::MAX_TAGS, "items": tag_item(),
            "description": "Trimmed and de-duplicated; `null` empties the list."
        },
        "recurrence": {"anyOf": [{"type": "null"}, {"$ref": format!("#/components/schemas/{recurrence}")}]},
        "reminders": {
            "type": ["array", "null"], "maxItems": validate::MAX_REMINDERS,
            "items": {"$ref": format!("#/components/schemas/{reminder}")},
            "description": "Duplicates are dropped; `null` empties the list."
        },
    });
    match props {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn request_schemas() -> Vec<(&'static str, Value)> {
    let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let create_with_due = json!({
        "type": "object", "additionalProperties": false, "required": ["title", "due_at"],
        "properties": task_properties(date_time(false), "ReminderRequest", "RecurrenceRequest"),
    });
    let create_without_due = json!({
        "type": "object", "additionalProperties": false, "required": ["title"],
        "properties": task_properties(date_time(true), "AbsoluteReminder", "RecurrenceFromCompletionRequest"),
    });
    vec![
        (
            "SignupRequest",
            json!({
                "type": "object", "required": ["email", "password"],
                "properties": {
                    "email": {"type": "string", "maxLength": auth::EMAIL_MAX_CHARS, "pattern": email(),
                              "example": "ada@example.com"},
                    "password": {"type": "string", "minLength": auth::PASSWORD_MIN_CHARS,
                                 "maxLength": auth::PASSWORD_MAX_CHARS},
                },
            }),
        ),
        (
            "LoginRequest",
            json!({
                "type": "object", "required": ["email", "password"],
                "properties": {
                    "email": {"type": "string", "maxLength": auth::EMAIL_MAX_CHARS, "pattern": email(),
                              "example": "ada@example.com"},
                    "password": {"type": "string", "minLength": 1},
                },
            }),
        ),
        (
            "CreateTaskRequest",
            json!({
                "description": "A new task. A reminder relative to the due date (`before`), and a \
                    `from_due` recurrence, need `due_at`.",
                "anyOf": [create_with_due, create_without_due],
                "example": {"title": "Water the plants", "due_at": "2026-12-01T09:00:00+01:00",
                            "priority": "high", "tags": ["home"],
                            "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=MO", "tz": "Europe/Berlin"},
                            "reminders": [{"before": "PT15M"}]},
            }),
        ),
        (
            "PatchTaskRequest",
            json!({
                "description": "Merge patch: an absent field is unchanged, `null` clears it. \
                    A valid patch that would leave a relative reminder, or a `from_due` \
                    recurrence, without `due_at` is a 409. A changed rule applies from the \
                    next instance on.",
                "type": "object", "additionalProperties": false,
                "properties": task_properties(date_time(true), "ReminderRequest", "RecurrenceRequest"),
            }),
        ),
        (
            "CreateWebhookRequest",
            json!({
                "type": "object", "additionalProperties": false, "required": ["url"],
                "properties": {
                    "url": {"type": "string", "minLength": 1, "maxLength": webhooks::model::URL_MAX_CHARS,
                            "description": "https, and not an internal address (loopback, private, link-local, \
                                metadata); checked again at every delivery.",
                            "example": "https://hooks.example.com/taskflow"},
                    "description": {"type": ["string", "null"], "maxLength": webhooks::model::DESCRIPTION_MAX_CHARS,
                                    "pattern": no_nul(), "example": "home automation"},
                },
            }),
        ),
        (
            "PreferencesRequest",
            json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "time_zone": {"type": ["string", "null"], "description": "IANA zone; default UTC.",
                                  "enum": taskflow_infra::preferences::zone_names(),
                                  "example": "Europe/Berlin"},
                    "quiet_hours": {
                        "type": ["object", "null"], "additionalProperties": false,
                        "required": ["start", "end"],
                        "properties": {
                            "start": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"},
                            "end": {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"},
                        },
                        "example": {"start": "22:00", "end": "07:00"},
                    },
                    "channels": {
                        "type": ["object", "null"], "additionalProperties": false,
                        "properties": taskflow_infra::preferences::KINDS.iter().map(|k| {
                            ((*k).to_owned(), json!({"type": "array", "items": {"type": "string",
                                "enum": ["inbox", "live", "webhook", "email"]}}))
                        }).collect::<serde_json::Map<String, Value>>(),
                        "example": {"task.created": ["live", "webhook"], "reminder.due": ["inbox", "live", "email"]},
                    },
                },
            }),
        ),
        (
            "RotateSecretRequest",
            json!({
                "type": "object", "additionalProperties": false,
                "properties": {
                    "overlap_seconds": {"type": ["integer", "null"], "minimum": 0,
                                        "maximum": webhooks::model::MAX_OVERLAP_SECS,
                                        "description": "How long deliveries are signed with the previous secret too; \
                                            absent or `null`: 86400."},
                },
            }),
        ),
        (
            "CreateAccessTokenRequest",
            json!({
                "type": "object", "additionalProperties": false, "required": ["name", "scopes"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": tokens::model::NAME_MAX_CHARS,
                             "pattern": non_blank(),
                             "description": "What the token is for; stored trimmed.",
                             "example": "laptop assistant"},
                    "scopes": {"type": "array", "minItems": 1,
                               "items": {"type": "string", "enum": tokens::Scope::ALL.map(tokens::Scope::as_str)},
                               "description": "What the token may do; duplicates are ignored.",
                               "example": ["tasks:read", "tasks:write"]},
                    "expires_in_days": {"type": ["integer", "null"], "minimum": 1,
                                        "maximum": tokens::model::MAX_EXPIRY_DAYS,
                                        "description": "Absent or `null`: the token never expires."},
                },
            }),
        ),
        (
            "RecurrenceRequest",
            json!({
                "type": "object", "additionalProperties": false, "required": ["rrule", "tz"],
                "properties": {
                    "rrule": {"type": "string", "pattern": rrule(),
                              "description": "RFC 5545 RRULE value (an `RRULE:` prefix is accepted), at most hourly.",
                              "example": "FREQ=WEEKLY;BYDAY=MO"},
                    "tz": {"type": "string", "enum": zones, "example": "Europe/Berlin"},
                    "mode": {"enum": ["from_due", "from_completion", null],
                             "description": "Default `from_due` (needs `due_at`)."},
                    "exdates": exdates(),
                },
            }),
        ),
        (
            "RecurrencePreviewRequest",
            json!({
                "type": "object", "additionalProperties": false, "required": ["rrule", "tz"],
                "properties": {
                    "rrule": {"type": "string", "pattern": rrule(),
                              "example": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"},
                    "tz": {"type": "string", "enum": zones, "example": "Europe/Berlin"},
                    "start": {"type": ["string", "null"], "format": "date-time",
                              "pattern": "^(19|[2-8][0-9])[0-9]{2}-",
                              "description": "The first instance's due date (years 1900 to 8999); default now."},
                    "count": {"type": ["integer", "null"], "minimum": 1,
                              "maximum": recurrence::MAX_PREVIEW,
                              "description": "Occurrences to list after `start`; default 5."},
                },
            }),
        ),
        (
            "RecurrenceFromCompletionRequest",
            json!({
                "description": "A recurrence on a task without `due_at`: only `from_completion` \
                    can follow it.",
                "type": "object", "additionalProperties": false, "required": ["rrule", "tz", "mode"],
                "properties": {
                    "rrule": {"type": "string", "pattern": rrule()},
                    "tz": {"type": "string", "enum": zones},
                    "mode": {"const": "from_completion"},
                    "exdates": exdates(),
                },
            }),
        ),
        (
            "RelativeReminder",
            json!({
                "type": "object", "additionalProperties": false, "required": ["before"],
                "properties": {"before": {"type": "string", "pattern": duration(), "example": "PT15M",
                               "description": "ISO-8601 duration before `due_at`."},
                               "id": reminder_id(), "snoozed_until": snoozed_until(),
                               "channels": reminder_channels()},
            }),
        ),
        (
            "AbsoluteReminder",
            json!({
                "type": "object", "additionalProperties": false, "required": ["at"],
                "properties": {"at": date_time(false),
                               "id": reminder_id(), "snoozed_until": snoozed_until(),
                               "channels": reminder_channels()},
            }),
        ),
        (
            "SnoozeRequest",
            json!({
                "description": "Exactly one of `for` (from now) and `until`; zero, or an instant already past, rings the reminder at once.",
                "oneOf": [
                    {"type": "object", "additionalProperties": false, "required": ["for"],
                     "properties": {"for": {"type": "string", "pattern": duration(), "example": "PT10M",
                                            "description": "ISO-8601 duration from now."}}},
                    {"type": "object", "additionalProperties": false, "required": ["until"],
                     "properties": {"until": {"type": "string", "format": "date-time",
                                              "description": "When it fires; a past instant rings it at once."}}},
                ],
            }),
        ),
        (
            "ReminderRequest",
            json!({"oneOf": [
                {"$ref": "#/components/schemas/RelativeReminder"},
                {"$ref": "#/components/schemas/AbsoluteReminder"},
            ]}),
        ),
    ]
}

/// Schema and description of a parameter, by name.
fn parameter(name: &str) -> Option<(Value, &'static str)> {
    let event_types: Vec<&str> = taskflow_schemas::EventType::ALL
        .iter()
        .map(taskflow_schemas::EventType::as_str)
        .collect();
    Some(match name {
        "id" => (json!({"type": "string", "format": "uuid"}), "Task id"),
        "rid" => (
            json!({"type": "string", "format": "uuid"}),
            "Reminder id (the `id` of one of the task's `reminders`)",
        ),
        "token_id" => (
            json!({"type": "string", "format": "uuid"}),
            "Personal access token id",
        ),
        "notification_id" => (
            json!({"type": "string", "format": "uuid"}),
            "Notification id",
        ),
        // base64url of a flag byte (0 or 1), 8 bytes and 16 bytes: exactly the strings
        // `InboxCursor::decode` accepts (the last character carries two zero bits).
        "inbox_cursor" => (
            json!({"type": "string", "pattern": "^A[A-Za-f][A-Za-z0-9_-]{31}[AQgw]$"}),
            "`next_cursor` of the previous page.",
        ),
        "Last-Event-ID" => (
            json!({"type": "string", "pattern": "^[0-9]{1,18}$"}),
            "The `id` of the last event received: the stream sends every entry after it, in \
             order, once (`EventSource` sends it when it reconnects).",
        ),
        "If-Match" => (
            json!({"type": "string", "pattern": entity_tags()}),
            "Entity tag(s) of the task version the change is based on: the `ETag` of a \
             previous answer (`\"3\"`), a comma-separated list, or `*`. Weak tags are refused. \
             A mismatch is a 412.",
        ),
        "Idempotency-Key" => (
            json!({"type": "string", "pattern": format!("^[!-~]{{1,{}}}$", extract::MAX_IDEMPOTENCY_KEY_LEN)}),
            "A retry with the same key and request (within the key's lifetime, 24 h by \
             default) returns the first answer and writes nothing; the key with another \
             request is a 422.",
        ),
        "limit" => (
            json!({"type": "integer", "minimum": 1, "maximum": validate::MAX_LIMIT,
                   "default": validate::DEFAULT_LIMIT}),
            "Page size.",
        ),
        "cursor" => (
            json!({"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{{}}}$", validate::page::CURSOR_CHARS)}),
            "`next_cursor` of the previous page.",
        ),
        // base64url of the tag byte `A` and 16 bytes: exactly the strings
        // `AuditCursor::decode` accepts (the last character carries two zero bits).
        "audit_cursor" => (
            json!({"type": "string", "pattern": "^Q[Q-Za-f][A-Za-z0-9_-]{20}[AEIMQUYcgkosw048]$"}),
            "`next_cursor` of the previous page.",
        ),
        "status" => (
            json!({"type": "string", "enum": ["open", "completed"]}),
            "Task status.",
        ),
        "scope" => (
            json!({"type": "string", "enum": ["instance", "series"], "default": "instance"}),
            "`series`: also delete every other open instance of the task's series and end \
             the series, so no further instance is created, even for a completion still being \
             processed.",
        ),
        "priority" => (priority(), "Task priority."),
        "tag" => (
            json!({"type": "array", "maxItems": validate::MAX_TAGS, "items": tag_item()}),
            "Tasks carrying every one of these tags (repeat the parameter).",
        ),
        "q" => (
            json!({"type": "string", "maxLength": validate::Q_MAX_CHARS, "pattern": no_nul()}),
            "Case-insensitive substring of title or description.",
        ),
        "due_after" => (date_time(false), "Due strictly after this instant."),
        "due_before" => (date_time(false), "Due strictly before this instant."),
        "from" => (date_time(false), "Events at or after this instant."),
        "to" => (
            date_time(false),
            "Events strictly before this instant (an empty range selects nothing).",
        ),
        "type" => (
            json!({"type": "array", "items": {"type": "string", "enum": event_types}}),
            "Event types to include (repeat the parameter); all when absent.",
        ),
        _ => return None,
    })
}

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    })
}

/// Adds a problem response for `status` unless the operation documents it.
fn ensure(responses: &mut Map<String, Value>, status: &str, description: &str) {
    responses
        .entry(status)
        .or_insert_with(|| problem_response(description));
}

/// See the module docs.
pub fn refine(doc: &mut Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in request_schemas() {
            schemas.insert(name.to_owned(), schema);
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else {
                continue;
            };
            refine_operation(path, method, op);
        }
    }
}

fn refine_operation(path: &str, method: &str, op: &mut Map<String, Value>) {
    let secured = op
        .get("security")
        .is_some_and(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    let mut has_header = false;
    let mut has_query = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut() {
            let Some(p) = p.as_object_mut() else { continue };
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            match p.get("in").and_then(Value::as_str) {
                Some("header") => has_header = true,
                Some("query") => has_query = true,
                _ => {}
            }
            // The audit log's cursor has its own format (see `AuditCursor`).
            let key = if path == "/audit" && name == "cursor" {
                "audit_cursor"
            } else if path.starts_with("/tokens/") && name == "id" {
                "token_id"
            } else if path == "/notifications" && name == "cursor" {
                "inbox_cursor"
            } else if path.starts_with("/notifications/") && name == "id" {
                "notification_id"
            } else {
                name.as_str()
            };
            if let Some((schema, description)) = parameter(key) {
                if schema["type"] == "array" {
                    p.insert("style".into(), json!("form"));
                    p.insert("explode".into(), json!(true));
                }
                p.insert("schema".into(), schema);
                p.insert("description".into(), json!(description));
            }
        }
    }
    let body_schema = match (path, method) {
        ("/auth/signup", "post") => Some("SignupRequest"),
        ("/auth/login", "post") => Some("LoginRequest"),
        ("/tasks", "post") => Some("CreateTaskRequest"),
        ("/tasks/{id}", "patch") => Some("PatchTaskRequest"),
        ("/tokens", "post") => Some("CreateAccessTokenRequest"),
        ("/webhooks", "post") => Some("CreateWebhookRequest"),
        ("/preferences", "put") => Some("PreferencesRequest"),
        ("/recurrence/preview", "post") => Some("RecurrencePreviewRequest"),
        ("/webhooks/{id}/rotate-secret", "post") => Some("RotateSecretRequest"),
        ("/tasks/{id}/reminders/{rid}/snooze", "post") => Some("SnoozeRequest"),
        _ => None,
    };
    if let Some(name) = body_schema {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {
                "schema": {"$ref": format!("#/components/schemas/{name}")}}}}),
        );
    }
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    if secured {
        ensure(
            responses,
            "401",
            "Missing, malformed, expired or wrongly signed bearer token",
        );
        if let Some(r) = responses.get_mut("401").and_then(Value::as_object_mut) {
            r.insert(
                "headers".into(),
                json!({"WWW-Authenticate": {"schema": {"type": "string"}, "description": "`Bearer`"}}),
            );
        }
        ensure(
            responses,
            "403",
            "A personal access token without the scope this route needs; the problem's \
             `detail` names it",
        );
    }
    if body_schema.is_some() {
        ensure(responses, "400", "The body is not valid JSON");
        ensure(responses, "413", "The body is larger than 1 MiB");
        ensure(responses, "415", "The body is not `application/json`");
        ensure(
            responses,
            "422",
            "Invalid fields; the problem's `errors` name each one",
        );
    }
    if has_header {
        ensure(
            responses,
            "400",
            "A malformed `If-Match` or `Idempotency-Key` header",
        );
    }
    // The stream's only query parameter is its credential (see the `stream_token` scheme):
    // a bad one is a 401, and the stream documents its own 400.
    if has_query && path != "/feed/stream" {
        ensure(responses, "400", "The query string cannot be parsed");
        ensure(
            responses,
            "422",
            "Invalid query parameters; the problem's `errors` name each one",
        );
    }
    if path.starts_with("/auth/") {
        ensure(
            responses,
            "429",
            "Too many signup/login requests from this address or for this account",
        );
        if let Some(r) = responses.get_mut("429").and_then(Value::as_object_mut) {
            r.insert(
                "headers".into(),
                json!({"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                                       "description": "Seconds to wait before retrying"}}),
            );
        }
    }
    ensure(
        responses,
        "500",
        "An internal error (logged; never details)",
    );
    ensure(
        responses,
        "503",
        "The request took longer than the server's request timeout",
    );
}
