//! Building and running the HTTP application.
//!
//! [`Application::build`] does everything that can fail (pool, migrations,
//! binding the port) before serving, so a caller learns the real port (tests
//! bind port 0) and gets errors before the first request.

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    middleware,
    response::IntoResponse,
    routing::{get, post},
    Json, Router,
};
use sqlx::PgPool;
use taskflow_infra::outbox::OutboxWaker;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::{
    audit,
    auth::{self, JwtKeys, SharedJwt},
    config::Settings,
    extract::MAX_BODY_BYTES,
    metrics::{self, HttpMetrics},
    openapi,
    problem::ApiError,
    tasks::handlers,
};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Database(#[from] taskflow_infra::db::DbError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub jwt: SharedJwt,
    /// Topic task events are enqueued for (`TASKFLOW_TOPIC_TASK_EVENTS`).
    pub topic: Arc<str>,
    pub metrics: HttpMetrics,
    /// Woken after every commit that wrote outbox rows.
    pub outbox: OutboxWaker,
}

/// The migrations shared by every Taskflow binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    Router::new()
        .route("/auth/signup", post(auth::signup))
        .route("/auth/login", post(auth::login))
        .route(
            "/tasks",
            post(handlers::create_task).get(handlers::list_tasks),
        )
        .route(
            "/tasks/{id}",
            get(handlers::get_task)
                .patch(handlers::patch_task)
                .delete(handlers::delete_task),
        )
        .route("/tasks/{id}/complete", post(handlers::complete_task))
        .route("/tasks/{id}/reopen", post(handlers::reopen_task))
        .route("/tasks/{id}/history", get(audit::handlers::task_history))
        .route("/audit", get(audit::handlers::list_audit))
        .route("/openapi.json", get(openapi_json))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi_json() -> impl IntoResponse {
    Json(openapi::document())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

pub struct Application {
    listener: TcpListener,
    port: u16,
    pool: PgPool,
    outbox: OutboxWaker,
    router: Router,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Connects the pool, runs the migrations, registers the HTTP metrics in
    /// `registry` and binds the HTTP listener.
    pub async fn build(settings: Settings, registry: prometheus::Registry) -> anyhow::Result<Self> {
        Ok(Self::try_build(settings, &registry).await?)
    }

    async fn try_build(
        settings: Settings,
        registry: &prometheus::Registry,
    ) -> Result<Self, AppError> {
        // Migrations as the owner, then a pool as the service role (least privilege).
        let database = taskflow_infra::db::DatabaseSettings {
            url: settings.database_url.clone(),
            migration_url: settings.database_migration_url.clone(),
            migrate: settings.database_migrate,
            max_connections: settings.database_max_connections,
        };
        let pool = taskflow_infra::db::connect(&database, &MIGRATOR).await?;

        let secret = match settings.jwt_secret {
            Some(s) => s,
            None => {
                tracing::warn!(
                    "TASKFLOW_JWT_SECRET is not set: using a random secret; \
                     tokens die with this process and do not work across replicas"
                );
                JwtKeys::random_secret()
            }
        };
        if secret.as_bytes().len() < 32 {
            tracing::warn!(
                "TASKFLOW_JWT_SECRET is shorter than 32 bytes; use a longer random value"
            );
        }
        let state = AppState {
            pool: pool.clone(),
            jwt: Arc::new(JwtKeys::new(&secret, settings.jwt_ttl_secs)),
            topic: Arc::from(settings.topic_task_events.as_str()),
            metrics: HttpMetrics::register(registry)?,
            outbox: OutboxWaker::new(pool.clone()),
        };
        let listener = TcpListener::bind(settings.http_addr)
            .await
            .map_err(|source| AppError::Bind {
                addr: settings.http_addr,
                source,
            })?;
        let port = listener
            .local_addr()
            .map_err(|source| AppError::Bind {
                addr: settings.http_addr,
                source,
            })?
            .port();
        tracing::info!(port, "HTTP API listening");
        Ok(Self {
            listener,
            port,
            pool,
            outbox: state.outbox.clone(),
            router: router(state),
        })
    }

    /// The port actually bound (useful when configured with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// The waker the API's writes call; give it to this process's relay so
    /// it wakes in-process instead of through `NOTIFY`.
    pub fn outbox_waker(&self) -> OutboxWaker {
        self.outbox.clone()
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets
    /// in-flight requests finish.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(AppError::Serve)?;
        Ok(())
    }
}
