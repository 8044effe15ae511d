//! HTTP handlers: extract, call the store, map with the pure functions.

use axum::{
    extract::{Query, State},
    http::Uri,
    Json,
};

use super::{
    model::{dedupe, event_response, AuditEventResponse, AuditPage, AuditRecord, TaskHistory},
    query::parse_audit_query,
    store,
};
use crate::{
    app::AppState,
    auth::{ReadTasks, Scoped},
    extract::TaskId,
    problem::{ApiError, Problem},
};

fn responses(records: Vec<AuditRecord>) -> Result<Vec<AuditEventResponse>, ApiError> {
    dedupe(records)
        .iter()
        .map(|r| event_response(r).map_err(ApiError::from))
        .collect()
}

/// The audited events of one task, oldest first (version, then time).
/// A deleted task keeps its history. Events reach the audit log
/// asynchronously, so the newest change can be missing for a moment.
#[utoipa::path(
    get, path = "/tasks/{id}/history", tag = "audit",
    params(("id" = uuid::Uuid, Path, description = "Task id")),
    responses(
        (status = 200, body = TaskHistory),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "A task the caller never owned", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn task_history(
    State(state): State<AppState>,
    user: Scoped<ReadTasks>,
    TaskId(id): TaskId,
) -> Result<Json<TaskHistory>, ApiError> {
    let records = store::task_history(&state.pool, user.user_id, id).await?;
    // No rows: either not audited yet (200, empty) or not theirs (404,
    // whether it is someone else's or does not exist).
    if records.is_empty() && !store::task_ever_owned(&state.pool, user.user_id, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(TaskHistory {
        task_id: id,
        items: responses(records)?,
    }))
}

/// Query parameters of `GET /audit` (documentation).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditParamsDoc {
    /// RFC 3339 with offset; events at or after this instant.
    from: Option<String>,
    /// RFC 3339 with offset; events strictly before this instant.
    to: Option<String>,
    /// `TaskCreated`, `TaskUpdated`, `TaskCompleted`, `TaskReopened`,
    /// `TaskDeleted` or `ReminderDue`; repeat to accept several.
    #[param(rename = "type")]
    r#type: Option<String>,
    /// Page size, 1 to 200 (default 50).
    limit: Option<i64>,
    /// `next_cursor` of the previous page: continue after it.
    cursor: Option<String>,
}

/// The caller's own audited events in the order the audit log recorded
/// them, with the task snapshot after each event (same item shape as the
/// task history). Following `next_cursor` never misses an event, including
/// one recorded late: an event appears once it is final and always after
/// every position already handed out.
#[utoipa::path(
    get, path = "/audit", tag = "audit",
    params(AuditParamsDoc),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "Unparseable query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid from/to (naive or malformed), type, limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list_audit(
    State(state): State<AppState>,
    user: Scoped<ReadTasks>,
    uri: Uri,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))?;
    let query = parse_audit_query(&pairs).map_err(ApiError::Validation)?;
    let rows = store::list_events(&state.pool, user.user_id, &query).await?;
    // The position after this page, even on what is the last page for now:
    // rows recorded later come after it, so a client resumes from there.
    let next_cursor = rows.last().map(|(position, _)| position.encode());
    let records = rows.into_iter().map(|(_, record)| record).collect();
    Ok(Json(AuditPage {
        items: responses(records)?,
        next_cursor,
    }))
}
