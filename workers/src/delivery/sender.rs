//! The sender: claims due deliveries of every channel, sends each webhook signed and each
//! address's due mail as one message (a digest when there are several), and records each
//! attempt. The guarantees are in the parent module's header and in [`super::email`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use taskflow_infra::backoff::Backoff;
use taskflow_infra::config::{env_or, ConfigError};
use taskflow_infra::feed::FeedNotifier;
use taskflow_infra::webhook::{
    self,
    signing::signature,
    target::{check_url, GuardedResolver, TargetPolicy},
};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::email::{self, EmailError, EmailPayload, EmailSettings};
use super::store::{self, Attempt, ClaimLimits, Claimed, Recorded};

/// How long shutdown waits for attempts in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// How deliveries are sent; every field has a `TASKFLOW_WEBHOOK_*` variable.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `TASKFLOW_WEBHOOK_ALLOW_PRIVATE` (false): http and internal addresses allowed.
    pub policy: TargetPolicy,
    /// `TASKFLOW_WEBHOOK_TIMEOUT_MS` (10000): one attempt, connect to last byte.
    pub timeout: Duration,
    /// `TASKFLOW_WEBHOOK_CONCURRENCY` (4): deliveries in flight per endpoint.
    pub per_endpoint: usize,
    /// `TASKFLOW_WEBHOOK_MAX_ATTEMPTS` (10): then the delivery is `failed`.
    pub max_attempts: u32,
    /// `TASKFLOW_WEBHOOK_RETRY_INITIAL_MS` (5000) and `_RETRY_MAX_MS` (3600000): the
    /// backoff between attempts, with jitter.
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `TASKFLOW_WEBHOOK_DISABLE_AFTER_SECS` (259200, three days): an endpoint failing
    /// every attempt this long is disabled.
    pub disable_after: Duration,
    /// Deliveries claimed per pass.
    pub batch: i64,
    /// Longest sleep without a wake-up (a lost NOTIFY costs at most this).
    pub max_idle: Duration,
    /// The SMTP server (`TASKFLOW_SMTP_*`, read by the notifier's settings); `None`: the
    /// email channel is off, no mail is planned or sent.
    pub email: Option<EmailSettings>,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            policy: TargetPolicy::default(),
            timeout: Duration::from_secs(10),
            per_endpoint: 4,
            max_attempts: 10,
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(3600),
            disable_after: Duration::from_secs(3 * 24 * 3600),
            batch: 256,
            max_idle: Duration::from_secs(30),
            email: None,
        }
    }
}

impl DeliverySettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        let ms = |name: &str, default: Duration| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(env_or(
                name,
                u64::try_from(default.as_millis()).unwrap_or(u64::MAX),
            )?))
        };
        Ok(Self {
            policy: TargetPolicy {
                allow_private: env_or("TASKFLOW_WEBHOOK_ALLOW_PRIVATE", false)?,
            },
            timeout: ms("TASKFLOW_WEBHOOK_TIMEOUT_MS", d.timeout)?.max(Duration::from_millis(1)),
            per_endpoint: env_or("TASKFLOW_WEBHOOK_CONCURRENCY", d.per_endpoint)?.max(1),
            max_attempts: env_or("TASKFLOW_WEBHOOK_MAX_ATTEMPTS", d.max_attempts)?.max(1),
            retry_initial: ms("TASKFLOW_WEBHOOK_RETRY_INITIAL_MS", d.retry_initial)?,
            retry_max: ms("TASKFLOW_WEBHOOK_RETRY_MAX_MS", d.retry_max)?,
            disable_after: Duration::from_secs(env_or(
                "TASKFLOW_WEBHOOK_DISABLE_AFTER_SECS",
                d.disable_after.as_secs(),
            )?),
            ..d
        })
    }

    /// A claim outlives the attempt it covers, so no other sender takes a row in flight.
    /// An SMTP exchange is several commands, each bounded by the SMTP timeout: the lease
    /// covers the longer of the two channels' bounds.
    fn lease(&self) -> Duration {
        let timeout = match &self.email {
            Some(e) => self.timeout.max(e.timeout),
            None => self.timeout,
        };
        timeout * 2 + Duration::from_secs(5)
    }

    fn channels(&self) -> Vec<String> {
        let mut c = vec!["webhook".to_owned()];
        if self.email.is_some() {
            c.push("email".to_owned());
        }
        c
    }
}

