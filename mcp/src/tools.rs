//! The tools: their descriptions and schemas, and each call turned into one
//! API request made with the caller's token.
//!
//! Arguments are forwarded as sent (after taking out the ones that address
//! the request: `id`, `if_version`, `idempotency_key`), so the API applies
//! the same validation as for any HTTP client and its field errors reach
//! the assistant one by one. Only what would change the request's address
//! is checked here: a task id must be a UUID (it becomes part of the path).
//!
//! A refused call is a tool error (`isError: true`) whose structured content
//! is the API's problem+json body (`status`, `type`, `detail`, `errors`),
//! and whose text says the same for a reader. Another user's task is a 404,
//! exactly as over HTTP.

use std::{borrow::Cow, sync::Arc};

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::Method;
use rmcp::{
    handler::server::tool::{schema_for_input, schema_for_output},
    model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations},
};
use schemars::JsonSchema;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::{
    api::{ApiClient, ApiError, ApiRequest},
    schema,
};

/// The tools this server offers.
pub const TOOL_NAMES: [&str; 11] = [
    "create_task",
    "list_tasks",
    "get_task",
    "update_task",
    "complete_task",
    "reopen_task",
    "snooze_reminder",
    "delete_task",
    "list_notifications",
    "mark_notification_read",
    "preview_recurrence",
];

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("invalid schema for {0}: {1}")]
    Schema(&'static str, String),
}

fn input<T: JsonSchema + 'static>(tool: &'static str) -> Result<Arc<JsonObject>, ToolError> {
    schema_for_input::<T>().map_err(|e| ToolError::Schema(tool, e))
}

fn tool(
    name: &'static str,
    title: &str,
    description: &'static str,
    input: Arc<JsonObject>,
    output: Arc<JsonObject>,
    annotations: ToolAnnotations,
) -> Tool {
    Tool::new(name, Cow::Borrowed(description), input)
        .with_title(title)
        .with_raw_output_schema(output)
        .with_annotations(annotations.open_world(false))
}

/// Every tool with its schemas. Built once per server.
pub fn list() -> Result<Vec<Tool>, ToolError> {
    let task = schema_for_output::<schema::Task>();
    let read = || ToolAnnotations::new().read_only(true);
    let write = |destructive: bool, idempotent: bool| {
        ToolAnnotations::new()
            .read_only(false)
            .destructive(destructive)
            .idempotent(idempotent)
    };
    Ok(vec![
        tool(
            "create_task",
            "Create a task",
            "Create a task for the user. Only `title` is required. `due_at` must carry a \
             time zone offset (e.g. 2026-12-01T09:00:00+01:00 or ...Z); convert the user's \
             local time yourself. Returns the new task, including its `id` and `version`. \
             If the API refuses the arguments, the error lists each invalid field and why; \
             fix those fields and call again.",
            input::<schema::CreateTask>("create_task")?,
            task.clone(),
            write(false, false),
        ),
        tool(
            "list_tasks",
            "List tasks",
            "List the user's tasks, oldest first, optionally filtered by status, tags (all \
             must match), priority, due range and a text search. Returns at most `limit` \
             tasks (default 50) and a `next_cursor`: pass it as `cursor` to get the next \
             page; it is null on the last page.",
            input::<schema::ListTasks>("list_tasks")?,
            schema_for_output::<schema::TaskPage>(),
            read(),
        ),
        tool(
            "get_task",
            "Get a task",
            "Get one of the user's tasks by id. An unknown, deleted or other user's task \
             is a not-found error (404).",
            input::<schema::TaskRef>("get_task")?,
            task.clone(),
            read(),
        ),
        tool(
            "update_task",
            "Update a task",
            "Change fields of a task: pass `id` and only the fields to change. `null` \
             clears description, due_at and recurrence and empties tags and reminders; \
             `tags` and `reminders` replace the whole list. To complete or reopen use \
             `complete_task`/`reopen_task`. Pass `if_version` (the task's `version`) to \
             make the change only if nobody changed the task since you read it. Returns \
             the updated task.",
            input::<schema::UpdateTask>("update_task")?,
            task.clone(),
            write(false, true),
        ),
        tool(
            "complete_task",
            "Complete a task",
            "Mark a task completed. A recurring task then gets its next occurrence as a \
             new task. Completing a task that is already completed is a conflict error \
             (409). Returns the task.",
            input::<schema::TaskChange>("complete_task")?,
            task.clone(),
            write(false, false),
        ),
        tool(
            "reopen_task",
            "Reopen a task",
            "Mark a completed task open again. Reopening an open task is a conflict error \
             (409). Returns the task.",
            input::<schema::TaskChange>("reopen_task")?,
            task.clone(),
            write(false, false),
        ),
        tool(
            "snooze_reminder",
            "Snooze a reminder",
            "Move one reminder of an open task to later: `for` a duration from now (e.g. \
             PT10M) or `until` an instant with an offset; exactly one of the two. The \
             reminder fires again then, even if it already fired. Reminder ids are the `id` \
             of each item of the task's `reminders`. A completed task is a conflict error \
             (409): reopen it first. Returns the task.",
            input::<schema::SnoozeReminder>("snooze_reminder")?,
            task,
            write(false, false),
        ),
        tool(
            "delete_task",
            "Delete a task",
            "Delete a task for good: afterwards it reads as not found. Ask the user before \
             deleting unless they asked for it.",
            input::<schema::TaskChange>("delete_task")?,
            schema_for_output::<schema::Deleted>(),
            write(true, false),
        ),
        tool(
            "list_notifications",
            "List notifications",
            "List the user's inbox: unread notifications first, then the newest. Each has an \
             `id`, a `kind` (e.g. `reminder_due`: a task's reminder fired), the `task_id`, a \
             `title` and `body`, and `read_at` (null while unread). Returns at most `limit` \
             (default 50) and a `next_cursor`: pass it as `cursor` for the next page.",
            input::<schema::ListNotifications>("list_notifications")?,
            schema_for_output::<schema::NotificationPage>(),
            read(),
        ),
        tool(
            "mark_notification_read",
            "Mark a notification read",
            "Mark one notification of the user's inbox read (on every device of the user). \
             Marking one already read changes nothing. An unknown or other user's \
             notification is a not-found error (404). Returns the notification.",
            input::<schema::NotificationRef>("mark_notification_read")?,
            schema_for_output::<schema::Notification>(),
            write(false, true),
        ),
        tool(
            "preview_recurrence",
            "Preview a recurrence rule",
            "Check a repeat rule before putting it on a task: returns the rule in plain \
             words (`description`) and its next `count` occurrences (default 5) after \
             `start` (the task's due date; now if absent), as the recurrence worker will \
             compute them in time zone `tz`, daylight-saving changes included. Show the \
             user the words and dates to confirm. An invalid rule or zone is an error \
             naming the field. Changes nothing.",
            input::<schema::PreviewRecurrence>("preview_recurrence")?,
            schema_for_output::<schema::RecurrencePreview>(),
            read(),
        ),
    ])
}

