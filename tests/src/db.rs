//! One PostgreSQL database per test, migrated, so tests run in parallel
//! without seeing each other's rows. `.ci/run` drops leftovers before a run.
//!
//! Migrations run as the owner (the admin URL's user), as in production; a
//! test that wants the services' rights uses [`TestDb::service`], a pool of
//! [`SERVICE_ROLE`], a login member of `taskflow_app`.

use sqlx::{postgres::PgPoolOptions, Connection, PgConnection, PgPool};

pub fn admin_url() -> String {
    std::env::var("TASKFLOW_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Replaces the database name in a `postgres://` URL.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{server}/{name}?{q}"),
        None => format!("{server}/{name}"),
    }
}

/// The login role tests connect as to have exactly the services' rights.
pub const SERVICE_ROLE: &str = "taskflow_test_service";

pub struct TestDb {
    pub name: String,
    /// The owner's URL.
    pub url: String,
    /// The owner's pool (it ran the migrations).
    pub pool: PgPool,
    /// [`SERVICE_ROLE`]'s URL: what a service connects with.
    pub service_url: String,
    /// A pool as [`SERVICE_ROLE`]; connects on first use.
    pub service: PgPool,
}

/// Creates and migrates a fresh database.
pub async fn fresh() -> TestDb {
    let name = format!("taskflow_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("connect to TASKFLOW_TEST_DATABASE_URL (PostgreSQL must be running)");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let url = with_database(&admin_url(), &name);
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .connect(&url)
        .await
        .expect("connect to test database");
    sqlx::migrate!("../migrations")
        .run(&pool)
        .await
        .expect("run migrations");
    let mut owner = pool.acquire().await.expect("a connection");
    let service_url = taskflow_infra::db::ensure_login_role(&mut owner, SERVICE_ROLE, &url)
        .await
        .expect("create the service login role");
    drop(owner);
    let service = PgPoolOptions::new()
        .max_connections(5)
        .connect_lazy(&service_url)
        .expect("service role URL");
    TestDb {
        name,
        url,
        pool,
        service_url,
        service,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres?sslmode=disable", "x"),
            "postgres://u@h:5432/x?sslmode=disable"
        );
        assert_eq!(super::with_database("postgres://h", "x"), "postgres://h/x");
    }
}
