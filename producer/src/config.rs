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
//! | `TASKFLOW_JWT_SECRET` | none (random per process, with a warning) | HS256 signing secret for access tokens; set it in every real deployment, or tokens die with the process and do not work across replicas |
//! | `TASKFLOW_JWT_TTL_SECS` | `3600` | lifetime of an access token in seconds |
//! | `TASKFLOW_TOPIC_TASK_EVENTS` | `taskflow.task-events` | topic the outbox rows of task events are addressed to |

use std::{fmt, net::SocketAddr};

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

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Env(#[from] ConfigError),
    #[error("{name} must be {reason}")]
    OutOfRange {
        name: &'static str,
        reason: &'static str,
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
    /// `None` means: generate a random secret at startup (and warn).
    pub jwt_secret: Option<JwtSecret>,
    pub jwt_ttl_secs: u64,
    pub topic_task_events: String,
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
        // Read raw, not trimmed-and-parsed: a secret is bytes, whitespace included.
        let jwt_secret = std::env::var("TASKFLOW_JWT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .map(JwtSecret::new);
        Ok(Self {
            http_addr: env_or("TASKFLOW_HTTP_ADDR", default_http)?,
            admin_addr: env_or("TASKFLOW_ADMIN_ADDR", default_admin)?,
            database_url: env_or("TASKFLOW_DATABASE_URL", DEFAULT_DATABASE_URL.to_owned())?,
            database_migration_url: env_opt("TASKFLOW_DATABASE_MIGRATION_URL")?,
            database_migrate: env_or("TASKFLOW_DATABASE_MIGRATE", true)?,
            database_max_connections,
            jwt_secret,
            jwt_ttl_secs,
            topic_task_events: env_opt::<String>("TASKFLOW_TOPIC_TASK_EVENTS")?
                .unwrap_or_else(|| taskflow_schemas::topics::TASK_EVENTS.to_owned()),
        })
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
    fn plain_constructor_binds_port_zero() {
        let s = Settings::new("postgres://x/y");
        assert_eq!(s.http_addr.port(), 0);
        assert_eq!(s.topic_task_events, taskflow_schemas::topics::TASK_EVENTS);
    }
}
