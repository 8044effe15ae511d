//! Accounts and bearer tokens.
//!
//! Passwords are hashed and verified with Argon2id (default parameters) on
//! a few dedicated threads (see `hashing_threads`): hashing is deliberately
//! slow and must not stall the async workers. Signup and login are rate-limited per client address and
//! per email ([`crate::ratelimit`]). Access tokens are HS256 JWTs whose
//! `sub` is the user id. Validation pins the algorithm list to HS256, so a
//! token claiming `alg: none` or an asymmetric algorithm is refused before any
//! signature logic runs, and requires `exp` and `sub`.

use std::{
    marker::PhantomData,
    sync::{Arc, OnceLock},
};

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{
    extract::{FromRequestParts, State},
    http::{header, request::Parts, StatusCode},
    Json,
};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    app::AppState,
    config::JwtSecret,
    extract::JsonBody,
    problem::{ApiError, FieldError, Problem},
    ratelimit::ClientIp,
    tokens::{self, Scope},
};

pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 256;
pub const EMAIL_MAX_CHARS: usize = 254;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("could not sign a token: {0}")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("invalid token: {0}")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("the token subject is not a user id")]
    BadSubject,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// JWT claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id (UUID, hyphenated).
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time, seconds since the epoch.
    pub iat: i64,
}

/// Signs and verifies access tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_secs: u64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(secret: &JwtSecret, ttl_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Pinned: only HS256. jsonwebtoken rejects any header alg not listed.
        validation.algorithms = vec![Algorithm::HS256];
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        // We issue and verify on the same clocks; no grace period for expiry.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    pub fn issue(&self, user_id: Uuid) -> Result<String, AuthError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: user_id.to_string(),
            iat: now,
            exp: now.saturating_add(i64::try_from(self.ttl_secs).unwrap_or(i64::MAX)),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(AuthError::Sign)
    }

    pub fn verify(&self, token: &str) -> Result<Uuid, AuthError> {
        self.verify_session(token).map(|(user_id, _)| user_id)
    }

    /// [`JwtKeys::verify`] plus the token's expiry (seconds since the epoch), which a
    /// long-lived request (a live stream) must honour after the request began.
    pub fn verify_session(&self, token: &str) -> Result<(Uuid, i64), AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(AuthError::Invalid)?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| AuthError::BadSubject)?;
        Ok((user_id, data.claims.exp))
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The JWT of `/auth/login`: the user themself, every scope.
    Session,
    /// A personal access token, limited to its scopes.
    Token { id: Uuid, scopes: Vec<Scope> },
}

/// The authenticated caller: a login session or a personal access token
/// (checked against the database on every request, see [`crate::tokens`]).
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub credential: Credential,
}

impl AuthUser {
    /// A 403 naming `scope` unless the credential carries it.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        match &self.credential {
            Credential::Session => Ok(()),
            Credential::Token { scopes, .. } if scopes.contains(&scope) => Ok(()),
            Credential::Token { .. } => Err(ApiError::MissingScope(scope)),
        }
    }
}

pub(crate) fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "missing Authorization: Bearer <token>",
        ))?;
    header
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .filter(|t| !t.is_empty())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header is not a Bearer token",
        ))
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
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
            return Ok(AuthUser {
                user_id: grant.user_id,
                credential: Credential::Token {
                    id: grant.token_id,
                    scopes: grant.scopes,
                },
            });
        }
        match state.jwt.verify(token) {
            Ok(user_id) => Ok(AuthUser {
                user_id,
                credential: Credential::Session,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "rejected bearer token");
                Err(ApiError::Unauthorized("the token is invalid or expired"))
            }
        }
    }
}

/// The scope a [`Scoped`] extractor demands, as a type.
pub trait RequiredScope {
    const SCOPE: Scope;
}

/// Marker: the route reads tasks (`tasks:read`).
#[derive(Debug)]
pub struct ReadTasks;
/// Marker: the route changes tasks (`tasks:write`).
#[derive(Debug)]
pub struct WriteTasks;

/// Marker: the route reads the inbox or the live feed (`notifications:read`).
#[derive(Debug)]
pub struct ReadNotifications;

impl RequiredScope for ReadNotifications {
    const SCOPE: Scope = Scope::NotificationsRead;
}
impl RequiredScope for ReadTasks {
    const SCOPE: Scope = Scope::TasksRead;
}
impl RequiredScope for WriteTasks {
    const SCOPE: Scope = Scope::TasksWrite;
}

