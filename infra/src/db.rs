//! Connecting to PostgreSQL with least privilege.
//!
//! Migrations need the owner of the schema's objects; a running service needs only the grants
//! of the `taskflow_app` role (`migrations/20261122000005_least_privilege.sql`): on
//! `audit_log` INSERT and SELECT, so it can neither change audit rows nor, not being the
//! owner, disable the triggers that refuse changes. A binary therefore takes two URLs:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `TASKFLOW_DATABASE_URL` | `postgres://postgres@localhost:5432/taskflow` | what the service's pool connects as: a login role that is a member of `taskflow_app` |
//! | `TASKFLOW_DATABASE_MIGRATION_URL` | unset | the owner; used once at start-up to apply the migrations, then closed. Unset: the migrations run over `TASKFLOW_DATABASE_URL`, which must then be the owner (a laptop, never production) |
//! | `TASKFLOW_DATABASE_MIGRATE` | `true` | `false`: apply no migrations (another step did); the binary then needs no owner credentials at all |
//! | `TASKFLOW_DATABASE_MAX_CONNECTIONS` | per binary | size of the service's pool |
//!
//! Passwords never need to be in a URL: libpq's `PGPASSWORD` and `PGPASSFILE` are honoured.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

use crate::config::{env_opt, env_or, ConfigError};

/// Default `TASKFLOW_DATABASE_URL`.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/taskflow";

/// The group role the services' login roles are members of (created by the migrations).
pub const SERVICE_GROUP_ROLE: &str = "taskflow_app";

/// How long a connection attempt or a pool checkout may wait.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// A pooled connection idle at least this long is pinged before it is handed out.
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("connecting to PostgreSQL (TASKFLOW_DATABASE_URL): {0}")]
    Connect(#[source] sqlx::Error),
    #[error("connecting to PostgreSQL to migrate (TASKFLOW_DATABASE_MIGRATION_URL): {0}")]
    ConnectMigration(#[source] sqlx::Error),
    #[error("running migrations: {0}")]
    Migrate(#[from] MigrateError),
    #[error(
        "running migrations over TASKFLOW_DATABASE_URL: {0}; that role may not change the \
         schema: set TASKFLOW_DATABASE_MIGRATION_URL to the owner, or \
         TASKFLOW_DATABASE_MIGRATE=false where another step migrates"
    )]
    MigrateAsService(#[source] MigrateError),
    #[error("invalid database URL: {0}")]
    Url(#[source] sqlx::Error),
    #[error("creating the login role {role}: {source}")]
    Role {
        role: String,
        #[source]
        source: sqlx::Error,
    },
}

/// Where and how a binary connects; see the module docs.
#[derive(Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub migration_url: Option<String>,
    pub migrate: bool,
    pub max_connections: u32,
}

/// URLs may hold passwords: never print them.
impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("migration_url", &self.migration_url.as_ref().map(|_| ".."))
            .field("migrate", &self.migrate)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl DatabaseSettings {
    /// Service URL `url`, migrations over the same URL.
    pub fn new(url: impl Into<String>, max_connections: u32) -> Self {
        Self {
            url: url.into(),
            migration_url: None,
            migrate: true,
            max_connections,
        }
    }

    /// Reads the variables of the module docs.
    pub fn from_env(default_max_connections: u32) -> Result<Self, ConfigError> {
        let max_connections = env_or("TASKFLOW_DATABASE_MAX_CONNECTIONS", default_max_connections)?;
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                name: "TASKFLOW_DATABASE_MAX_CONNECTIONS".to_owned(),
                value: "0".to_owned(),
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            url: env_or("TASKFLOW_DATABASE_URL", DEFAULT_DATABASE_URL.to_owned())?,
            migration_url: env_opt("TASKFLOW_DATABASE_MIGRATION_URL")?,
            migrate: env_or("TASKFLOW_DATABASE_MIGRATE", true)?,
            max_connections,
        })
    }
}

