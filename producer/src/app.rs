//! Building and running the HTTP application.
//!
//! [`Application::build`] does everything that can fail (pool, migrations,
//! binding the port) before serving, so a caller learns the real port (tests
//! bind port 0) and gets errors before the first request.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::DefaultBodyLimit,
    http::header,
    middleware,
    response::IntoResponse,
    routing::{get, post},
    Router,
};
use sqlx::PgPool;
use taskflow_infra::{feed::FeedNotifier, outbox::OutboxWaker, webhook::target::TargetPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::{
    audit,
    auth::{self, JwtKeys, SharedJwt},
    config::{Settings, SettingsError},
    extract::MAX_BODY_BYTES,
    feed::{self, credential::StreamTokenKeys, hub::FeedHub, FeedState},
    inbox,
    metrics::{self, HttpMetrics, StreamMetrics},
    middleware as mw, openapi, preferences,
    problem::ApiError,
    ratelimit::{AuthRateLimiter, SharedAuthRateLimiter},
    tasks::{handlers, store::purge_expired_idempotency_keys},
    tokens, web, webhooks,
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
    #[error("listening for feed notifications: {0}")]
    FeedListener(#[source] sqlx::Error),
    #[error("registering metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error(transparent)]
    Settings(#[from] SettingsError),
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
    pub auth_limiter: SharedAuthRateLimiter,
    /// See [`crate::ratelimit::client_ip`].
    pub trusted_proxy_hops: usize,
    /// An `Idempotency-Key` older than this is treated as new.
    pub idempotency_ttl: Duration,
    /// Budget of one request (see [`crate::middleware::timeout`]).
    pub request_timeout: Duration,
    /// The live streams and the inbox's feed writes.
    pub feed: FeedState,
    /// What webhook URLs may point at.
    pub webhook_policy: TargetPolicy,
}

/// The migrations shared by every Taskflow binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The API's routes, without middleware or state.
pub fn routes() -> Router<AppState> {
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
        .route(
            "/tasks/{id}/reminders/{rid}/snooze",
            post(handlers::snooze_reminder),
        )
        .route("/tasks/{id}/history", get(audit::handlers::task_history))
        .route(
            "/recurrence/preview",
            post(crate::recurrence::preview_recurrence),
        )
        .route("/audit", get(audit::handlers::list_audit))
        .route(
            "/tokens",
            post(tokens::handlers::create_token).get(tokens::handlers::list_tokens),
        )
        .route(
            "/tokens/{id}",
            axum::routing::delete(tokens::handlers::revoke_token),
        )
        .route("/feed/stream", get(feed::handlers::open_stream))
        .route("/feed/ws", get(feed::handlers::open_socket))
        .route(
            "/feed/stream-tokens",
            post(feed::handlers::create_stream_token),
        )
        .route(
            "/webhooks",
            post(webhooks::handlers::create_endpoint).get(webhooks::handlers::list_endpoints),
        )
        .route(
            "/webhooks/{id}",
            axum::routing::delete(webhooks::handlers::delete_endpoint),
        )
        .route(
            "/webhooks/{id}/enable",
            post(webhooks::handlers::enable_endpoint),
        )
        .route(
            "/webhooks/{id}/rotate-secret",
            post(webhooks::handlers::rotate_secret),
        )
        .route("/webhooks/{id}/test", post(webhooks::handlers::send_test))
        .route(
            "/webhooks/{id}/deliveries",
            get(webhooks::handlers::list_deliveries),
        )
        .route(
            "/preferences",
            get(preferences::get_preferences).put(preferences::put_preferences),
        )
        .route("/notifications", get(inbox::handlers::list_notifications))
        .route(
            "/notifications/unread-count",
            get(inbox::handlers::unread_count),
        )
        .route(
            "/notifications/read-all",
            post(inbox::handlers::mark_all_read),
        )
        .route("/notifications/{id}/read", post(inbox::handlers::mark_read))
        .route("/openapi.json", get(openapi_json))
        // The web page: not API routes, so not in the OpenAPI document.
        .merge(web::routes())
}

/// `routes` under the production middleware (outermost first): tracing,
/// metrics, panic catching, the request timeout, the body limit; plus the
/// problem+json fallbacks for unknown paths and methods.
pub fn layered(routes: Router<AppState>, state: AppState) -> Router {
    let metrics = state.metrics.clone();
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(
            state.request_timeout,
            mw::timeout,
        ))
        .layer(mw::catch_panic(metrics.clone()))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

pub fn router(state: AppState) -> Router {
    layered(routes(), state)
}

async fn openapi_json() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        openapi::document_json(),
    )
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
    idempotency_ttl: Duration,
    /// Ends the live streams and the feed listener; cancelled when `run_until`'s shutdown
    /// fires, or when the application is dropped unrun.
    feed_stop: tokio_util::sync::DropGuard,
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
    ///
    /// Fails without a JWT secret of at least 32 bytes: a per-process random
    /// secret would make tokens fail across replicas and restarts.
    pub async fn build(settings: Settings, registry: prometheus::Registry) -> anyhow::Result<Self> {
        Ok(Self::try_build(settings, &registry, routes()).await?)
    }

    /// [`Application::build`] serving `routes` (e.g. [`routes`] plus extra
    /// ones) under the production middleware.
    pub async fn build_with_routes(
        settings: Settings,
        registry: prometheus::Registry,
        routes: Router<AppState>,
    ) -> anyhow::Result<Self> {
        Ok(Self::try_build(settings, &registry, routes).await?)
    }

    async fn try_build(
        settings: Settings,
        registry: &prometheus::Registry,
        routes: Router<AppState>,
    ) -> Result<Self, AppError> {
        // Checked before anything connects, so a misconfigured replica fails
        // at once with the reason.
        let secret = settings
            .jwt_secret
            .clone()
            .ok_or(SettingsError::MissingJwtSecret)?;
        secret.check()?;
        // Migrations as the owner, then a pool as the service role (least privilege).
        let database = taskflow_infra::db::DatabaseSettings {
            url: settings.database_url.clone(),
            migration_url: settings.database_migration_url.clone(),
            migrate: settings.database_migrate,
            max_connections: settings.database_max_connections,
        };
        let pool = taskflow_infra::db::connect(&database, &MIGRATOR).await?;
        let feed_stop = CancellationToken::new();
        let feed = FeedState {
            hub: FeedHub::start(pool.clone(), feed_stop.clone())
                .await
                .map_err(AppError::FeedListener)?,
            notifier: FeedNotifier::spawn(pool.clone()),
            stream_keys: Arc::new(StreamTokenKeys::new(&secret)),
            heartbeat: settings.stream_heartbeat,
            stop: feed_stop.clone(),
            metrics: StreamMetrics::register(registry)?,
        };

        let state = AppState {
            pool: pool.clone(),
            jwt: Arc::new(JwtKeys::new(&secret, settings.jwt_ttl_secs)),
            topic: Arc::from(settings.topic_task_events.as_str()),
            metrics: HttpMetrics::register(registry)?,
            outbox: OutboxWaker::new(pool.clone()),
            auth_limiter: Arc::new(AuthRateLimiter::new(
                settings.auth_rate_per_ip,
                settings.auth_rate_per_account,
            )),
            trusted_proxy_hops: settings.trusted_proxy_hops,
            idempotency_ttl: settings.idempotency_ttl,
            request_timeout: settings.request_timeout,
            feed,
            webhook_policy: TargetPolicy {
                allow_private: settings.webhook_allow_private,
            },
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
            idempotency_ttl: settings.idempotency_ttl,
            router: layered(routes, state),
            feed_stop: feed_stop.drop_guard(),
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
    /// in-flight requests finish; live streams are told to end (`event: end`) at once,
    /// since they would otherwise never finish. Handlers see the peer address
    /// (`ConnectInfo`), which the auth rate limits key on. Expired
    /// idempotency keys are purged in the background meanwhile.
    pub async fn run_until(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stop_purge = shutdown.child_token();
        let purge = tokio::spawn(purge_idempotency_keys(
            self.pool.clone(),
            self.idempotency_ttl,
            stop_purge.clone(),
        ));
        let feed_stop = self.feed_stop.disarm();
        let end_streams = tokio::spawn({
            let shutdown = shutdown.clone();
            let feed_stop = feed_stop.clone();
            async move {
                shutdown.cancelled().await;
                feed_stop.cancel();
            }
        });
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move { shutdown.cancelled().await }
        })
        .await
        .map_err(AppError::Serve);
        stop_purge.cancel();
        let _ = purge.await;
        feed_stop.cancel();
        end_streams.abort();
        served?;
        Ok(())
    }
}

/// Deletes expired idempotency keys every `min(ttl, 1 h)` until `shutdown`.
/// An expired key is already treated as new when reused; this only keeps the
/// table from growing forever. Failures are logged and retried next round.
async fn purge_idempotency_keys(pool: PgPool, ttl: Duration, shutdown: CancellationToken) {
    let period = ttl.min(Duration::from_secs(3600));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match purge_expired_idempotency_keys(&pool, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "purged expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "purging expired idempotency keys"),
        }
    }
}
