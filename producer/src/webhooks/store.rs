//! Webhook endpoint persistence and the delivery log, as the API reads and writes them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{FromRow, PgPool};
use taskflow_infra::webhook;
use uuid::Uuid;

use super::model::{Delivery, DeliveryAttempt, NewEndpoint, WebhookEndpoint};

#[derive(Debug, FromRow)]
struct EndpointRow {
    id: Uuid,
    url: String,
    description: String,
    enabled: bool,
    disabled_at: Option<DateTime<Utc>>,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    previous_secret_until: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(r: EndpointRow) -> Self {
        WebhookEndpoint {
            id: r.id,
            url: r.url,
            description: r.description,
            enabled: r.enabled,
            disabled_at: r.disabled_at,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since,
            // A past overlap is no overlap.
            previous_secret_until: r.previous_secret_until.filter(|t| *t > Utc::now()),
            created_at: r.created_at,
        }
    }
}

const COLUMNS: &str = "id, url, description, enabled, disabled_at, disabled_reason, \
                       failing_since, previous_secret_until, created_at";

pub async fn count_live(pool: &PgPool, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM webhook_endpoints WHERE user_id = $1 AND deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(pool)
    .await
}

pub async fn insert(
    pool: &PgPool,
    user_id: Uuid,
    new: &NewEndpoint,
    secret: &str,
) -> Result<WebhookEndpoint, sqlx::Error> {
    let row: EndpointRow = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints (id, user_id, url, description, secret) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(&new.url)
    .bind(&new.description)
    .bind(secret)
    .fetch_one(pool)
    .await?;
    Ok(row.into())
}

pub async fn list(pool: &PgPool, user_id: Uuid) -> Result<Vec<WebhookEndpoint>, sqlx::Error> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM webhook_endpoints \
         WHERE user_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC"
    ))
    .bind(user_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Whether `id` is a live endpoint of `user_id`.
async fn owned(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_endpoints \
                        WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL)",
    )
    .bind(id)
    .bind(user_id)
    .fetch_one(pool)
    .await
}

/// Deletes the endpoint and cancels what it still had to receive. `false`: no such endpoint.
pub async fn delete(pool: &PgPool, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let gone = sqlx::query(
        "UPDATE webhook_endpoints SET deleted_at = now(), enabled = false \
         WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if gone == 0 {
        return Ok(false);
    }
    cancel_pending(&mut tx, id).await?;
    tx.commit().await?;
    Ok(true)
}

async fn cancel_pending(tx: &mut sqlx::PgConnection, endpoint: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', completed_at = now(), leased_until = NULL \
         WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Turns a disabled endpoint back on, its failure run forgotten.
pub async fn enable(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<WebhookEndpoint>, sqlx::Error> {
    let row: Option<EndpointRow> = sqlx::query_as(&format!(
        "UPDATE webhook_endpoints \
         SET enabled = true, disabled_at = NULL, disabled_reason = NULL, failing_since = NULL \
         WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Replaces the secret; the current one keeps signing for `overlap_secs`. Returns the end
/// of the overlap, or `None` when there is no such endpoint.
pub async fn rotate(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
    secret: &str,
    overlap_secs: i64,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE webhook_endpoints \
         SET previous_secret = secret, secret = $3, \
             previous_secret_until = now() + make_interval(secs => $4) \
         WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL \
         RETURNING previous_secret_until",
    )
    .bind(id)
    .bind(user_id)
    .bind(secret)
    .bind(overlap_secs as f64)
    .fetch_optional(pool)
    .await
}

/// Plans a `webhook.test` delivery to the endpoint. `None`: no such endpoint.
pub async fn queue_test(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let enabled: Option<bool> = sqlx::query_scalar(
        "SELECT enabled FROM webhook_endpoints \
         WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL FOR SHARE",
    )
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if enabled.is_none() {
        return Ok(None);
    }
    let delivery = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let now = Utc::now();
    let payload = webhook::body(
        "webhook.test",
        now,
        &json!({"endpoint_id": id, "message": "A test delivery from Taskflow."}),
    );
    sqlx::query(
        "INSERT INTO deliveries (id, user_id, channel, target, endpoint_id, event_id, kind, payload) \
         VALUES ($1, $2, 'webhook', $3, $4, $5, 'webhook.test', $6)",
    )
    .bind(delivery)
    .bind(user_id)
    .bind(id.to_string())
    .bind(id)
    .bind(event_id)
    .bind(&payload)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(webhook::NOTIFY_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(delivery))
}

#[derive(Debug, FromRow)]
struct DeliveryRow {
    id: Uuid,
    event_id: Uuid,
    kind: String,
    state: String,
    next_attempt_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, FromRow)]
struct AttemptRow {
    delivery_id: Uuid,
    attempt: i32,
    started_at: DateTime<Utc>,
    latency_ms: i32,
    status: Option<i32>,
    error: Option<String>,
    succeeded: bool,
}

/// The endpoint's newest deliveries with every attempt. `None`: no such endpoint.
pub async fn deliveries(
    pool: &PgPool,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Vec<Delivery>>, sqlx::Error> {
    if !owned(pool, user_id, id).await? {
        return Ok(None);
    }
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT id, event_id, kind, state, next_attempt_at, created_at, completed_at \
         FROM deliveries WHERE endpoint_id = $1 ORDER BY created_at DESC, id DESC LIMIT 100",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let attempts: Vec<AttemptRow> = sqlx::query_as(
        "SELECT delivery_id, attempt, started_at, latency_ms, status, error, succeeded \
         FROM delivery_attempts WHERE delivery_id = ANY($1) ORDER BY attempt",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let mut by_delivery: HashMap<Uuid, Vec<DeliveryAttempt>> = HashMap::new();
    for a in attempts {
        by_delivery
            .entry(a.delivery_id)
            .or_default()
            .push(DeliveryAttempt {
                attempt: a.attempt,
                started_at: a.started_at,
                latency_ms: a.latency_ms,
                status: a.status,
                error: a.error,
                succeeded: a.succeeded,
            });
    }
    Ok(Some(
        rows.into_iter()
            .map(|r| Delivery {
                webhook_id: webhook::message_id(r.id),
                attempts: by_delivery.remove(&r.id).unwrap_or_default(),
                next_attempt_at: (r.state == "pending").then_some(r.next_attempt_at),
                id: r.id,
                event_id: r.event_id,
                kind: r.kind,
                state: r.state,
                created_at: r.created_at,
                completed_at: r.completed_at,
            })
            .collect(),
    ))
}
