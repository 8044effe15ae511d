//! Who opened a stream, and with what: the credential a stream re-checks at every heartbeat.
//!
//! A stream is opened with `Authorization: Bearer` (a login token or a personal access token
//! with `notifications:read`), or, because `EventSource` cannot set headers, with
//! `?access_token=` holding a *stream token* from `POST /feed/stream-tokens`. A stream token
//! is an HS256 JWT with its own audience, signed with a key derived from the JWT secret
//! (so neither kind of token verifies as the other), valid 60 s to open a stream, and bound
//! to the user and to the credential it was minted with (its *parent*). The stream it opens
//! lives as long as that parent: a login token until its `exp`, a personal access token until
//! it is revoked or expires. Only stream tokens are accepted in the query string: a URL ends
//! up in logs and browser history, and a stream token there is worthless after a minute.

use axum::{
    extract::{FromRequestParts, Query},
    http::{header, request::Parts},
};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

use super::frame::EndReason;
use crate::{
    app::AppState,
    auth::{bearer_token, AuthError},
    config::JwtSecret,
    problem::ApiError,
    tokens::{self, Scope},
};

/// The `aud` of a stream token; a login token has none, so neither passes for the other.
pub const STREAM_TOKEN_AUDIENCE: &str = "taskflow:feed-stream";
/// How long a stream token can be used to open a stream.
pub const STREAM_TOKEN_TTL_SECS: i64 = 60;

/// The credential a stream lives by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Parent {
    /// A login token, valid until `exp` (seconds since the epoch).
    Session { exp: i64 },
    /// A personal access token, valid until revoked or expired (read from the database).
    Token { id: Uuid },
}

impl Parent {
    /// Why a stream of this parent must end now, if it must; reads the database for a
    /// personal access token.
    pub async fn end_reason(&self, pool: &PgPool) -> Result<Option<EndReason>, sqlx::Error> {
        match *self {
            Parent::Session { exp } => Ok(session_end(exp, Utc::now().timestamp())),
            Parent::Token { id } => Ok(token_end(tokens::store::status(pool, id).await?)),
        }
    }
}

/// A login token is valid while `now < exp` (the verifier has no leeway either).
pub fn session_end(exp: i64, now: i64) -> Option<EndReason> {
    (now >= exp).then_some(EndReason::Expired)
}

/// From `tokens::store::status`: gone or revoked ends the stream as revoked, past its
/// expiry as expired.
pub fn token_end(status: Option<(bool, bool)>) -> Option<EndReason> {
    match status {
        None | Some((true, _)) => Some(EndReason::Revoked),
        Some((false, true)) => Some(EndReason::Expired),
        Some((false, false)) => None,
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StreamClaims {
    sub: String,
    aud: String,
    exp: i64,
    iat: i64,
    parent: Parent,
}

/// Signs and verifies stream tokens.
#[derive(Clone)]
pub struct StreamTokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for StreamTokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamTokenKeys(<redacted>)")
    }
}

impl StreamTokenKeys {
    /// Keys derived from the JWT secret: every replica derives the same ones, and a login
    /// token's signature never verifies here (nor a stream token's as a login token).
    pub fn new(secret: &JwtSecret) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"taskflow feed stream token v1\0");
        hasher.update(secret.as_bytes());
        let key = hasher.finalize();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.set_audience(&[STREAM_TOKEN_AUDIENCE]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            validation,
        }
    }

    /// A token for `user_id` under `parent`, valid [`STREAM_TOKEN_TTL_SECS`] from `now`
    /// (never past a login parent's own expiry); with its expiry.
    pub fn issue(
        &self,
        user_id: Uuid,
        parent: Parent,
        now: i64,
    ) -> Result<(String, i64), AuthError> {
        let mut exp = now.saturating_add(STREAM_TOKEN_TTL_SECS);
        if let Parent::Session { exp: parent_exp } = parent {
            exp = exp.min(parent_exp);
        }
        let claims = StreamClaims {
            sub: user_id.to_string(),
            aud: STREAM_TOKEN_AUDIENCE.to_owned(),
            exp,
            iat: now,
            parent,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Sign)?;
        Ok((token, exp))
    }

    pub fn verify(&self, token: &str) -> Result<(Uuid, Parent), AuthError> {
        let data = jsonwebtoken::decode::<StreamClaims>(token, &self.decoding, &self.validation)
            .map_err(AuthError::Invalid)?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::BadSubject)?;
        Ok((user_id, data.claims.parent))
    }
}

/// The caller of a feed route and the credential it came with, allowed
/// `notifications:read`.
#[derive(Debug, Clone, Copy)]
pub struct FeedCaller {
    pub user_id: Uuid,
    pub parent: Parent,
}

