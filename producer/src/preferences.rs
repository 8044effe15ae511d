//! `GET /preferences` and `PUT /preferences`: the caller's notification preferences (zone,
//! quiet hours, channels per kind of event). The model is `taskflow_infra::preferences`,
//! shared with the notifier that routes by it.

use axum::{extract::State, Json};
use chrono::NaiveTime;
use serde_json::Value;
use sqlx::PgPool;
use taskflow_infra::preferences::{self, channels_json, Preferences};
use uuid::Uuid;

use crate::{
    app::AppState,
    auth::{ReadNotifications, Scoped, SessionUser},
    extract::JsonBody,
    problem::{ApiError, FieldError, Problem},
};

/// The user's stored preferences, or the defaults.
pub async fn load(pool: &PgPool, user_id: Uuid) -> Result<Preferences, sqlx::Error> {
    let row: Option<(String, Option<NaiveTime>, Option<NaiveTime>, Value)> = sqlx::query_as(
        "SELECT time_zone, quiet_start, quiet_end, channels \
         FROM notification_preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row
        .map(|(tz, start, end, channels)| preferences::from_row(&tz, start, end, &channels))
        .unwrap_or_default())
}

/// The caller's notification preferences, every kind with its effective channels.
#[utoipa::path(
    get, path = "/preferences", tag = "preferences",
    responses((status = 200, description = "The preferences (defaults until changed)", body = PreferencesBody)),
    security(("bearer" = []))
)]
pub async fn get_preferences(
    State(state): State<AppState>,
    user: Scoped<ReadNotifications>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(load(&state.pool, user.user_id).await?.to_json()))
}

/// Replace the caller's notification preferences; an absent field takes its default.
///
/// `time_zone`: an IANA zone (quiet hours are in it). `quiet_hours`: `{"start": "22:00",
/// "end": "07:00"}` (`HH:MM` or `HH:MM:SS`; spanning midnight is fine; equal ends are no
/// window) or `null`: webhook
/// and email deliveries planned inside it are held and released together at its end (one
/// digest mail); reminders of urgent tasks are never held; the inbox and the live feed
/// record at once. `channels`: per kind (`task.created`, ..., `reminder.due`) the channels
/// among `inbox`, `live`, `webhook`, `email`; kinds not named keep their defaults.
#[utoipa::path(
    put, path = "/preferences", tag = "preferences",
    request_body = PreferencesBody,
    responses(
        (status = 200, description = "Stored; the effective preferences", body = PreferencesBody),
        (status = 403, description = "Called with a personal access token: preferences are changed with the login token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn put_preferences(
    State(state): State<AppState>,
    user: SessionUser,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let prefs = preferences::parse(&body.value).map_err(|errors| {
        ApiError::Validation(
            errors
                .into_iter()
                .map(|e| FieldError::new(e.field, e.reason))
                .collect(),
        )
    })?;
    sqlx::query(
        "INSERT INTO notification_preferences (user_id, time_zone, quiet_start, quiet_end, channels) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (user_id) DO UPDATE SET time_zone = EXCLUDED.time_zone, \
             quiet_start = EXCLUDED.quiet_start, quiet_end = EXCLUDED.quiet_end, \
             channels = EXCLUDED.channels, updated_at = now()",
    )
    .bind(user.user_id)
    .bind(prefs.time_zone.name())
    .bind(prefs.quiet.map(|q| q.start))
    .bind(prefs.quiet.map(|q| q.end))
    .bind(channels_json(&prefs))
    .execute(&state.pool)
    .await?;
    Ok(Json(prefs.to_json()))
}

/// The preferences document (documentation; the exact schema is in [`crate::openapi`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PreferencesBody {
    time_zone: String,
    quiet_hours: Option<Value>,
    channels: Value,
}
