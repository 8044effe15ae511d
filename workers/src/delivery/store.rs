//! The delivery log's SQL: planning in the notifier's transaction, claiming with a lease,
//! and recording an attempt with its consequences in one transaction.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection, PgPool};
use taskflow_infra::feed::{self, FeedEntry};
use taskflow_infra::webhook::NOTIFY_CHANNEL;
use uuid::Uuid;

use super::email::PlannedEmail;
use super::plan::WebhookMessage;

/// Plans `message` for every enabled endpoint of `user_id`, inside the caller's transaction,
/// first attempt at `not_before` (quiet hours) or at once. Returns how many deliveries are
/// new (a redelivered event plans none).
pub async fn plan(
    tx: &mut PgConnection,
    user_id: Uuid,
    event_id: Uuid,
    message: &WebhookMessage,
    not_before: Option<DateTime<Utc>>,
) -> Result<u64, sqlx::Error> {
    let endpoints: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM webhook_endpoints \
         WHERE user_id = $1 AND enabled AND deleted_at IS NULL",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut planned = 0;
    for endpoint in endpoints {
        planned += sqlx::query(
            "INSERT INTO deliveries (id, user_id, channel, target, endpoint_id, event_id, kind, \
                 payload, next_attempt_at) \
             VALUES ($1, $2, 'webhook', $3, $4, $5, $6, $7, coalesce($8, now())) \
             ON CONFLICT (channel, target, event_id) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(user_id)
        .bind(endpoint.to_string())
        .bind(endpoint)
        .bind(event_id)
        .bind(message.kind)
        .bind(&message.body)
        .bind(not_before)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    if planned > 0 {
        // Delivered at commit: the senders wake for what this transaction planned.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(planned)
}

/// Plans the reminder mail `email` to the address of `user_id`, inside the caller's
/// transaction: one `email` delivery, unique per (address, event), sent from
/// `email.not_before` (now when `None`). Returns how many deliveries are new (0 for a
/// redelivered event, or a user without an address).
pub async fn plan_email(
    tx: &mut PgConnection,
    user_id: Uuid,
    event_id: Uuid,
    email: &PlannedEmail,
) -> Result<u64, sqlx::Error> {
    let payload =
        serde_json::to_string(&email.payload).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let planned = sqlx::query(
        "INSERT INTO deliveries (id, user_id, channel, target, endpoint_id, event_id, kind, payload, next_attempt_at) \
         SELECT $1, u.id, 'email', u.email, NULL, $2, $3, $4, coalesce($5, now()) \
         FROM users u WHERE u.id = $6 AND u.email <> '' \
         ON CONFLICT (channel, target, event_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(event_id)
    .bind(super::email::KIND)
    .bind(payload)
    .bind(email.not_before)
    .bind(user_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if planned > 0 {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(planned)
}

/// A claimed delivery with what sending it needs.
#[derive(Debug, Clone, FromRow)]
pub struct Claimed {
    pub id: Uuid,
    pub user_id: Uuid,
    /// `webhook` or `email`.
    pub channel: String,
    /// The endpoint id (webhook) or the address (email).
    pub target: String,
    pub endpoint_id: Option<Uuid>,
    pub kind: String,
    pub payload: String,
    /// This attempt's number (the claim counted it).
    pub attempts: i32,
    pub url: Option<String>,
    pub secret: Option<String>,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// The endpoint is enabled and not deleted (always true for email).
    pub live: bool,
}

/// What a claim may take.
#[derive(Debug, Clone)]
pub struct ClaimLimits {
    /// Deliveries (webhook) or mails (email) in flight per target.
    pub per_target: i64,
    /// Rows in all.
    pub limit: i64,
    /// Most email rows of one address in one claim: they become one digest mail.
    pub digest_max: i64,
    /// The channels this sender delivers (email only when SMTP is configured).
    pub channels: Vec<String>,
    pub lease: Duration,
}

/// Claims due deliveries of `limits.channels`, each leased for `limits.lease`. Webhooks:
/// per target at most `per_target` minus what this process has in flight for it
/// (`targets[i]` has `used[i]`). Email: every due row of an address with a free slot, up
/// to `digest_max`, so rows due together are claimed (and mailed) together. At most
/// `limit` rows in all. Only the `16 * limit` earliest due rows of targets with a free
/// slot are ranked, so a claim costs the same with a backlog of millions. Concurrent
/// claimers never get the same row: the UPDATE re-checks the lease on the row it locks.
pub async fn claim_with(
    pool: &PgPool,
    targets: &[String],
    used: &[i32],
    limits: &ClaimLimits,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "WITH busy AS ( \
             SELECT * FROM unnest($1::text[], $2::int[]) AS b(target, used) \
         ), due AS ( \
             SELECT d.id, d.target, d.channel, d.endpoint_id, d.next_attempt_at FROM deliveries d \
             WHERE d.state = 'pending' AND d.next_attempt_at <= now() \
               AND (d.leased_until IS NULL OR d.leased_until < now()) \
               AND d.channel = ANY($6) \
               AND NOT EXISTS (SELECT 1 FROM busy b WHERE b.target = d.target AND b.used >= $3) \
             ORDER BY d.next_attempt_at \
             LIMIT $8 \
         ), ranked AS ( \
             SELECT id, target, channel, endpoint_id, \
                    row_number() OVER (PARTITION BY channel, target ORDER BY next_attempt_at, id) AS rn \
             FROM due \
         ), picked AS ( \
             SELECT r.id, r.endpoint_id FROM ranked r LEFT JOIN busy b ON b.target = r.target \
             WHERE CASE WHEN r.channel = 'email' \
                        THEN coalesce(b.used, 0) < $3 AND r.rn <= $7 \
                        ELSE r.rn <= $3 - coalesce(b.used, 0) END \
             ORDER BY r.rn LIMIT $4 \
         ) \
         UPDATE deliveries d \
         SET leased_until = now() + make_interval(secs => $5), attempts = d.attempts + 1 \
         FROM picked LEFT JOIN webhook_endpoints e ON e.id = picked.endpoint_id \
         WHERE d.id = picked.id AND d.state = 'pending' \
           AND (d.leased_until IS NULL OR d.leased_until < now()) \
         RETURNING d.id, d.user_id, d.channel, d.target, d.endpoint_id, d.kind, d.payload, d.attempts, \
                   e.url, e.secret, e.previous_secret, e.previous_secret_until, \
                   CASE WHEN d.channel = 'webhook' \
                        THEN coalesce(e.enabled AND e.deleted_at IS NULL, false) \
                        ELSE true END AS live",
    )
    .bind(targets)
    .bind(used)
    .bind(limits.per_target)
    .bind(limits.limit)
    .bind(limits.lease.as_secs_f64())
    .bind(&limits.channels)
    .bind(limits.digest_max)
    .bind(limits.limit.saturating_mul(16))
    .fetch_all(pool)
    .await
}

/// The earliest instant a pending delivery becomes claimable: the first due one not leased,
/// or the first lease to run out. Two index lookups, whatever the backlog. Only `channels`
/// count: rows of a channel this sender does not deliver must not wake it.
pub async fn next_due(
    pool: &PgPool,
    channels: &[String],
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT least( \
             (SELECT next_attempt_at FROM deliveries \
              WHERE state = 'pending' AND channel = ANY($1) \
                AND (leased_until IS NULL OR leased_until < now()) \
              ORDER BY next_attempt_at LIMIT 1), \
             (SELECT min(leased_until) FROM deliveries \
              WHERE state = 'pending' AND channel = ANY($1) AND leased_until IS NOT NULL))",
    )
    .bind(channels)
    .fetch_one(pool)
    .await
}

/// One attempt's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    pub status: Option<i32>,
    pub error: Option<String>,
    pub succeeded: bool,
}

/// What recording an attempt decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Succeeded,
    /// Another attempt at this instant.
    Retry(DateTime<Utc>),
    /// Attempts exhausted.
    Failed,
    /// The endpoint failed for too long and is now disabled (its owner told): the user
    /// whose feed got the notice.
    Disabled {
        user_id: Uuid,
    },
    /// The lease was lost to another sender meanwhile: nothing recorded.
    Lost,
}

/// Records `attempt` of `delivery` and its consequences in one transaction: the attempt
/// row; the delivery succeeded, rescheduled at `retry_at` or failed (`retry_at` `None`);
/// the endpoint's failure run; and, once it lasted `disable_after`, the endpoint disabled,
/// its pending deliveries cancelled, an inbox notification and a feed entry for its owner.
pub async fn record(
    pool: &PgPool,
    delivery: &Claimed,
    attempt: &Attempt,
    retry_at: Option<DateTime<Utc>>,
    disable_after: Duration,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Still ours: not re-claimed by another sender after our lease ran out.
    let ours: Option<i32> = sqlx::query_scalar(
        "SELECT attempts FROM deliveries WHERE id = $1 AND state = 'pending' FOR UPDATE",
    )
    .bind(delivery.id)
    .fetch_optional(&mut *tx)
    .await?;
    if ours != Some(delivery.attempts) {
        return Ok(Recorded::Lost);
    }
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, started_at, latency_ms, status, error, succeeded) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(delivery.id)
    .bind(delivery.attempts)
    .bind(attempt.started_at)
    .bind(attempt.latency_ms)
    .bind(attempt.status)
    .bind(&attempt.error)
    .bind(attempt.succeeded)
    .execute(&mut *tx)
    .await?;
    let outcome = if attempt.succeeded {
        sqlx::query(
            "UPDATE deliveries SET state = 'succeeded', completed_at = now(), leased_until = NULL \
             WHERE id = $1",
        )
        .bind(delivery.id)
        .execute(&mut *tx)
        .await?;
        if let Some(endpoint) = delivery.endpoint_id {
            sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1")
                .bind(endpoint)
                .execute(&mut *tx)
                .await?;
        }
        Recorded::Succeeded
    } else {
        match retry_at {
            Some(at) => {
                sqlx::query(
                    "UPDATE deliveries SET next_attempt_at = $2, leased_until = NULL WHERE id = $1",
                )
                .bind(delivery.id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "UPDATE deliveries SET state = 'failed', completed_at = now(), leased_until = NULL \
                     WHERE id = $1",
                )
                .bind(delivery.id)
                .execute(&mut *tx)
                .await?;
            }
        }
        let disabled = match delivery.endpoint_id {
            Some(endpoint) => disable_if_failing_too_long(&mut tx, endpoint, disable_after).await?,
            None => None,
        };
        match (disabled, retry_at) {
            (Some(user_id), _) => Recorded::Disabled { user_id },
            (None, Some(at)) => Recorded::Retry(at),
            (None, None) => Recorded::Failed,
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

#[derive(Debug, FromRow)]
struct Disabled {
    user_id: Uuid,
    url: String,
    since: DateTime<Utc>,
}

/// Starts or continues the endpoint's failure run; disables it once the run is
/// `disable_after` long. Returns its owner when it was disabled now.
async fn disable_if_failing_too_long(
    tx: &mut PgConnection,
    endpoint: Uuid,
    disable_after: Duration,
) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now()) WHERE id = $1",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    let disabled: Option<Disabled> = sqlx::query_as(
        "UPDATE webhook_endpoints \
         SET enabled = false, disabled_at = now(), \
             disabled_reason = 'failing continuously since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         WHERE id = $1 AND enabled AND failing_since <= now() - make_interval(secs => $2) \
         RETURNING user_id, url, failing_since AS since",
    )
    .bind(endpoint)
    .bind(disable_after.as_secs_f64())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(d) = disabled else {
        return Ok(None);
    };
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', completed_at = now(), leased_until = NULL \
         WHERE endpoint_id = $1 AND state = 'pending'",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    let notification = Uuid::now_v7();
    let event_id = Uuid::now_v7();
    let now = Utc::now();
    let title = "A webhook endpoint was disabled".to_owned();
    let body = format!(
        "{} failed every delivery since {}; it is disabled. Fix the receiver, then enable it \
         again (POST /webhooks/{endpoint}/enable).",
        d.url,
        d.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let data = serde_json::json!({"endpoint_id": endpoint, "url": d.url});
    sqlx::query(
        "INSERT INTO notifications (id, user_id, event_id, kind, task_id, title, body, data, created_at) \
         VALUES ($1, $2, $3, 'webhook_disabled', NULL, $4, $5, $6, $7)",
    )
    .bind(notification)
    .bind(d.user_id)
    .bind(event_id)
    .bind(&title)
    .bind(&body)
    .bind(&data)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    feed::append(
        &mut *tx,
        &FeedEntry {
            user_id: d.user_id,
            event_id,
            kind: "WebhookDisabled".to_owned(),
            task_id: None,
            occurred_at: now,
            data: serde_json::json!({
                "type": "WebhookDisabled",
                "endpoint_id": endpoint,
                "url": d.url,
                "notification_id": notification,
            }),
        },
    )
    .await?;
    Ok(Some(d.user_id))
}

/// Cancels a claimed delivery whose endpoint was deleted or disabled meanwhile.
pub async fn cancel(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', completed_at = now(), leased_until = NULL \
         WHERE id = $1 AND state = 'pending'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}