/// From `Authorization: Bearer` (login token or personal access token): 401 without a valid
/// one, 403 for a personal access token without `notifications:read`.
pub async fn from_bearer(parts: &Parts, state: &AppState) -> Result<FeedCaller, ApiError> {
    let token = bearer_token(parts)?;
    if token.starts_with(tokens::model::TOKEN_PREFIX) {
        let refused = ApiError::Unauthorized("the token is invalid, expired or revoked");
        let presented = tokens::model::parse_token(token).ok_or(refused)?;
        let grant = tokens::store::find_live(&state.pool, &presented)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::Unauthorized(
                "the token is invalid, expired or revoked",
            ))?;
        if !grant.scopes.contains(&Scope::NotificationsRead) {
            return Err(ApiError::MissingScope(Scope::NotificationsRead));
        }
        return Ok(FeedCaller {
            user_id: grant.user_id,
            parent: Parent::Token { id: grant.token_id },
        });
    }
    match state.jwt.verify_session(token) {
        Ok((user_id, exp)) => Ok(FeedCaller {
            user_id,
            parent: Parent::Session { exp },
        }),
        Err(e) => {
            tracing::debug!(error = %e, "rejected bearer token");
            Err(ApiError::Unauthorized("the token is invalid or expired"))
        }
    }
}

/// The caller of `POST /feed/stream-tokens`: bearer only.
#[derive(Debug, Clone, Copy)]
pub struct BearerFeedCaller(pub FeedCaller);

impl FromRequestParts<AppState> for BearerFeedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        from_bearer(parts, state).await.map(BearerFeedCaller)
    }
}

/// The caller of `GET /feed/stream`: the `Authorization` header when present, else the
/// `access_token` query parameter (a stream token, whose parent must still be valid).
impl FromRequestParts<AppState> for FeedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return from_bearer(parts, state).await;
        }
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(|e| {
                ApiError::BadRequest(format!("invalid query string: {}", e.body_text()))
            })?;
        let Some((_, token)) = pairs.iter().find(|(k, _)| k == "access_token") else {
            return Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <token> or ?access_token=<stream token>",
            ));
        };
        let refused = ApiError::Unauthorized("the stream token is invalid or expired");
        let (user_id, parent) = match state.feed.stream_keys.verify(token.trim()) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "rejected stream token");
                return Err(refused);
            }
        };
        if parent.end_reason(&state.pool).await?.is_some() {
            return Err(ApiError::Unauthorized(
                "the credential the stream token was made with is expired or revoked",
            ));
        }
        Ok(FeedCaller { user_id, parent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::JwtKeys;

    fn secret() -> JwtSecret {
        JwtSecret::new("stream-secret-stream-secret-stream-secret")
    }

    #[test]
    fn a_stream_token_round_trips_with_its_parent() {
        let keys = StreamTokenKeys::new(&secret());
        let user = Uuid::now_v7();
        let now = Utc::now().timestamp();
        let parent = Parent::Token { id: Uuid::now_v7() };
        let (token, exp) = keys.issue(user, parent, now).unwrap();
        assert_eq!(exp, now + STREAM_TOKEN_TTL_SECS);
        assert_eq!(keys.verify(&token).unwrap(), (user, parent));
    }

    #[test]
    fn a_stream_token_never_outlives_its_login_parent() {
        let keys = StreamTokenKeys::new(&secret());
        let now = Utc::now().timestamp();
        let (_, exp) = keys
            .issue(Uuid::now_v7(), Parent::Session { exp: now + 5 }, now)
            .unwrap();
        assert_eq!(exp, now + 5);
    }

    #[test]
    fn stream_and_login_tokens_do_not_pass_for_each_other() {
        let keys = StreamTokenKeys::new(&secret());
        let login = JwtKeys::new(&secret(), 60);
        let user = Uuid::now_v7();
        let now = Utc::now().timestamp();
        let (stream, _) = keys
            .issue(user, Parent::Session { exp: now + 600 }, now)
            .unwrap();
        assert!(login.verify(&stream).is_err());
        assert!(keys.verify(&login.issue(user).unwrap()).is_err());
        // Another secret, an expired token and garbage are refused.
        let other = StreamTokenKeys::new(&JwtSecret::new("x".repeat(40)));
        assert!(other.verify(&stream).is_err());
        let (expired, _) = keys
            .issue(user, Parent::Token { id: user }, now - 120)
            .unwrap();
        assert!(keys.verify(&expired).is_err());
        assert!(keys.verify("garbage").is_err());
    }

    #[test]
    fn end_reasons() {
        assert_eq!(session_end(100, 99), None);
        assert_eq!(session_end(100, 100), Some(EndReason::Expired));
        assert_eq!(token_end(Some((false, false))), None);
        assert_eq!(token_end(Some((true, false))), Some(EndReason::Revoked));
        assert_eq!(token_end(Some((true, true))), Some(EndReason::Revoked));
        assert_eq!(token_end(Some((false, true))), Some(EndReason::Expired));
        assert_eq!(token_end(None), Some(EndReason::Revoked));
    }
}
