//! The API and the outbox relay assembled in-process, as `taskflow-api`'s
//! `main` does, against a fresh database and a topic of the test's own.

use std::time::Duration;

use serde_json::{json, Value};
use taskflow_infra::{
    config::KafkaSettings,
    outbox::{Relay, RelayConfig},
};
use taskflow_producer::{config::JwtSecret, Application, Settings};
use taskflow_schemas::Codec;
use tokio_util::sync::CancellationToken;

use crate::db::TestDb;

/// The relay's settings in tests: short timers so a take-over waits out the
/// previous leader's message timeout in seconds, not tens of seconds.
pub fn relay_config() -> RelayConfig {
    RelayConfig {
        idle_poll: Duration::from_millis(200),
        message_timeout: Duration::from_secs(3),
        fence_margin: Duration::from_millis(500),
        heartbeat: Duration::from_millis(200),
        retry_max: Duration::from_secs(2),
        ..RelayConfig::default()
    }
}

pub struct TestSystem {
    pub api: String,
    pub db: TestDb,
    pub topic: String,
    pub codec: Codec,
    pub http: reqwest::Client,
    pub metrics: prometheus::Registry,
    pub brokers: String,
    shutdown: CancellationToken,
    relay_shutdown: CancellationToken,
}

impl TestSystem {
    /// Starts API + relay publishing to `topic` on `brokers`.
    pub async fn start(brokers: &str, topic: &str) -> Self {
        crate::init_test_logging();
        let db = crate::db::fresh().await;
        let registry_url = crate::registry::registry_url().await;
        let codec = Codec::new(&registry_url);
        let metrics = prometheus::Registry::new();
        let mut settings = Settings::new(db.url.clone());
        settings.topic_task_events = topic.to_owned();
        // Test receivers listen on 127.0.0.1 over http; the strict policy has its own tests.
        settings.webhook_allow_private = true;
        settings.jwt_secret = Some(JwtSecret::new(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )));
        let app = Application::build(settings, metrics.clone())
            .await
            .expect("build API");
        let api = format!("http://127.0.0.1:{}", app.port());
        let shutdown = CancellationToken::new();
        let relay_config = relay_config();
        let relay_shutdown = shutdown.child_token();
        let relay = Relay::new(
            db.pool.clone(),
            &KafkaSettings::new(brokers, "taskflow-test-relay"),
            codec.clone(),
            relay_config,
            &metrics,
        )
        .expect("relay")
        .with_waker(app.outbox_waker());
        tokio::spawn(relay.run(relay_shutdown.clone()));
        tokio::spawn(app.run_until(shutdown.clone()));
        Self {
            api,
            db,
            topic: topic.to_owned(),
            codec,
            http: reqwest::Client::new(),
            metrics,
            brokers: brokers.to_owned(),
            shutdown,
            relay_shutdown,
        }
    }

    /// Stops this system's relay (as a replica shutting down would); the API
    /// keeps running.
    pub fn stop_relay(&self) {
        self.relay_shutdown.cancel();
    }

    /// Another relay on the same database, as a second API replica runs one.
    /// Returns its metrics registry; it stops with the system.
    pub fn spawn_standby_relay(&self) -> prometheus::Registry {
        let metrics = prometheus::Registry::new();
        let relay = Relay::new(
            self.db.pool.clone(),
            &KafkaSettings::new(&self.brokers, "taskflow-test-relay-2"),
            self.codec.clone(),
            relay_config(),
            &metrics,
        )
        .expect("standby relay");
        tokio::spawn(relay.run(self.shutdown.clone()));
        metrics
    }

    /// Signs a new user up and returns a bearer token.
    pub async fn user(&self) -> String {
        let email = format!("{}@example.test", uuid::Uuid::new_v4().simple());
        let creds = json!({"email": email, "password": "a long enough passphrase"});
        let r = self
            .http
            .post(format!("{}/auth/signup", self.api))
            .json(&creds)
            .send()
            .await
            .expect("signup");
        assert!(r.status().is_success(), "signup: {}", r.status());
        let r = self
            .http
            .post(format!("{}/auth/login", self.api))
            .json(&creds)
            .send()
            .await
            .expect("login");
        assert!(r.status().is_success(), "login: {}", r.status());
        let body: Value = r.json().await.expect("login body");
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// One API request as `token`: its status and JSON body (`Null` when the body is not
    /// JSON, e.g. a 204).
    pub async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn outbox_len(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.db.pool)
            .await
            .expect("count outbox")
    }
}

impl Drop for TestSystem {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
