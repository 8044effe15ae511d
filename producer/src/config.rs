//! Settings of the task API, read from `TASKFLOW_*` environment variables.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `TASKFLOW_HTTP_ADDR` | `0.0.0.0:8080` | address the public HTTP API listens on (port 0 picks a free port) |
//! | `TASKFLOW_ADMIN_ADDR` | `0.0.0.0:9090` | address of the admin server (`/metrics`, `/healthz`, `/readyz`) |
//! | `TASKFLOW_DATABASE_URL` | `postgres://postgres@localhost:5432/taskflow` | PostgreSQL URL the API connects as (a member of `taskflow_app`) |
//! | `TASKFLOW_DATABASE_MIGRATION_URL` | unset | owner URL the migrations run over at start-up; unset: over `TASKFLOW_DATABASE_URL` (see `taskflow_infra::db`) |
//! | `TASKFLOW_DATABASE_MIGRATE` | `true` | `false`: apply no migrations at start-up |
//! | `TASKFLOW_DATABASE_MAX_CONNECTIONS` | `10` | size of the connection pool |
//! | `TASKFLOW_JWT_SECRET` | none: required (or `_FILE`) | HS256 signing secret for access tokens, at least 32 bytes; the API refuses to start without it |
//! | `TASKFLOW_JWT_SECRET_FILE` | none | path of a file holding the secret (one trailing newline is ignored); exclusive with `TASKFLOW_JWT_SECRET` |
//! | `TASKFLOW_JWT_TTL_SECS` | `3600` | lifetime of an access token in seconds |
//! | `TASKFLOW_TOPIC_TASK_EVENTS` | `taskflow.task-events` | topic the outbox rows of task events are addressed to |
//! | `TASKFLOW_HTTP_REQUEST_TIMEOUT_MS` | `30000` | a request not answered in this time gets a problem+json 503 |
//! | `TASKFLOW_AUTH_RATE_PER_IP` | `30` | signup + login requests per minute per client address (also the burst) |
//! | `TASKFLOW_AUTH_RATE_PER_ACCOUNT` | `10` | signup + login requests per minute per email address (also the burst) |
//! | `TASKFLOW_TRUSTED_PROXY_HOPS` | `0` | reverse proxies in front of the API; with N > 0 the client address is the N-th `X-Forwarded-For` entry from the right, with 0 the header is ignored |
//! | `TASKFLOW_IDEMPOTENCY_TTL_SECS` | `86400` | an `Idempotency-Key` older than this is treated as new; expired keys are purged |
//! | `TASKFLOW_WEBHOOK_ALLOW_PRIVATE` | `false` | `true`: webhook URLs may be plain http and internal addresses (loopback, private, link-local); for development and tests only |
//! | `TASKFLOW_STREAM_HEARTBEAT_MS` | `15000` | a live stream (`GET /feed/stream`) sends an SSE comment this often, so proxies keep idle streams open, and re-checks its credential (a revoked or expired one ends the stream) |

use std::{fmt, net::SocketAddr, num::NonZeroU32, time::Duration};

use taskflow_infra::config::{env_opt, env_or, ConfigError};