/// An authenticated caller allowed `S::SCOPE`: 401 without a valid token,
/// 403 for a token lacking the scope. Checked while extracting, so the
/// handler never runs (and the body is never read) without it.
#[derive(Debug)]
pub struct Scoped<S> {
    pub user_id: Uuid,
    _scope: PhantomData<fn() -> S>,
}

impl<S: RequiredScope> FromRequestParts<AppState> for Scoped<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        user.require(S::SCOPE)?;
        Ok(Scoped {
            user_id: user.user_id,
            _scope: PhantomData,
        })
    }
}

/// A caller signed in with the login JWT: what managing tokens needs, so a
/// personal access token can never mint or revoke tokens (a 403).
#[derive(Debug, Clone, Copy)]
pub struct SessionUser {
    pub user_id: Uuid,
}

impl FromRequestParts<AppState> for SessionUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        match user.credential {
            Credential::Session => Ok(SessionUser {
                user_id: user.user_id,
            }),
            Credential::Token { .. } => Err(ApiError::Forbidden(
                "personal access tokens cannot manage tokens; use the token of /auth/login",
            )),
        }
    }
}

/// Body of signup and login.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct Credentials {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8 to 256 characters.
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    pub email: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: u64,
}

/// Validates the credentials body; the email is trimmed, the password is
/// taken as sent.
pub fn validate_credentials(
    body: &serde_json::Value,
    check_password_rules: bool,
) -> Result<Credentials, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    // The length counts what was sent (the documented maxLength), the rest
    // applies to the trimmed address. NUL is refused: PostgreSQL text cannot
    // hold it.
    let email = match obj.get("email").and_then(|v| v.as_str()) {
        Some(raw) if raw.chars().count() <= EMAIL_MAX_CHARS => raw.trim(),
        _ => "",
    };
    let email = match email {
        e if e
            .split_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
            && !e.chars().any(|c| c.is_whitespace() || c == '\0') =>
        {
            e.to_owned()
        }
        _ => {
            errors.push(FieldError::new("email", "must be an email address"));
            String::new()
        }
    };
    let password = match obj.get("password").and_then(|v| v.as_str()) {
        Some(p) if !check_password_rules && !p.is_empty() => p.to_owned(),
        Some(p) if (PASSWORD_MIN_CHARS..=PASSWORD_MAX_CHARS).contains(&p.chars().count()) => {
            p.to_owned()
        }
        _ => {
            errors.push(FieldError::new(
                "password",
                format!("must be {PASSWORD_MIN_CHARS} to {PASSWORD_MAX_CHARS} characters"),
            ));
            String::new()
        }
    };
    if errors.is_empty() {
        Ok(Credentials { email, password })
    } else {
        Err(errors)
    }
}

/// Password hashing runs on a few dedicated threads, not on tokio's blocking pool. An
/// Argon2id hash allocates 19 MiB, and glibc keeps freed memory in the arena of the thread
/// that allocated it: spread over the blocking pool's many threads, 1,000 sign-ups left the
/// API at 1.5 GiB resident (`taskflow-bench live`); on a fixed few threads the retained
/// memory stays near one hash's worth per thread. The thread count also bounds the CPU that
/// sign-ups and logins can take from everything else.
fn hashing_threads() -> &'static std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>> {
    static POOL: OnceLock<std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        for i in 0..n {
            let rx = std::sync::Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(poisoned) => poisoned.into_inner().recv(),
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password hashing thread");
            }
        }
        tx
    })
}

/// Runs `f` on a hashing thread and awaits its result.
async fn on_hashing_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    hashing_threads()
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| ApiError::Internal("the password hashing threads are gone".to_owned()))?;
    rx.await
        .map_err(|_| ApiError::Internal("a password hashing job was dropped".to_owned()))
}

async fn hash_password(password: String) -> Result<String, ApiError> {
    on_hashing_thread(move || {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| AuthError::Hash(e.to_string()))
    })
    .await?
    .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A hash of a random password, verified against when the email is unknown so
