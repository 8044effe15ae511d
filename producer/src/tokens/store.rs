//! Personal access token persistence (sqlx runtime queries).

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::model::{NewToken, PresentedToken, Scope, StoredToken, TokenSecret};

#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("token {id} has an unknown stored scope {scope:?}")]
    Corrupt { id: Uuid, scope: String },
}

#[derive(Debug, FromRow)]
struct TokenRow {
    id: Uuid,
    name: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

fn parse_scopes(id: Uuid, raw: &[String]) -> Result<Vec<Scope>, TokenStoreError> {
    raw.iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| TokenStoreError::Corrupt {
                id,
                scope: s.clone(),
            })
        })
        .collect()
}

impl TryFrom<TokenRow> for StoredToken {
    type Error = TokenStoreError;

    fn try_from(r: TokenRow) -> Result<Self, TokenStoreError> {
        Ok(StoredToken {
            scopes: parse_scopes(r.id, &r.scopes)?,
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        })
    }
}

const COLUMNS: &str = "id, name, scopes, created_at, expires_at, last_used_at";

/// Live (not revoked) tokens of `user_id`; the count bounds creation.
pub async fn count_live<'e>(ex: impl PgExecutor<'e>, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM personal_access_tokens WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .fetch_one(ex)
    .await
}

pub async fn insert<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    new: &NewToken,
    secret: &TokenSecret,
) -> Result<StoredToken, TokenStoreError> {
    let scopes: Vec<&str> = new.scopes.iter().map(|s| s.as_str()).collect();
    let row: TokenRow = sqlx::query_as(&format!(
        "INSERT INTO personal_access_tokens (id, user_id, name, lookup, secret_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(days => $7::int))
         RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(user_id)
    .bind(&new.name)
    .bind(&secret.lookup)
    .bind(secret.hash.as_slice())
    .bind(&scopes)
    // NULL days make a NULL expiry: the token never expires.
    .bind(new.expires_in_days.and_then(|d| i32::try_from(d).ok()))
    .fetch_one(ex)
    .await?;
    row.try_into()
}

pub async fn list_live<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
) -> Result<Vec<StoredToken>, TokenStoreError> {
    let rows: Vec<TokenRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM personal_access_tokens
         WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC, id DESC"
    ))
    .bind(user_id)
    .fetch_all(ex)
    .await?;
    rows.into_iter().map(StoredToken::try_from).collect()
}

/// Revokes a live token of `user_id`; false when there is none with that id
/// (unknown, another user's, or already revoked).
pub async fn revoke<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    id: Uuid,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE personal_access_tokens SET revoked_at = now()
         WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(id)
    .bind(user_id)
    .execute(ex)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Whose token this is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub token_id: Uuid,
    pub user_id: Uuid,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, FromRow)]
struct GrantRow {
    id: Uuid,
    user_id: Uuid,
    secret_hash: Vec<u8>,
    scopes: Vec<String>,
    stale_use: bool,
}

/// The grant of a presented token when it is known, its secret matches, and
/// it is neither revoked nor expired: read on every request, so revocation
/// is immediate. Records `last_used_at` at most once a minute (a write per
/// request would turn every read into a write).
pub async fn find_live(
    pool: &PgPool,
    presented: &PresentedToken,
) -> Result<Option<TokenGrant>, TokenStoreError> {
    let row: Option<GrantRow> = sqlx::query_as(
        "SELECT id, user_id, secret_hash, scopes,
                (last_used_at IS NULL OR last_used_at < now() - interval '1 minute') AS stale_use
         FROM personal_access_tokens
         WHERE lookup = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
    )
    .bind(&presented.lookup)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    // The lookup id is not secret (it only finds the row); the secret's hash
    // is compared in constant time so its timing reveals nothing.
    if !bool::from(row.secret_hash.as_slice().ct_eq(presented.hash.as_slice())) {
        return Ok(None);
    }
    if row.stale_use {
        sqlx::query("UPDATE personal_access_tokens SET last_used_at = now() WHERE id = $1")
            .bind(row.id)
            .execute(pool)
            .await?;
    }
    Ok(Some(TokenGrant {
        scopes: parse_scopes(row.id, &row.scopes)?,
        token_id: row.id,
        user_id: row.user_id,
    }))
}

/// Whether token `id` is still usable, for a request that outlives its start (a live
/// stream re-checks at each heartbeat): `None` when there is no such token, else
/// `(revoked, expired)`.
pub async fn status<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<(bool, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT revoked_at IS NOT NULL, expires_at IS NOT NULL AND expires_at <= now()
         FROM personal_access_tokens WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(ex)
    .await
}