/// A refusal, in the shape of the API's problem+json.
fn problem_result(status: u16, problem: Value) -> CallToolResult {
    let title = problem
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or("Error");
    let detail = problem
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("no detail");
    let mut text = format!("Taskflow refused the call ({status} {title}): {detail}");
    for e in problem
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let field = e.get("field").and_then(Value::as_str).unwrap_or("?");
        let reason = e.get("reason").and_then(Value::as_str).unwrap_or("?");
        text.push_str(&format!("\n- {field}: {reason}"));
    }
    let mut structured = match problem {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    structured.insert("status".into(), json!(status));
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(Value::Object(structured));
    result
}

/// Arguments that are wrong before any request can be addressed.
fn invalid(errors: Vec<(String, String)>) -> CallToolResult {
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(field, reason)| json!({"field": field, "reason": reason}))
        .collect();
    problem_result(
        422,
        json!({
            "type": "urn:taskflow:problem:validation",
            "title": "Unprocessable Entity",
            "detail": "the arguments are invalid",
            "errors": errors,
        }),
    )
}

fn take_id(args: &mut JsonObject) -> Result<Uuid, CallToolResult> {
    match args.remove("id") {
        Some(Value::String(s)) => Uuid::parse_str(&s)
            .map_err(|_| invalid(vec![("id".into(), "must be a task id (a UUID)".into())])),
        Some(_) => Err(invalid(vec![(
            "id".into(),
            "must be a task id (a UUID string)".into(),
        )])),
        None => Err(invalid(vec![("id".into(), "is required".into())])),
    }
}

fn take_if_version(args: &mut JsonObject) -> Result<Option<i64>, CallToolResult> {
    match args.remove("if_version") {
        None | Some(Value::Null) => Ok(None),
        // `3.0` is an integer to JSON Schema too.
        Some(v) => match v.as_i64().or_else(|| {
            v.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= 1e15)
                .map(|f| f as i64)
        }) {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(invalid(vec![(
                "if_version".into(),
                "must be a positive integer (the task's version)".into(),
            )])),
        },
    }
}

fn reject_rest(args: &JsonObject) -> Result<(), CallToolResult> {
    if args.is_empty() {
        return Ok(());
    }
    Err(invalid(
        args.keys()
            .map(|k| (k.clone(), "unknown argument".to_owned()))
            .collect(),
    ))
}