/// that "no such user" and "wrong password" take the same time. Computed on
/// first use, which is on a hashing thread (see [`verify_password`]).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        Argon2::default()
            .hash_password(Uuid::new_v4().as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Verifies on a hashing thread; `hash` `None` (unknown email) verifies against
/// [`dummy_hash`] and is always false.
async fn verify_password(password: String, hash: Option<String>) -> Result<bool, ApiError> {
    on_hashing_thread(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| dummy_hash().to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
}

async fn insert_user<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
    email: &str,
    password_hash: &str,
) -> Result<bool, sqlx::Error> {
    let res = sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(email)
        .bind(password_hash)
        .execute(ex)
        .await;
    match res {
        Ok(_) => Ok(true),
        Err(sqlx::Error::Database(db)) if db.is_unique_violation() => Ok(false),
        Err(e) => Err(e),
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    password_hash: String,
}

async fn find_user_by_email<'e>(
    ex: impl PgExecutor<'e>,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, password_hash FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(ex)
        .await
}

/// Create an account.
#[utoipa::path(
    post, path = "/auth/signup", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 201, body = UserResponse),
        (status = 409, description = "Email already registered", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: JsonBody,
) -> Result<(StatusCode, Json<UserResponse>), ApiError> {
    state.auth_limiter.check_ip(ip)?;
    let creds = validate_credentials(&body.value, true).map_err(ApiError::Validation)?;
    state.auth_limiter.check_account(&creds.email)?;
    let hash = hash_password(creds.password).await?;
    let id = Uuid::now_v7();
    if !insert_user(&state.pool, id, &creds.email, &hash).await? {
        return Err(ApiError::Conflict(
            "an account with this email already exists".into(),
        ));
    }
    tracing::info!(user_id = %id, "user signed up");
    Ok((
        StatusCode::CREATED,
        Json(UserResponse {
            id,
            email: creds.email,
        }),
    ))
}

/// Exchange credentials for an access token.
#[utoipa::path(
    post, path = "/auth/login", tag = "auth",
    request_body = Credentials,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, description = "Unknown email or wrong password", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    body: JsonBody,
) -> Result<Json<TokenResponse>, ApiError> {
    state.auth_limiter.check_ip(ip)?;
    let creds = validate_credentials(&body.value, false).map_err(ApiError::Validation)?;
    state.auth_limiter.check_account(&creds.email)?;
    let user = find_user_by_email(&state.pool, &creds.email).await?;
    let (user_id, hash) = match user {
        Some(u) => (Some(u.id), Some(u.password_hash)),
        None => (None, None),
    };
    let ok = verify_password(creds.password, hash).await?;
    let user_id = match (ok, user_id) {
        (true, Some(id)) => id,
        _ => return Err(ApiError::Unauthorized("unknown email or wrong password")),
    };
    let access_token = state
        .jwt
        .issue(user_id)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer".to_owned(),
        expires_in: state.jwt.ttl_secs(),
    }))
}

/// Shared so the extractor and handlers can hold it cheaply.
pub type SharedJwt = Arc<JwtKeys>;

#[cfg(test)]
mod tests {
    use super::*;
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use serde_json::json;

    fn keys() -> JwtKeys {
        JwtKeys::new(&JwtSecret::new("test-secret-test-secret-test-secret"), 60)
    }

    #[test]
    fn issued_token_verifies() {
        let k = keys();
        let id = Uuid::now_v7();
        assert_eq!(k.verify(&k.issue(id).unwrap()).unwrap(), id);
    }

    #[test]
    fn other_secret_none_and_expired_are_rejected() {
        let k = keys();
        let other = JwtKeys::new(&JwtSecret::new("another-secret"), 60);
        let id = Uuid::now_v7();
        assert!(k.verify(&other.issue(id).unwrap()).is_err());

        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            json!({"sub": id.to_string(), "exp": Utc::now().timestamp() + 600}).to_string(),
        );
        assert!(k.verify(&format!("{header}.{claims}.")).is_err());

        let expired = Claims {
            sub: id.to_string(),
            exp: Utc::now().timestamp() - 10,
            iat: Utc::now().timestamp() - 100,
        };
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &expired,
            &EncodingKey::from_secret(b"test-secret-test-secret-test-secret"),
        )
        .unwrap();
        assert!(k.verify(&token).is_err());
    }

    #[test]
    fn missing_sub_is_rejected() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"exp": Utc::now().timestamp() + 600}),
            &EncodingKey::from_secret(b"test-secret-test-secret-test-secret"),
        )
        .unwrap();
        assert!(keys().verify(&token).is_err());
    }

    #[test]
    fn credentials_validation() {
        assert!(
            validate_credentials(&json!({"email": "a@b.c", "password": "longenough"}), true)
                .is_ok()
        );
        let e =
            validate_credentials(&json!({"email": "nope", "password": "short"}), true).unwrap_err();
        assert_eq!(e.len(), 2);
        // login does not re-apply the signup password rules
        assert!(validate_credentials(&json!({"email": "a@b.c", "password": "x"}), false).is_ok());
    }
}