/// Default `TASKFLOW_HTTP_ADDR`.
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:8080";
/// Default `TASKFLOW_ADMIN_ADDR`.
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9090";
/// Default `TASKFLOW_DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/taskflow";
/// Default `TASKFLOW_DATABASE_MAX_CONNECTIONS`.
pub const DEFAULT_DATABASE_MAX_CONNECTIONS: u32 = 10;
/// Default `TASKFLOW_JWT_TTL_SECS`.
pub const DEFAULT_JWT_TTL_SECS: u64 = 3600;
/// Shortest accepted JWT secret (HS256 wants at least its 256-bit output).
pub const JWT_SECRET_MIN_BYTES: usize = 32;
/// Default `TASKFLOW_HTTP_REQUEST_TIMEOUT_MS`.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Default `TASKFLOW_AUTH_RATE_PER_IP`.
pub const DEFAULT_AUTH_RATE_PER_IP: u32 = 30;
/// Default `TASKFLOW_AUTH_RATE_PER_ACCOUNT`.
pub const DEFAULT_AUTH_RATE_PER_ACCOUNT: u32 = 10;
/// Default `TASKFLOW_IDEMPOTENCY_TTL_SECS`: 24 hours.
pub const DEFAULT_IDEMPOTENCY_TTL_SECS: u64 = 86_400;
/// Default `TASKFLOW_STREAM_HEARTBEAT_MS`: under the 30 to 60 s idle timeouts common in
/// proxies and load balancers.
pub const DEFAULT_STREAM_HEARTBEAT_MS: u64 = 15_000;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Env(#[from] ConfigError),
    #[error("{name} must be {reason}")]
    OutOfRange {
        name: &'static str,
        reason: &'static str,
    },
    #[error(
        "no JWT secret: set TASKFLOW_JWT_SECRET or TASKFLOW_JWT_SECRET_FILE \
         (at least {JWT_SECRET_MIN_BYTES} random bytes, the same on every replica)"
    )]
    MissingJwtSecret,
    #[error("the JWT secret is {len} bytes; at least {JWT_SECRET_MIN_BYTES} are required")]
    ShortJwtSecret { len: usize },
    #[error("set only one of TASKFLOW_JWT_SECRET and TASKFLOW_JWT_SECRET_FILE")]
    TwoJwtSecrets,
    #[error("reading TASKFLOW_JWT_SECRET_FILE {path}: {source}")]
    JwtSecretFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The HS256 signing secret. `Debug` never prints it, so logging the
/// settings cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct JwtSecret(Vec<u8>);

impl JwtSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Refuses a secret shorter than [`JWT_SECRET_MIN_BYTES`].
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.0.len() < JWT_SECRET_MIN_BYTES {
            Err(SettingsError::ShortJwtSecret { len: self.0.len() })
        } else {
            Ok(())
        }
    }
}

impl fmt::Debug for JwtSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwtSecret(<redacted>)")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub database_url: String,
    /// Owner URL for the migrations; `None`: they run over `database_url`.
    pub database_migration_url: Option<String>,
    pub database_migrate: bool,
    pub database_max_connections: u32,
    /// Required: [`crate::Application::build`] refuses `None` and secrets
    /// shorter than [`JWT_SECRET_MIN_BYTES`].
    pub jwt_secret: Option<JwtSecret>,
    pub jwt_ttl_secs: u64,
    pub topic_task_events: String,
    pub request_timeout: Duration,
    /// Signup + login requests per minute per client address.
    pub auth_rate_per_ip: NonZeroU32,
    /// Signup + login requests per minute per email address.
    pub auth_rate_per_account: NonZeroU32,
    /// Reverse proxies in front of the API whose `X-Forwarded-For` is trusted.
    pub trusted_proxy_hops: usize,
    pub idempotency_ttl: Duration,
    /// Heartbeat (and credential re-check) period of a live stream.
    pub stream_heartbeat: Duration,
    /// Webhook URLs may be http and internal addresses (development and tests).
    pub webhook_allow_private: bool,
}