const LIST_FILTERS: [&str; 8] = [
    "status",
    "tag",
    "priority",
    "due_after",
    "due_before",
    "q",
    "limit",
    "cursor",
];

/// The `GET /tasks` query string; values are passed on as text for the API
/// to validate, only their JSON type is checked here.
fn list_query(args: &JsonObject) -> Result<String, CallToolResult> {
    query_string(args, &LIST_FILTERS)
}

/// `list_notifications`' arguments as the inbox route's query.
fn notification_query(args: &JsonObject) -> Result<String, CallToolResult> {
    query_string(args, &["limit", "cursor"])
}

/// The arguments named in `allowed` as an encoded query string; any other is refused.
fn query_string(args: &JsonObject, allowed: &[&str]) -> Result<String, CallToolResult> {
    let mut pairs: Vec<(&str, String)> = Vec::new();
    // serde_json's map iterates in key order, so the query is deterministic.
    let mut errors = Vec::new();
    for (key, value) in args {
        if !allowed.contains(&key.as_str()) {
            errors.push((key.clone(), "unknown argument".to_owned()));
            continue;
        }
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match (key.as_str(), value) {
            (_, Value::Null) => {}
            ("tag", Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => pairs.push(("tag", s.clone())),
                        _ => errors.push((format!("tag[{i}]"), "must be a string".to_owned())),
                    }
                }
            }
            (k, v) => match scalar(v) {
                Some(s) => pairs.push((k, s)),
                None => errors.push((key.clone(), "must be a string or a number".to_owned())),
            },
        }
    }
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, NON_ALPHANUMERIC)))
        .collect();
    Ok(if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    })
}

/// Runs tool `name` with `args` as the owner of `token`. Every outcome is a
/// tool result: success with the structured answer, or a tool error.
pub async fn call(api: &ApiClient, token: &str, name: &str, args: JsonObject) -> CallToolResult {
    match dispatch(api, token, name, args).await {
        Ok(result) | Err(result) => result,
    }
}

async fn dispatch(
    api: &ApiClient,
    token: &str,
    name: &str,
    mut args: JsonObject,
) -> Result<CallToolResult, CallToolResult> {
    let (req, shape) = match name {
        "create_task" => {
            let key = match args.remove("idempotency_key") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s),
                Some(_) => {
                    return Err(invalid(vec![(
                        "idempotency_key".into(),
                        "must be a string".into(),
                    )]))
                }
            };
            let mut r = ApiRequest::new(Method::POST, "/tasks".to_owned());
            r.body = Some(Value::Object(args));
            r.idempotency_key = key;
            (r, Shape::Body)
        }
        "list_tasks" => (
            ApiRequest::new(Method::GET, format!("/tasks{}", list_query(&args)?)),
            Shape::Body,
        ),
        "get_task" => {
            let id = take_id(&mut args)?;
            reject_rest(&args)?;
            (
                ApiRequest::new(Method::GET, format!("/tasks/{id}")),
                Shape::Body,
            )
        }
        "update_task" => {
            let id = take_id(&mut args)?;
            let if_version = take_if_version(&mut args)?;
            let mut r = ApiRequest::new(Method::PATCH, format!("/tasks/{id}"));
            r.body = Some(Value::Object(args));
            r.if_match = if_version;
            (r, Shape::Body)
        }
        "snooze_reminder" => {
            let id = take_id(&mut args)?;
            let reminder = match args.remove("reminder_id") {
                Some(Value::String(s)) => Uuid::parse_str(&s).map_err(|_| {
                    invalid(vec![(
                        "reminder_id".into(),
                        "must be a reminder id (a UUID)".into(),
                    )])
                })?,
                _ => {
                    return Err(invalid(vec![(
                        "reminder_id".into(),
                        "is required: a reminder id (a UUID string)".into(),
                    )]))
                }
            };
            let if_version = take_if_version(&mut args)?;
            let mut r = ApiRequest::new(
                Method::POST,
                format!("/tasks/{id}/reminders/{reminder}/snooze"),
            );
            // `for` / `until` go to the API as sent: its validation names the field.
            r.body = Some(Value::Object(args));
            r.if_match = if_version;
            (r, Shape::Body)
        }
        "list_notifications" => (
            ApiRequest::new(
                Method::GET,
                format!("/notifications{}", notification_query(&args)?),
            ),
            Shape::Body,
        ),
        "mark_notification_read" => {
            let id = take_id(&mut args)?;
            reject_rest(&args)?;
            (
                ApiRequest::new(Method::POST, format!("/notifications/{id}/read")),
                Shape::Body,
            )
        }
        "preview_recurrence" => {
            let mut r = ApiRequest::new(Method::POST, "/recurrence/preview".to_owned());
            r.body = Some(Value::Object(args));
            (r, Shape::Body)
        }
        "complete_task" | "reopen_task" | "delete_task" => {
            let id = take_id(&mut args)?;
            let if_version = take_if_version(&mut args)?;
            reject_rest(&args)?;
            let (method, path, shape) = match name {
                "complete_task" => (Method::POST, format!("/tasks/{id}/complete"), Shape::Body),
                "reopen_task" => (Method::POST, format!("/tasks/{id}/reopen"), Shape::Body),
                _ => (Method::DELETE, format!("/tasks/{id}"), Shape::Deleted(id)),
            };
            let mut r = ApiRequest::new(method, path);
            r.if_match = if_version;
            (r, shape)
        }
        _ => {
            return Err(problem_result(
                404,
                json!({
                    "type": "urn:taskflow:problem:unknown-tool",
                    "title": "Not Found",
                    "detail": format!("there is no tool {name:?}; available: {}", TOOL_NAMES.join(", ")),
                }),
            ))
        }
    };
    send(api, token, req, shape).await
}

