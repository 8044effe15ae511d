//! HTTP handlers: extract, call the service, shape the response.

use axum::{
    extract::{Query, State},
    http::{header, HeaderValue, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json,
};
use sha2::{Digest, Sha256};

use super::{
    model::{CreateTaskRequest, PatchTaskRequest, Task, TaskPage, TaskResponse},
    service::{self, DeleteScope, Idempotency, Transition, WriteOutcome, Writer},
    store,
    validate::{parse_list_query, parse_snooze, Cursor},
};
use crate::{
    app::AppState,
    auth::{ReadTasks, Scoped, WriteTasks},
    extract::{IdempotencyKey, JsonBody, Precondition, ReminderPath, RequestContext, TaskId},
    problem::{ApiError, FieldError, Problem},
};

fn etag_value(version: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

fn task_response(status: StatusCode, task: &Task) -> Response {
    let mut resp = (status, Json(TaskResponse::from(task))).into_response();
    if let Some(v) = etag_value(task.version) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    resp
}

fn location(id: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("/tasks/{id}")).ok()
}

/// Create a task.
#[utoipa::path(
    post, path = "/tasks", tag = "tasks",
    request_body = CreateTaskRequest,
    params(("Idempotency-Key" = Option<String>, Header,
            description = "Retries with the same key and body return the first response and create nothing")),
    responses(
        (status = 201, description = "Created", body = TaskResponse,
         headers(("ETag" = String, description = "\"<version>\""), ("Location" = String))),
        (status = 400, description = "Malformed JSON or Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not application/json", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key already used with another request, or the task it created has been deleted", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create_task(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    let idem = key.map(|key| Idempotency {
        key,
        request_hash: body.sha256.clone(),
    });
    let outcome = service::create(&state, &writer, &body, idem.as_ref()).await?;
    Ok(write_response(outcome, StatusCode::CREATED, true))
}

/// The answer of a write: the task with its ETag (and `Location` for a
/// create), or the stored answer of a replay marked `Idempotent-Replayed`.
fn write_response(outcome: WriteOutcome, status: StatusCode, with_location: bool) -> Response {
    match outcome {
        WriteOutcome::Fresh(task) => {
            let mut resp = task_response(status, &task);
            if with_location {
                if let Some(v) = location(&task.id.to_string()) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
            }
            resp
        }
        WriteOutcome::Replayed { status, body } => {
            let version = body.get("version").and_then(|v| v.as_i64());
            let id = body.get("id").and_then(|v| v.as_str()).map(str::to_owned);
            let mut resp = (status, Json(body)).into_response();
            let headers = resp.headers_mut();
            if let Some(v) = version.and_then(etag_value) {
                headers.insert(header::ETAG, v);
            }
            if with_location {
                if let Some(v) = id.as_deref().and_then(location) {
                    headers.insert(header::LOCATION, v);
                }
            }
            headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
            resp
        }
    }
}

/// The fingerprint of a body-less transition: its method and path, so the
/// same key on another task or action is a reuse, not a retry.
fn transition_idempotency(
    key: Option<String>,
    id: uuid::Uuid,
    action: &str,
) -> Option<Idempotency> {
    key.map(|key| Idempotency {
        key,
        request_hash: hex::encode(Sha256::digest(format!("POST /tasks/{id}/{action}"))),
    })
}

/// Get one task; a recurring one with `next_occurrences`.
#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = uuid::Uuid, Path, description = "Task id")),
    responses(
        (status = 200, body = TaskResponse, headers(("ETag" = String))),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown, deleted, or another user's task", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get_task(
    State(state): State<AppState>,
    user: Scoped<ReadTasks>,
    TaskId(id): TaskId,
) -> Result<Response, ApiError> {
    let task = service::get(&state, user.user_id, id).await?;
    let next = service::next_occurrences(&state, &task, service::now_micros()).await?;
    let mut body = TaskResponse::from(&task);
    body.next_occurrences = Some(next);
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    if let Some(v) = etag_value(task.version) {
        resp.headers_mut().insert(header::ETAG, v);
    }
    Ok(resp)
}

/// Query parameters of `GET /tasks` (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParamsDoc {
    /// `open` or `completed`.
    status: Option<String>,
    /// Tasks carrying this tag; repeat to require several.
    tag: Option<String>,
    /// `low`, `medium`, `high` or `urgent`.
    priority: Option<String>,
    /// RFC 3339 with offset; due strictly after.
    due_after: Option<String>,
    /// RFC 3339 with offset; due strictly before.
    due_before: Option<String>,
    /// Case-insensitive substring of title or description.
    q: Option<String>,
    /// Instances of this recurring series only (`series_id` of a task).
    series_id: Option<uuid::Uuid>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// List tasks, oldest first, filtered (all filters AND together).