/// When the next attempt after failed attempt number `attempt` starts; `None` when the
/// attempts are exhausted. `unit` in [0, 1) is the jitter.
pub fn next_attempt(
    attempt: i32,
    settings: &DeliverySettings,
    now: DateTime<Utc>,
    unit: f64,
) -> Option<DateTime<Utc>> {
    let attempt = u32::try_from(attempt).unwrap_or(0);
    if attempt >= settings.max_attempts {
        return None;
    }
    let delay = Backoff::new(settings.retry_initial, settings.retry_max).jittered(attempt, unit);
    Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(1)))
}

/// When each delivery of one failed mail (`attempts[i]` is delivery i's attempt number) is
/// tried again: all at one instant, so a digest stays one digest, backed off by the
/// group's highest attempt; `None` for a delivery whose attempts are exhausted, and for all
/// of them after a `permanent` failure.
pub fn group_retry(
    attempts: &[i32],
    permanent: bool,
    settings: &DeliverySettings,
    now: DateTime<Utc>,
    unit: f64,
) -> Vec<Option<DateTime<Utc>>> {
    let limit = i32::try_from(settings.max_attempts).unwrap_or(i32::MAX);
    let highest = attempts.iter().copied().max().unwrap_or(0);
    let at = next_attempt(highest.min(limit - 1), settings, now, unit);
    attempts
        .iter()
        .map(|&a| if permanent || a >= limit { None } else { at })
        .collect()
}

/// Bounded labels only: outcome.
#[derive(Clone)]
pub struct DeliveryMetrics {
    attempts: IntCounterVec,
    latency: Histogram,
    in_flight: IntGauge,
    completed: IntCounterVec,
    email_attempts: IntCounterVec,
    email_latency: Histogram,
    email_completed: IntCounterVec,
}

impl DeliveryMetrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            attempts: IntCounterVec::new(
                Opts::new(
                    "taskflow_webhook_attempts_total",
                    "Webhook delivery attempts by outcome: succeeded (2xx), http_error (another status), transport_error (refused target, DNS, connect, timeout).",
                ),
                &["outcome"],
            )?,
            latency: Histogram::with_opts(
                HistogramOpts::new(
                    "taskflow_webhook_attempt_seconds",
                    "Duration of one webhook attempt, request to response (or error).",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
            in_flight: IntGauge::new(
                "taskflow_webhook_in_flight",
                "Webhook attempts in flight in this process.",
            )?,
            completed: IntCounterVec::new(
                Opts::new(
                    "taskflow_webhook_deliveries_total",
                    "Deliveries finished by outcome: succeeded, failed (attempts exhausted), cancelled (endpoint deleted or disabled), endpoint_disabled (the attempt that disabled its endpoint).",
                ),
                &["outcome"],
            )?,
            email_attempts: IntCounterVec::new(
                Opts::new(
                    "taskflow_email_attempts_total",
                    "Mails attempted (a digest counts once) by outcome: succeeded, transient (4xx reply), permanent (5xx reply or an unbuildable mail), transport_error (connect, TLS, timeout), and by kind: single, digest.",
                ),
                &["outcome", "kind"],
            )?,
            email_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "taskflow_email_attempt_seconds",
                    "Duration of one SMTP attempt, connect (or pooled connection) to the final reply.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )?,
            email_completed: IntCounterVec::new(
                Opts::new(
                    "taskflow_email_deliveries_total",
                    "Email deliveries (one per reminder) finished by outcome: succeeded, failed.",
                ),
                &["outcome"],
            )?,
        };
        // Every outcome is exported from the start (at 0): a dashboard or an alert on a
        // failure rate then sees a series before the first failure.
        for outcome in ["succeeded", "http_error", "transport_error"] {
            m.attempts.with_label_values(&[outcome]);
        }
        for outcome in ["succeeded", "failed", "cancelled", "endpoint_disabled"] {
            m.completed.with_label_values(&[outcome]);
        }
        for outcome in ["succeeded", "transient", "permanent", "transport_error"] {
            for kind in ["single", "digest"] {
                m.email_attempts.with_label_values(&[outcome, kind]);
            }
        }
        for outcome in ["succeeded", "failed"] {
            m.email_completed.with_label_values(&[outcome]);
        }
        registry.register(Box::new(m.attempts.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.in_flight.clone()))?;
        registry.register(Box::new(m.completed.clone()))?;
        registry.register(Box::new(m.email_attempts.clone()))?;
        registry.register(Box::new(m.email_latency.clone()))?;
        registry.register(Box::new(m.email_completed.clone()))?;
        Ok(m)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("building the webhook client: {0}")]
    Client(#[from] reqwest::Error),
    #[error(transparent)]
    Email(#[from] EmailError),
}

type Smtp = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;

/// Per-target attempts in flight in this process.
#[derive(Clone, Default)]
struct InFlight(Arc<Mutex<HashMap<String, usize>>>);

impl InFlight {
    fn add(&self, target: &str, delta: isize) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(target.to_owned()).or_default();
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            map.remove(target);
        }
    }

    fn snapshot(&self) -> (Vec<String>, Vec<i32>) {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .map(|(t, n)| (t.clone(), i32::try_from(*n).unwrap_or(i32::MAX)))
            .unzip()
    }
}