/// What a successful answer becomes.
enum Shape {
    /// The API's answer as it is (a task, a page, a preview).
    Body,
    Deleted(Uuid),
}

async fn send(
    api: &ApiClient,
    token: &str,
    req: ApiRequest,
    shape: Shape,
) -> Result<CallToolResult, CallToolResult> {
    match api.send(token, req).await {
        Ok(answer) => Ok(CallToolResult::structured(match shape {
            Shape::Body => answer.body,
            Shape::Deleted(id) => json!({"id": id, "deleted": true}),
        })),
        Err(ApiError::Refused { status, problem }) => Err(problem_result(status.as_u16(), problem)),
        Err(e) => {
            tracing::warn!(error = %e, "API call failed");
            Err(problem_result(
                503,
                json!({
                    "type": "urn:taskflow:problem:api-unreachable",
                    "title": "Service Unavailable",
                    "detail": e.to_string(),
                }),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_tool_has_an_object_input_schema_and_an_output_schema() {
        let tools = list().unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOL_NAMES);
        for t in &tools {
            assert_eq!(
                t.input_schema.get("type"),
                Some(&json!("object")),
                "{}",
                t.name
            );
            assert!(t.output_schema.is_some(), "{}", t.name);
            assert!(t.description.as_deref().is_some_and(|d| d.len() > 40));
        }
        let create = &tools[0].input_schema;
        assert_eq!(create["required"], json!(["title"]));
        assert_eq!(create["additionalProperties"], json!(false));
        assert_eq!(create["properties"]["title"]["maxLength"], json!(500));
        // The API refuses `priority: null`: optional, not nullable.
        assert_eq!(
            create["properties"]["priority"]["$ref"],
            json!("#/$defs/Priority")
        );
        assert!(create["properties"]["priority"].get("anyOf").is_none());
        assert_eq!(
            create["properties"]["description"]["type"],
            json!(["string", "null"])
        );
    }

    #[test]
    fn list_filters_become_an_encoded_query() {
        let args = json!({"status": "open", "tag": ["a b", "c&d"], "limit": 5, "q": null});
        let q = list_query(args.as_object().unwrap()).unwrap();
        assert_eq!(q, "?limit=5&status=open&tag=a%20b&tag=c%26d");
        let bad = json!({"tag": [1], "nope": "x", "limit": [1]});
        let err = list_query(bad.as_object().unwrap()).unwrap_err();
        let fields: Vec<&str> = err.structured_content.as_ref().unwrap()["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["limit", "nope", "tag[0]"]);
    }

    #[test]
    fn ids_that_are_not_uuids_never_reach_a_path() {
        let mut args = json!({"id": "../../auth/login"})
            .as_object()
            .unwrap()
            .clone();
        let err = take_id(&mut args).unwrap_err();
        assert_eq!(err.is_error, Some(true));
        assert_eq!(err.structured_content.unwrap()["errors"][0]["field"], "id");
    }

    #[test]
    fn problems_keep_their_field_errors() {
        let r = problem_result(
            422,
            json!({"type": "urn:taskflow:problem:validation", "title": "Unprocessable Entity",
                   "status": 422, "detail": "the request is invalid",
                   "errors": [{"field": "due_at", "reason": "needs an offset"}]}),
        );
        assert_eq!(r.is_error, Some(true));
        let text = r.content[0].as_text().unwrap().text.clone();
        assert!(text.contains("- due_at: needs an offset"), "{text}");
        assert_eq!(
            r.structured_content.unwrap()["errors"][0]["field"],
            "due_at"
        );
    }
}