#[utoipa::path(
    get, path = "/tasks", tag = "tasks",
    params(ListParamsDoc),
    responses(
        (status = 200, body = TaskPage),
        (status = 400, description = "Unparseable query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid filter, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_tasks(
    State(state): State<AppState>,
    user: Scoped<ReadTasks>,
    uri: Uri,
) -> Result<Json<TaskPage>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))?;
    let query = parse_list_query(&pairs).map_err(ApiError::Validation)?;
    let mut tasks = store::list_tasks(&state.pool, user.user_id, &query).await?;
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let next_cursor = if tasks.len() > limit {
        tasks.truncate(limit);
        tasks.last().map(|t| {
            Cursor {
                created_at: t.created_at,
                id: t.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(TaskPage {
        items: tasks.iter().map(TaskResponse::from).collect(),
        next_cursor,
    }))
}

/// Change fields (merge patch). A patch that changes nothing returns 200
/// without a new version or event.
#[utoipa::path(
    patch, path = "/tasks/{id}", tag = "tasks",
    request_body(content = PatchTaskRequest, content_type = "application/json"),
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header, description = "\"<version>\"")),
    responses(
        (status = 200, body = TaskResponse, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Valid fields, but the task would break a rule that spans fields (e.g. removing `due_at` while a relative reminder exists)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn patch_task(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    TaskId(id): TaskId,
    Precondition(if_match): Precondition,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    let task = service::update(&state, &writer, id, if_match.as_ref(), &body).await?;
    Ok(task_response(StatusCode::OK, &task))
}

/// Delete a task (it reads 404 afterwards); with `scope=series`, its whole series.
#[utoipa::path(
    delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header),
           ("scope" = Option<String>, Query)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete_task(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    TaskId(id): TaskId,
    Precondition(if_match): Precondition,
    uri: Uri,
) -> Result<StatusCode, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))?;
    let scope = parse_delete_scope(&pairs).map_err(ApiError::Validation)?;
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    service::delete(&state, &writer, id, if_match.as_ref(), scope).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `scope=instance` (default) or `scope=series`; any other parameter is refused.
fn parse_delete_scope(pairs: &[(String, String)]) -> Result<DeleteScope, Vec<FieldError>> {
    let mut scope = DeleteScope::Instance;
    let mut errors = Vec::new();
    for (key, value) in pairs {
        match (key.as_str(), value.as_str()) {
            ("scope", "instance") => scope = DeleteScope::Instance,
            ("scope", "series") => scope = DeleteScope::Series,
            ("scope", _) => errors.push(FieldError::new("scope", "must be instance or series")),
            (other, _) => errors.push(FieldError::new(other, "unknown parameter; allowed: scope")),
        }
    }
    if errors.is_empty() {
        Ok(scope)
    } else {
        Err(errors)
    }
}

/// Mark a task completed.
#[utoipa::path(
    post, path = "/tasks/{id}/complete", tag = "tasks",
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header),
           ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, body = TaskResponse, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already completed, or Idempotency-Key already used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn complete_task(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    TaskId(id): TaskId,
    Precondition(if_match): Precondition,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Response, ApiError> {
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    let idem = transition_idempotency(key, id, "complete");
    let outcome = service::transition(
        &state,
        &writer,
        id,
        if_match.as_ref(),
        Transition::Complete,
        idem.as_ref(),
    )
    .await?;
    Ok(write_response(outcome, StatusCode::OK, false))
}

/// Reopen a completed task.
#[utoipa::path(
    post, path = "/tasks/{id}/reopen", tag = "tasks",
    params(("id" = uuid::Uuid, Path), ("If-Match" = Option<String>, Header),
           ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, body = TaskResponse, headers(("ETag" = String))),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already open, or Idempotency-Key already used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn reopen_task(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    TaskId(id): TaskId,
    Precondition(if_match): Precondition,
    IdempotencyKey(key): IdempotencyKey,
) -> Result<Response, ApiError> {
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    let idem = transition_idempotency(key, id, "reopen");
    let outcome = service::transition(
        &state,
        &writer,
        id,
        if_match.as_ref(),
        Transition::Reopen,
        idem.as_ref(),
    )
    .await?;
    Ok(write_response(outcome, StatusCode::OK, false))
}

/// Snooze a reminder: it fires at the new instant (again, if it already fired); `for` zero
/// or an `until` already past rings it at once.
#[utoipa::path(
    post, path = "/tasks/{id}/reminders/{rid}/snooze", tag = "tasks",
    params(("id" = uuid::Uuid, Path), ("rid" = uuid::Uuid, Path),
           ("If-Match" = Option<String>, Header), ("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 200, body = TaskResponse, headers(("ETag" = String))),
        (status = 404, description = "Unknown, deleted, or another user's task; or no such reminder on it", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The task is completed (reopen it first), or Idempotency-Key already used with another request", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "Stale If-Match", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Neither or both of `for` and `until`, a negative or malformed duration, a malformed instant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn snooze_reminder(
    State(state): State<AppState>,
    user: Scoped<WriteTasks>,
    ctx: RequestContext,
    ReminderPath(id, rid): ReminderPath,
    Precondition(if_match): Precondition,
    IdempotencyKey(key): IdempotencyKey,
    body: JsonBody,
) -> Result<Response, ApiError> {
    let snooze = parse_snooze(&body.value).map_err(ApiError::Validation)?;
    let writer = Writer {
        user_id: user.user_id,
        ctx,
    };
    // A retry must send the same body: `for` is relative, so the hash covers the text.
    let idem = key.map(|key| Idempotency {
        key,
        request_hash: hex::encode(Sha256::digest(format!(
            "POST /tasks/{id}/reminders/{rid}/snooze {}",
            body.sha256
        ))),
    });
    let outcome = service::snooze(
        &state,
        &writer,
        id,
        rid,
        if_match.as_ref(),
        snooze,
        idem.as_ref(),
    )
    .await?;
    Ok(write_response(outcome, StatusCode::OK, false))
}