/// Starts the sender; it stops (after the attempts in flight, at most one timeout) when
/// `shutdown` is cancelled.
pub fn spawn_sender(
    pool: PgPool,
    settings: DeliverySettings,
    metrics: DeliveryMetrics,
    feed: FeedNotifier,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, SenderError> {
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver {
            policy: settings.policy,
        }))
        .timeout(settings.timeout)
        // A redirect could lead anywhere, internal addresses included: a 3xx is a failure.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("Taskflow-Webhooks/1")
        .build()?;
    // Built once: it keeps a pool of SMTP connections.
    let smtp = settings.email.as_ref().map(email::transport).transpose()?;
    Ok(tokio::spawn(run(
        pool, settings, client, smtp, metrics, feed, shutdown,
    )))
}

async fn run(
    pool: PgPool,
    settings: DeliverySettings,
    client: reqwest::Client,
    smtp: Option<Smtp>,
    metrics: DeliveryMetrics,
    feed: FeedNotifier,
    shutdown: CancellationToken,
) {
    let in_flight = InFlight::default();
    let freed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    let mut listener = listen(&pool).await;
    let mut failures = 0u32;
    let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let limits = ClaimLimits {
        per_target: i64::try_from(settings.per_endpoint).unwrap_or(i64::MAX),
        limit: settings.batch,
        digest_max: settings.email.as_ref().map_or(1, |e| e.digest_max.max(1)),
        channels: settings.channels(),
        lease: settings.lease(),
    };
    while !shutdown.is_cancelled() {
        while tasks.try_join_next().is_some() {}
        let (targets, used) = in_flight.snapshot();
        let claimed = match store::claim_with(&pool, &targets, &used, &limits).await {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "claiming webhook deliveries failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay(failures)) => {}
                    _ = shutdown.cancelled() => {}
                }
                continue;
            }
        };
        let full = i64::try_from(claimed.len()).unwrap_or(i64::MAX) >= settings.batch;
        let (mails, claimed): (Vec<Claimed>, Vec<Claimed>) =
            claimed.into_iter().partition(|d| d.channel == "email");
        // One mail per address: the claim took all of an address's due rows together.
        let mut by_address: std::collections::BTreeMap<String, Vec<Claimed>> =
            std::collections::BTreeMap::new();
        for d in mails {
            by_address.entry(d.target.clone()).or_default().push(d);
        }
        for (address, mut group) in by_address {
            // Oldest first (ids are UUIDv7): the same group always lists its reminders in
            // the same order.
            group.sort_by_key(|d| d.id);
            let Some(smtp) = smtp.clone() else {
                // Not claimable without SMTP (the claim filters by channel).
                continue;
            };
            in_flight.add(&address, 1);
            metrics.in_flight.inc();
            let (pool, settings, metrics, in_flight, freed) = (
                pool.clone(),
                settings.clone(),
                metrics.clone(),
                in_flight.clone(),
                Arc::clone(&freed),
            );
            tasks.spawn(async move {
                deliver_mail(&pool, &settings, &smtp, &metrics, &address, &group).await;
                in_flight.add(&address, -1);
                metrics.in_flight.dec();
                freed.notify_one();
            });
        }
        for d in claimed {
            if !d.live {
                if let Err(e) = store::cancel(&pool, d.id).await {
                    tracing::warn!(error = %e, "cancelling a delivery of a disabled endpoint");
                }
                metrics.completed.with_label_values(&["cancelled"]).inc();
                continue;
            }
            in_flight.add(&d.target, 1);
            metrics.in_flight.inc();
            let (pool, settings, client, metrics, feed, in_flight, freed) = (
                pool.clone(),
                settings.clone(),
                client.clone(),
                metrics.clone(),
                feed.clone(),
                in_flight.clone(),
                Arc::clone(&freed),
            );
            tasks.spawn(async move {
                deliver(&pool, &settings, &client, &metrics, &feed, &d).await;
                in_flight.add(&d.target, -1);
                metrics.in_flight.dec();
                freed.notify_one();
            });
        }
        if full {
            continue;
        }
        let sleep = match store::next_due(&pool, &limits.channels).await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(settings.max_idle),
            Ok(None) => settings.max_idle,
            Err(_) => Duration::from_secs(1),
        };
        // A due delivery of a target at its limit waits for a freed slot, not a busy loop.
        let sleep = if sleep.is_zero() && !in_flight.snapshot().0.is_empty() {
            settings.max_idle
        } else {
            sleep
        };
        let remote = async {
            match listener.as_mut() {
                Some(l) => {
                    if l.recv().await.is_err() {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = remote => {}
            _ = freed.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    // Attempts in flight get a few seconds to finish; one cut off here keeps its lease and
    // is sent again after it, with the same webhook-id.
    let drain = tokio::time::timeout(settings.timeout.min(DRAIN), async {
        while tasks.join_next().await.is_some() {}
    });
    if drain.await.is_err() {
        tasks.abort_all();
    }
}

async fn listen(pool: &PgPool) -> Option<PgListener> {
    let mut l = PgListener::connect_with(pool)
        .await
        .map_err(|e| tracing::warn!(error = %e, "webhook LISTEN failed; polling instead"))
        .ok()?;
    l.listen(webhook::NOTIFY_CHANNEL)
        .await
        .map_err(|e| tracing::warn!(error = %e, "webhook LISTEN failed; polling instead"))
        .ok()?;
    Some(l)
}

/// One attempt and its record.
async fn deliver(
    pool: &PgPool,
    settings: &DeliverySettings,
    client: &reqwest::Client,
    metrics: &DeliveryMetrics,
    feed: &FeedNotifier,
    d: &Claimed,
) {
    let attempt = send(client, settings.policy, d).await;
    metrics
        .latency
        .observe(f64::from(attempt.latency_ms) / 1000.0);
    let outcome = match (attempt.succeeded, attempt.status) {
        (true, _) => "succeeded",
        (false, Some(_)) => "http_error",
        (false, None) => "transport_error",
    };
    metrics.attempts.with_label_values(&[outcome]).inc();
    let retry_at = if attempt.succeeded {
        None
    } else {
        next_attempt(d.attempts, settings, Utc::now(), rand::random::<f64>())
    };
    match store::record(pool, d, &attempt, retry_at, settings.disable_after).await {
        Ok(Recorded::Succeeded) => metrics.completed.with_label_values(&["succeeded"]).inc(),
        Ok(Recorded::Failed) => metrics.completed.with_label_values(&["failed"]).inc(),
        Ok(Recorded::Disabled { user_id }) => {
            metrics
                .completed
                .with_label_values(&["endpoint_disabled"])
                .inc();
            feed.notify(user_id);
            tracing::warn!(endpoint_id = ?d.endpoint_id, "webhook endpoint disabled after failing continuously");
        }
        Ok(Recorded::Retry(_)) => {}
        Ok(Recorded::Lost) => {
            tracing::warn!(delivery_id = %d.id, "a webhook attempt outlived its lease; another sender owns the delivery")
        }
        // The lease runs out and the delivery is attempted again, with the same webhook-id.
        Err(e) => {
            tracing::warn!(error = %e, delivery_id = %d.id, "recording a webhook attempt failed")
        }
    }
}

/// One mail (a single reminder or a digest) for `group`, all due rows of `address`, and
/// its attempt recorded on each row.
async fn deliver_mail(
    pool: &PgPool,
    settings: &DeliverySettings,
    smtp: &Smtp,
    metrics: &DeliveryMetrics,
    address: &str,
    group: &[Claimed],
) {
    let Some(email_settings) = settings.email.as_ref() else {
        return;
    };
    // A payload that does not parse is our bug, not the server's: that row fails alone.
    let mut sendable: Vec<(&Claimed, EmailPayload)> = Vec::with_capacity(group.len());
    for d in group {
        match serde_json::from_str::<EmailPayload>(&d.payload) {
            Ok(p) => sendable.push((d, p)),
            Err(e) => {
                let attempt = Attempt {
                    started_at: Utc::now(),
                    latency_ms: 0,
                    status: None,
                    error: Some(EmailError::Payload(e).to_string()),
                    succeeded: false,
                };
                record_mail(pool, settings, metrics, d, &attempt, None).await;
            }
        }
    }
    if sendable.is_empty() {
        return;
    }
    let ids: Vec<uuid::Uuid> = sendable.iter().map(|(d, _)| d.id).collect();
    let payloads: Vec<EmailPayload> = sendable.iter().map(|(_, p)| p.clone()).collect();
    let sent = email::send(smtp, email_settings, address, &ids, &payloads).await;
    let kind = if ids.len() > 1 { "digest" } else { "single" };
    let outcome = match (&sent.attempt, sent.permanent) {
        (a, _) if a.succeeded => "succeeded",
        (_, true) => "permanent",
        (a, false) if a.status.is_some() => "transient",
        _ => "transport_error",
    };
    metrics
        .email_attempts
        .with_label_values(&[outcome, kind])
        .inc();
    metrics
        .email_latency
        .observe(f64::from(sent.attempt.latency_ms) / 1000.0);
    if !sent.attempt.succeeded {
        tracing::warn!(
            deliveries = ids.len(),
            status = ?sent.attempt.status,
            error = ?sent.attempt.error,
            "an email attempt failed"
        );
    }
    let attempts: Vec<i32> = sendable.iter().map(|(d, _)| d.attempts).collect();
    let retries = if sent.attempt.succeeded {
        vec![None; attempts.len()]
    } else {
        group_retry(
            &attempts,
            sent.permanent,
            settings,
            Utc::now(),
            rand::random::<f64>(),
        )
    };
    for ((d, _), retry_at) in sendable.iter().zip(retries) {
        record_mail(pool, settings, metrics, d, &sent.attempt, retry_at).await;
    }
}

async fn record_mail(
    pool: &PgPool,
    settings: &DeliverySettings,
    metrics: &DeliveryMetrics,
    d: &Claimed,
    attempt: &Attempt,
    retry_at: Option<DateTime<Utc>>,
) {
    match store::record(pool, d, attempt, retry_at, settings.disable_after).await {
        Ok(Recorded::Succeeded) => metrics
            .email_completed
            .with_label_values(&["succeeded"])
            .inc(),
        Ok(Recorded::Failed) => metrics.email_completed.with_label_values(&["failed"]).inc(),
        Ok(Recorded::Retry(_) | Recorded::Disabled { .. }) => {}
        Ok(Recorded::Lost) => {
            tracing::warn!(delivery_id = %d.id, "an email attempt outlived its lease; another sender owns the delivery")
        }
        // The lease runs out and the mail is sent again, with the same Message-ID.
        Err(e) => {
            tracing::warn!(error = %e, delivery_id = %d.id, "recording an email attempt failed")
        }
    }
}

/// Sends one signed attempt. Never fails: every problem is an unsuccessful attempt.
async fn send(client: &reqwest::Client, policy: TargetPolicy, d: &Claimed) -> Attempt {
    let started_at = Utc::now();
    let t0 = Instant::now();
    let result: Result<reqwest::StatusCode, String> = async {
        let url =
            check_url(d.url.as_deref().unwrap_or_default(), policy).map_err(|e| e.to_string())?;
        let now = Utc::now();
        let mut secrets: Vec<&str> = d.secret.as_deref().into_iter().collect();
        if d.previous_secret_until.is_some_and(|until| until > now) {
            secrets.extend(d.previous_secret.as_deref());
        }
        let msg_id = webhook::message_id(d.id);
        let timestamp = now.timestamp();
        let sig = signature(&secrets, &msg_id, timestamp, d.payload.as_bytes())
            .map_err(|e| e.to_string())?;
        let resp = client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", sig)
            .body(d.payload.clone())
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(resp.status())
    }
    .await;
    let latency_ms = i32::try_from(t0.elapsed().as_millis()).unwrap_or(i32::MAX);
    match result {
        Ok(status) => Attempt {
            started_at,
            latency_ms,
            status: Some(i32::from(status.as_u16())),
            error: (!status.is_success()).then(|| format!("HTTP {status}")),
            succeeded: status.is_success(),
        },
        Err(error) => Attempt {
            started_at,
            latency_ms,
            status: None,
            error: Some(error),
            succeeded: false,
        },
    }
}

/// An error with its causes: reqwest's own message hides the refused address behind
/// "error sending request".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_a_cap_then_stop() {
        let s = DeliverySettings {
            max_attempts: 4,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(3),
            ..DeliverySettings::default()
        };
        let now = Utc::now();
        // Without jitter (unit just under 1) the delays are 1, 2, 3 (capped) seconds.
        let d = |a| (next_attempt(a, &s, now, 0.999_999).unwrap() - now).num_milliseconds();
        assert!((999..=1000).contains(&d(1)), "{}", d(1));
        assert!((1999..=2000).contains(&d(2)), "{}", d(2));
        assert!((2999..=3000).contains(&d(3)), "{}", d(3));
        assert_eq!(next_attempt(4, &s, now, 0.5), None);
        // Jitter stays within [delay/2, delay].
        let low = (next_attempt(2, &s, now, 0.0).unwrap() - now).num_milliseconds();
        assert!((1000..=2000).contains(&low), "{low}");
    }

    #[test]
    fn a_failed_digest_retries_together_and_stops_per_delivery() {
        let s = DeliverySettings {
            max_attempts: 3,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..DeliverySettings::default()
        };
        let now = Utc::now();
        let r = group_retry(&[1, 2], false, &s, now, 0.5);
        assert!(r[0].is_some());
        assert_eq!(r[0], r[1], "one instant for the whole digest");
        let r = group_retry(&[1, 3], false, &s, now, 0.5);
        assert!(r[0].is_some(), "{r:?}");
        assert_eq!(r[1], None, "attempts exhausted");
        assert_eq!(group_retry(&[1, 1], true, &s, now, 0.5), vec![None, None]);
    }

    #[test]
    fn in_flight_counts() {
        let f = InFlight::default();
        f.add("a", 1);
        f.add("a", 1);
        f.add("b", 1);
        f.add("b", -1);
        assert_eq!(f.snapshot(), (vec!["a".to_owned()], vec![2]));
    }
}
