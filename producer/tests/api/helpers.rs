//! Test harness: one fresh database per test, the app on port 0, typed
//! request helpers, and direct SQL to check what was (not) written.

use std::sync::Once;

use reqwest::{header, Response, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use taskflow_infra::db;
use taskflow_producer::{app::routes, config::JwtSecret, AppState, Application, Settings};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The login role the app under test connects as (a member of `taskflow_app`).
pub const SERVICE_ROLE: &str = "taskflow_test_service";

static LOGS: Once = Once::new();

/// Logs are silent unless `TASKFLOW_TEST_LOG` is set (then `TASKFLOW_LOG`
/// filters them, as in production).
fn init_logs() {
    LOGS.call_once(|| {
        if std::env::var_os("TASKFLOW_TEST_LOG").is_some() {
            taskflow_infra::telemetry::init_tracing();
        }
    });
}

fn admin_url() -> String {
    std::env::var("TASKFLOW_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned())
}

/// `admin_url` with its database name replaced by `db`, query kept.
fn with_database(admin_url: &str, db: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let prefix = match base.rsplit_once('/') {
        Some((p, _)) if p.contains("//") && !p.ends_with('/') => p.to_owned(),
        _ => base.trim_end_matches('/').to_owned(),
    };
    match query {
        Some(q) => format!("{prefix}/{db}?{q}"),
        None => format!("{prefix}/{db}"),
    }
}

pub struct TestApp {
    pub address: String,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub secret: String,
    pub topic: String,
    pub registry: prometheus::Registry,
    /// What the app was built with (another replica on the same database reuses them).
    pub settings: Settings,
    db_name: String,
    shutdown: CancellationToken,
}

/// A second API process on a [`TestApp`]'s database (same secret): stopped when dropped;
/// the database stays the [`TestApp`]'s.
pub struct Replica {
    pub address: String,
    pub registry: prometheus::Registry,
    shutdown: CancellationToken,
}

impl Replica {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, routes()).await
}

/// A fresh database and its URL.
pub async fn create_database() -> (String, String) {
    init_logs();
    let admin = admin_url();
    let db_name = format!("taskflow_test_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .expect("connect to the admin database (set TASKFLOW_TEST_DATABASE_URL)");
    conn.execute(format!(r#"CREATE DATABASE "{db_name}""#).as_str())
        .await
        .expect("create test database");
    conn.close().await.ok();
    let url = with_database(&admin, &db_name);
    (db_name, url)
}

/// Drops a database made by [`create_database`].
pub async fn drop_database(db_name: &str) {
    if let Ok(mut conn) = PgConnection::connect(&admin_url()).await {
        let _ = conn
            .execute(format!(r#"DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)"#).as_str())
            .await;
    }
}

/// Like [`spawn_app`], serving `routes` (the production middleware is
/// applied to them), with `tweak` applied to the settings. The auth rate
/// limits are high unless `tweak` lowers them.
pub async fn spawn_app_with(
    tweak: impl FnOnce(&mut Settings),
    routes: axum::Router<AppState>,
) -> TestApp {
    let (db_name, owner_url) = create_database().await;
    // Least privilege as in production: migrations as the owner, the app as a
    // login member of `taskflow_app` (created once per cluster; same password
    // as the admin URL's, if any).
    let mut owner = PgConnection::connect(&owner_url)
        .await
        .expect("connect to the test database");
    taskflow_producer::app::MIGRATOR
        .run(&mut owner)
        .await
        .expect("run migrations");
    let service_url = db::ensure_login_role(&mut owner, SERVICE_ROLE, &owner_url)
        .await
        .expect("create the service login role");
    owner.close().await.ok();

    let secret = format!("test-secret-{}", Uuid::new_v4().simple());
    let topic = format!("test.task-events.{}", Uuid::new_v4().simple());
    let mut settings = Settings::new(service_url);
    settings.database_migration_url = Some(owner_url);
    settings.jwt_secret = Some(JwtSecret::new(secret.clone()));
    settings.topic_task_events = topic.clone();
    settings.database_max_connections = 8;
    settings.auth_rate_per_ip = std::num::NonZeroU32::new(100_000).unwrap();
    settings.auth_rate_per_account = std::num::NonZeroU32::new(100_000).unwrap();
    tweak(&mut settings);
    let registry = prometheus::Registry::new();
    let app = Application::build_with_routes(settings.clone(), registry.clone(), routes)
        .await
        .expect("build the application");
    let address = format!("http://127.0.0.1:{}", app.port());
    let pool = app.pool();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until(shutdown.clone()));
    TestApp {
        address,
        pool,
        client: reqwest::Client::new(),
        secret,
        topic,
        registry,
        settings,
        db_name,
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // Async work cannot run in Drop: use a short-lived runtime on its own
        // thread. FORCE ends the app's pooled connections.
        let db = self.db_name.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(drop_database(&db));
        })
        .join();
    }
}

/// An outbox row, as the relay will see it.
#[derive(Debug, sqlx::FromRow)]
pub struct OutboxRow {
    pub topic: String,
    pub partition_key: String,
    pub event_type: String,
    pub payload: Value,
    pub traceparent: Option<String>,
}

impl OutboxRow {
    pub fn version(&self) -> i64 {
        self.payload["event"]["metadata"]["version"]
            .as_i64()
            .expect("metadata.version")
    }
}

impl TestApp {
    /// Another API process on this app's database, as a second replica would run.
    pub async fn spawn_replica(&self) -> Replica {
        let registry = prometheus::Registry::new();
        let mut settings = self.settings.clone();
        // The schema is in place: a replica starting next to a running one migrates nothing.
        settings.database_migrate = false;
        let app = Application::build(settings, registry.clone())
            .await
            .expect("build the replica");
        let address = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        tokio::spawn(app.run_until(shutdown.clone()));
        Replica {
            address,
            registry,
            shutdown,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn signup(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/signup"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("signup request")
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.client
            .post(self.url("/auth/login"))
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Signs up a fresh user and returns (user id, bearer token).
    pub async fn new_user(&self) -> (Uuid, String) {
        let email = format!("u{}@example.com", Uuid::new_v4().simple());
        let r = self.signup(&email, "correct horse battery").await;
        assert_eq!(r.status(), StatusCode::CREATED);
        let user: Value = r.json().await.expect("signup body");
        let id = Uuid::parse_str(user["id"].as_str().expect("id")).expect("uuid");
        let r = self.login(&email, "correct horse battery").await;
        assert_eq!(r.status(), StatusCode::OK);
        let token: Value = r.json().await.expect("login body");
        (
            id,
            token["access_token"].as_str().expect("token").to_owned(),
        )
    }

    /// A connection as the database's owner, for changes the service role
    /// may not make (e.g. backdating a token's expiry).
    pub async fn owner(&self) -> PgConnection {
        PgConnection::connect(&with_database(&admin_url(), &self.db_name))
            .await
            .expect("connect as the owner")
    }

    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(token)
    }

    pub async fn create_task(&self, token: &str, body: Value) -> Response {
        self.req(reqwest::Method::POST, "/tasks", token)
            .json(&body)
            .send()
            .await
            .expect("create request")
    }

    /// Creates a task that must succeed and returns its JSON.
    pub async fn create_ok(&self, token: &str, body: Value) -> Value {
        let r = self.create_task(token, body).await;
        assert_eq!(r.status(), StatusCode::CREATED, "{:?}", r.text().await);
        r.json().await.expect("task body")
    }

    pub async fn get_task(&self, token: &str, id: &str) -> Response {
        self.req(reqwest::Method::GET, &format!("/tasks/{id}"), token)
            .send()
            .await
            .expect("get request")
    }

    pub async fn patch_task(
        &self,
        token: &str,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Response {
        let mut r = self
            .req(reqwest::Method::PATCH, &format!("/tasks/{id}"), token)
            .json(&body);
        if let Some(m) = if_match {
            r = r.header(header::IF_MATCH, m);
        }
        r.send().await.expect("patch request")
    }

    /// POST /tasks/{id}/{action} (complete or reopen).
    pub async fn action(
        &self,
        token: &str,
        id: &str,
        action: &str,
        if_match: Option<&str>,
    ) -> Response {
        let mut r = self.req(
            reqwest::Method::POST,
            &format!("/tasks/{id}/{action}"),
            token,
        );
        if let Some(m) = if_match {
            r = r.header(header::IF_MATCH, m);
        }
        r.send().await.expect("action request")
    }

    pub async fn delete_task(&self, token: &str, id: &str, if_match: Option<&str>) -> Response {
        let mut r = self.req(reqwest::Method::DELETE, &format!("/tasks/{id}"), token);
        if let Some(m) = if_match {
            r = r.header(header::IF_MATCH, m);
        }
        r.send().await.expect("delete request")
    }

    pub async fn list(&self, token: &str, query: &str) -> Response {
        self.req(reqwest::Method::GET, &format!("/tasks{query}"), token)
            .send()
            .await
            .expect("list request")
    }

    pub async fn task_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM tasks")
            .fetch_one(&self.pool)
            .await
            .expect("count tasks")
    }

    pub async fn outbox(&self) -> Vec<OutboxRow> {
        sqlx::query_as(
            "SELECT topic, partition_key, event_type, payload, traceparent FROM outbox ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read outbox")
    }

    /// Asserts that nothing at all was written to tasks or the outbox.
    pub async fn assert_nothing_written(&self) {
        assert_eq!(self.task_count().await, 0, "a task row was written");
        assert!(self.outbox().await.is_empty(), "an outbox row was written");
    }
}

/// Asserts a problem+json answer with `status` and returns its body.
pub async fn assert_problem(r: Response, status: StatusCode) -> Value {
    assert_eq!(r.status(), status);
    let ct = r
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let body: Value = r.json().await.expect("problem body");
    assert_eq!(body["status"], status.as_u16());
    assert!(body["type"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

/// The `field`s of a validation problem.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub fn etag(r: &Response) -> String {
    r.headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .expect("ETag header")
        .to_owned()
}

#[test]
fn database_url_rewriting() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@h/postgres?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
}