/// Applies `migrator` as configured (over the migration URL when there is one, on a single
/// connection closed right after), then opens the service's pool.
pub async fn connect(settings: &DatabaseSettings, migrator: &Migrator) -> Result<PgPool, DbError> {
    if settings.migrate {
        if let Some(owner_url) = &settings.migration_url {
            let mut owner = PgConnection::connect(owner_url)
                .await
                .map_err(DbError::ConnectMigration)?;
            migrator.run(&mut owner).await?;
            // Best effort: the server ends the session anyway when the socket closes.
            let _ = owner.close().await;
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(settings.max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // sqlx pings every connection it hands out by default: one more round trip for
        // each request, which at load is a fifth of a create's (BEGIN, two INSERTs,
        // COMMIT). A connection back in the pool for less than PING_AFTER_IDLE was just
        // used successfully, so only connections idle longer are checked (a server restart
        // or an idle timeout is still caught before a request sees it).
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(&settings.url)
        .await
        .map_err(DbError::Connect)?;
    if settings.migrate && settings.migration_url.is_none() {
        migrator.run(&pool).await.map_err(|e| match &e {
            MigrateError::Execute(sqlx::Error::Database(db))
            | MigrateError::ExecuteMigration(sqlx::Error::Database(db), _)
                if db.code().as_deref() == Some("42501") =>
            {
                DbError::MigrateAsService(e)
            }
            _ => DbError::Migrate(e),
        })?;
    }
    Ok(pool)
}

/// `url` with its user replaced by `user` (password, host, database and options kept).
pub fn with_user(url: &str, user: &str) -> Result<String, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(DbError::Url)?;
    Ok(options.username(user).to_url_lossy().to_string())
}

/// The password in `url`, if any (percent-decoded).
fn password_of(url: &str) -> Result<Option<String>, DbError> {
    let options = PgConnectOptions::from_str(url).map_err(DbError::Url)?;
    let url = options.to_url_lossy();
    url.password()
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8()
                .map(|p| p.into_owned())
                .map_err(|e| DbError::Url(sqlx::Error::Configuration(e.into())))
        })
        .transpose()
}

/// Creates `role` as a LOGIN member of [`SERVICE_GROUP_ROLE`] unless it exists, with the
/// password of `like_url` (if it has one), and returns `like_url` with its user replaced by
/// `role`. Roles are global to the cluster, so concurrent callers (one test database each)
/// race; losing the race is not an error. Needs CREATEROLE. For the test harnesses, which
/// have one admin URL and nothing else; deployments script their roles (see compose).
pub async fn ensure_login_role(
    owner: &mut PgConnection,
    role: &str,
    like_url: &str,
) -> Result<String, DbError> {
    let err = |source| DbError::Role {
        role: role.to_owned(),
        source,
    };
    let password = password_of(like_url)?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
            .bind(role)
            .fetch_one(&mut *owner)
            .await
            .map_err(err)?;
    if !exists {
        // Utility statements take no bind parameters: format() quotes the text.
        let sql: String = sqlx::query_scalar(
            "SELECT format('CREATE ROLE %I LOGIN IN ROLE %I', $1::text, $2::text) \
                 || coalesce(' PASSWORD ' || quote_literal($3::text), '')",
        )
        .bind(role)
        .bind(SERVICE_GROUP_ROLE)
        .bind(password)
        .fetch_one(&mut *owner)
        .await
        .map_err(err)?;
        match sqlx::query(&sql).execute(&mut *owner).await {
            Ok(_) => {}
            // 42710 duplicate_object, 23505 unique_violation: created concurrently.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42710") | Some("23505")) => {}
            Err(e) => return Err(err(e)),
        }
    }
    with_user(like_url, role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_is_replaced_and_the_rest_kept() {
        let u = with_user("postgres://owner:s3cret@db.example:6543/taskflow", "svc").unwrap();
        assert!(
            u.starts_with("postgres://svc:s3cret@db.example:6543/taskflow"),
            "{u}"
        );
    }

    #[test]
    fn password_is_decoded() {
        assert_eq!(
            password_of("postgres://o:a%40b%3Ac@h/d")
                .unwrap()
                .as_deref(),
            Some("a@b:c")
        );
        assert_eq!(password_of("postgres://o@h/d").unwrap(), None);
    }

    #[test]
    fn debug_hides_urls() {
        let mut s = DatabaseSettings::new("postgres://u:pw@h/d", 3);
        s.migration_url = Some("postgres://o:pw2@h/d".to_owned());
        let shown = format!("{s:?}");
        assert!(!shown.contains("pw"), "{shown}");
    }
}