impl Settings {
    /// Settings for tests and embedding: listens on 127.0.0.1 port 0 (HTTP and
    /// admin), every other value at its default except the database URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            database_migration_url: None,
            database_migrate: true,
            database_max_connections: DEFAULT_DATABASE_MAX_CONNECTIONS,
            jwt_secret: None,
            jwt_ttl_secs: DEFAULT_JWT_TTL_SECS,
            topic_task_events: taskflow_schemas::topics::TASK_EVENTS.to_owned(),
            request_timeout: Duration::from_millis(DEFAULT_REQUEST_TIMEOUT_MS),
            auth_rate_per_ip: NonZeroU32::new(DEFAULT_AUTH_RATE_PER_IP).unwrap_or(NonZeroU32::MIN),
            auth_rate_per_account: NonZeroU32::new(DEFAULT_AUTH_RATE_PER_ACCOUNT)
                .unwrap_or(NonZeroU32::MIN),
            trusted_proxy_hops: 0,
            idempotency_ttl: Duration::from_secs(DEFAULT_IDEMPOTENCY_TTL_SECS),
            stream_heartbeat: Duration::from_millis(DEFAULT_STREAM_HEARTBEAT_MS),
            webhook_allow_private: false,
        }
    }

    /// Reads every `TASKFLOW_*` variable of the table in the module docs.
    pub fn from_env() -> Result<Self, SettingsError> {
        let default_http: SocketAddr =
            DEFAULT_HTTP_ADDR
                .parse()
                .map_err(|_| SettingsError::OutOfRange {
                    name: "TASKFLOW_HTTP_ADDR",
                    reason: "a socket address",
                })?;
        let default_admin: SocketAddr =
            DEFAULT_ADMIN_ADDR
                .parse()
                .map_err(|_| SettingsError::OutOfRange {
                    name: "TASKFLOW_ADMIN_ADDR",
                    reason: "a socket address",
                })?;
        let database_max_connections = env_or(
            "TASKFLOW_DATABASE_MAX_CONNECTIONS",
            DEFAULT_DATABASE_MAX_CONNECTIONS,
        )?;
        if database_max_connections == 0 {
            return Err(SettingsError::OutOfRange {
                name: "TASKFLOW_DATABASE_MAX_CONNECTIONS",
                reason: "at least 1",
            });
        }
        let jwt_ttl_secs = env_or("TASKFLOW_JWT_TTL_SECS", DEFAULT_JWT_TTL_SECS)?;
        if jwt_ttl_secs == 0 {
            return Err(SettingsError::OutOfRange {
                name: "TASKFLOW_JWT_TTL_SECS",
                reason: "at least 1",
            });
        }
        let jwt_secret = jwt_secret_from_env()?;
        jwt_secret.check()?;
        let request_timeout_ms = env_or(
            "TASKFLOW_HTTP_REQUEST_TIMEOUT_MS",
            DEFAULT_REQUEST_TIMEOUT_MS,
        )?;
        if request_timeout_ms == 0 {
            return Err(SettingsError::OutOfRange {
                name: "TASKFLOW_HTTP_REQUEST_TIMEOUT_MS",
                reason: "at least 1",
            });
        }
        let idempotency_ttl_secs = env_or(
            "TASKFLOW_IDEMPOTENCY_TTL_SECS",
            DEFAULT_IDEMPOTENCY_TTL_SECS,
        )?;
        if idempotency_ttl_secs == 0 {
            return Err(SettingsError::OutOfRange {
                name: "TASKFLOW_IDEMPOTENCY_TTL_SECS",
                reason: "at least 1",
            });
        }
        let stream_heartbeat_ms =
            env_or("TASKFLOW_STREAM_HEARTBEAT_MS", DEFAULT_STREAM_HEARTBEAT_MS)?;
        if stream_heartbeat_ms == 0 {
            return Err(SettingsError::OutOfRange {
                name: "TASKFLOW_STREAM_HEARTBEAT_MS",
                reason: "at least 1",
            });
        }
        let rate = |name: &'static str, default: u32| -> Result<NonZeroU32, SettingsError> {
            NonZeroU32::new(env_or(name, default)?).ok_or(SettingsError::OutOfRange {
                name,
                reason: "at least 1",
            })
        };
        Ok(Self {
            http_addr: env_or("TASKFLOW_HTTP_ADDR", default_http)?,
            admin_addr: env_or("TASKFLOW_ADMIN_ADDR", default_admin)?,
            database_url: env_or("TASKFLOW_DATABASE_URL", DEFAULT_DATABASE_URL.to_owned())?,
            database_migration_url: env_opt("TASKFLOW_DATABASE_MIGRATION_URL")?,
            database_migrate: env_or("TASKFLOW_DATABASE_MIGRATE", true)?,
            database_max_connections,
            jwt_ttl_secs,
            jwt_secret: Some(jwt_secret),
            topic_task_events: env_opt::<String>("TASKFLOW_TOPIC_TASK_EVENTS")?
                .unwrap_or_else(|| taskflow_schemas::topics::TASK_EVENTS.to_owned()),
            request_timeout: Duration::from_millis(request_timeout_ms),
            auth_rate_per_ip: rate("TASKFLOW_AUTH_RATE_PER_IP", DEFAULT_AUTH_RATE_PER_IP)?,
            auth_rate_per_account: rate(
                "TASKFLOW_AUTH_RATE_PER_ACCOUNT",
                DEFAULT_AUTH_RATE_PER_ACCOUNT,
            )?,
            trusted_proxy_hops: env_or("TASKFLOW_TRUSTED_PROXY_HOPS", 0)?,
            idempotency_ttl: Duration::from_secs(idempotency_ttl_secs),
            stream_heartbeat: Duration::from_millis(stream_heartbeat_ms),
            webhook_allow_private: env_or("TASKFLOW_WEBHOOK_ALLOW_PRIVATE", false)?,
        })
    }
}

/// The secret from `TASKFLOW_JWT_SECRET` or the file `TASKFLOW_JWT_SECRET_FILE`
/// names (a mounted Kubernetes/compose secret). Read raw, not trimmed: a
/// secret is bytes; only the one newline a file conventionally ends with is
/// dropped.
fn jwt_secret_from_env() -> Result<JwtSecret, SettingsError> {
    let inline = std::env::var("TASKFLOW_JWT_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    jwt_secret_from(inline, env_opt::<String>("TASKFLOW_JWT_SECRET_FILE")?)
}

fn jwt_secret_from(
    inline: Option<String>,
    path: Option<String>,
) -> Result<JwtSecret, SettingsError> {
    match (inline, path) {
        (Some(_), Some(_)) => Err(SettingsError::TwoJwtSecrets),
        (Some(s), None) => Ok(JwtSecret::new(s)),
        (None, Some(path)) => {
            let mut bytes = std::fs::read(&path)
                .map_err(|source| SettingsError::JwtSecretFile { path, source })?;
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            Ok(JwtSecret::new(bytes))
        }
        (None, None) => Err(SettingsError::MissingJwtSecret),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_redacted_in_debug() {
        let s = JwtSecret::new("hunter2-hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn secret_from_a_file_drops_one_trailing_newline() {
        let path = std::env::temp_dir().join(format!("jwt-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, format!("{}\n", "s".repeat(40))).unwrap();
        let p = path.to_string_lossy().into_owned();
        let secret = jwt_secret_from(None, Some(p.clone())).unwrap();
        assert_eq!(secret.as_bytes(), "s".repeat(40).as_bytes());
        assert!(matches!(
            jwt_secret_from(Some("x".into()), Some(p)),
            Err(SettingsError::TwoJwtSecrets)
        ));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            jwt_secret_from(None, None),
            Err(SettingsError::MissingJwtSecret)
        ));
        assert!(matches!(
            jwt_secret_from(None, Some("/nonexistent/taskflow-secret".into())),
            Err(SettingsError::JwtSecretFile { .. })
        ));
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(matches!(
            JwtSecret::new("x".repeat(31)).check(),
            Err(SettingsError::ShortJwtSecret { len: 31 })
        ));
        assert!(JwtSecret::new("x".repeat(32)).check().is_ok());
    }

    #[test]
    fn plain_constructor_binds_port_zero() {
        let s = Settings::new("postgres://x/y");
        assert_eq!(s.http_addr.port(), 0);
        assert_eq!(s.topic_task_events, taskflow_schemas::topics::TASK_EVENTS);
    }
}
