//! The real Prometheus scrapes the real binaries: `taskflow-api` and the four workers run as
//! child processes on one database and their own topics and groups, a `prometheus` process
//! (Debian's package; `.ci/run` installs it) scrapes their admin `/metrics` every second and
//! loads `deploy/prometheus-rules.yml`. The test waits until every target is up and the key
//! series are there, then drives a little traffic (a registry outage, a reminder that fires and
//! one that is cancelled, a recurring series to its end, an undecodable message) and checks
//! that every metric the Grafana dashboard (`deploy/grafana/*.json`) and the alert rules
//! select exists in Prometheus, so no panel or alert watches a name no binary exports.
//!
//! Without a `prometheus` binary the test fails (it never skips): set
//! `TASKFLOW_TEST_PROMETHEUS_BIN` or put `prometheus` on the PATH.
//!
//! Every wait is on state (Prometheus's HTTP API, the task API), never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use chrono::{Duration as ChronoDuration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use taskflow_schemas::topics;
use taskflow_tests::{
    broker::{brokers, create_topic},
    db,
    events::{produce_raw, producer},
    registry::{Fault, RegistryStandIn},
    unique,
    worker::{binary, WorkerProcess},
};
use tokio::process::{Child, Command};

/// How long any one state may take to appear.
const WAIT: Duration = Duration::from_secs(120);

/// Metrics the dashboard or the rules select that no short test can make appear, each with
/// the reason. A labelled counter is exported only once a label set was incremented.
const NOT_PRODUCIBLE: &[(&str, &str)] = &[(
    "taskflow_consumer_panics_total",
    "incremented only when a handler panics, and that panic stops the worker (exit non-zero, \
     by design), so no scrape reliably sees it before the process is gone",
)];

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// `TASKFLOW_TEST_PROMETHEUS_BIN`, else `prometheus` on the PATH; fails the test otherwise.
fn prometheus_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("TASKFLOW_TEST_PROMETHEUS_BIN") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("prometheus"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prometheus is not installed: this test scrapes the binaries with the real \
                 Prometheus. Install Debian's package (`apt-get install prometheus`; .ci/run \
                 does) or set TASKFLOW_TEST_PROMETHEUS_BIN"
            )
        })
}

// --- metric names in PromQL -------------------------------------------------------------------

/// PromQL keywords and aggregation operators: identifiers that are not metric names even
/// when no `(` follows them (`sum by (x) (...)`, `a and b`, `offset 5m`).
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "inf",
    "nan",
];
/// Keywords whose parenthesised list holds label names, not expressions.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The index just past the bracket that closes the one at `open`, skipping quoted strings.
fn skip_bracketed(chars: &[char], open: usize) -> usize {
    let (opening, closing) = match chars[open] {
        '(' => ('(', ')'),
        '[' => ('[', ']'),
        _ => ('{', '}'),
    };
    let mut depth = 0;
    let mut i = open;
    while i < chars.len() {
        match chars[i] {
            '"' | '\'' | '`' => i = skip_string(chars, i),
            c if c == opening => {
                depth += 1;
                i += 1;
            }
            c if c == closing => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    i
}

/// The index just past the string literal starting at `open`.
fn skip_string(chars: &[char], open: usize) -> usize {
    let quote = chars[open];
    let mut i = open + 1;
    while i < chars.len() && chars[i] != quote {
        if chars[i] == '\\' && quote != '`' {
            i += 1;
        }
        i += 1;
    }
    i + 1
}

/// The metric names a PromQL expression selects: identifiers outside strings, label
/// matchers (`{...}`), ranges and subqueries (`[...]`), label lists (`by (...)`) and Grafana
/// variables (`$x`, `${x}`), that are neither keywords nor function calls. Names are kept as
/// written, so a histogram is matched by the `_bucket`/`_sum`/`_count` series it selects
/// (which is what Prometheus stores), never by its base name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            '{' | '[' => i = skip_bracketed(&chars, i),
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                i += 1;
                if chars.get(i) == Some(&'{') {
                    i = skip_bracketed(&chars, i);
                } else {
                    while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number or a duration (0.99, 1e3, 5m, 0x1f).
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let lower = word.to_ascii_lowercase();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                if call && LABEL_LISTS.contains(&lower.as_str()) {
                    i = skip_bracketed(&chars, next);
                } else if !call && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The metric names of a Grafana template-variable query: `label_values(selector, label)`
/// selects from `selector` (its last argument is a label name); anything else is PromQL.
fn grafana_query_names(query: &str) -> BTreeSet<String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return match inner.rsplit_once(',') {
            Some((selector, _label)) => metric_names(selector),
            // label_values(label): every series, no metric named.
            None => BTreeSet::new(),
        };
    }
    metric_names(q)
}

/// Every metric the dashboards' panels and query variables select, with where it is used.
fn dashboard_metrics() -> BTreeMap<String, String> {
    fn walk(node: &Value, file: &str, found: &mut BTreeMap<String, String>) {
        match node {
            Value::Object(map) => {
                if let Some(Value::String(expr)) = map.get("expr") {
                    for n in metric_names(expr) {
                        found.entry(n).or_insert_with(|| file.to_owned());
                    }
                }
                if map.get("type").and_then(Value::as_str) == Some("query") {
                    let query = match map.get("query") {
                        Some(Value::String(q)) => Some(q.as_str()),
                        Some(Value::Object(q)) => q.get("query").and_then(Value::as_str),
                        _ => None,
                    };
                    for n in query.map(grafana_query_names).unwrap_or_default() {
                        found.entry(n).or_insert_with(|| file.to_owned());
                    }
                }
                for v in map.values() {
                    walk(v, file, found);
                }
            }
            Value::Array(items) => {
                for v in items {
                    walk(v, file, found);
                }
            }
            _ => {}
        }
    }
    let dir = repo_root().join("deploy/grafana");
    let mut found = BTreeMap::new();
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/grafana") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        files += 1;
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let name = format!(
            "deploy/grafana/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        walk(&dashboard, &name, &mut found);
    }
    assert!(files > 0, "no dashboard in {}", dir.display());
    found
}

#[test]
fn metric_names_are_read_from_promql() {
    let names = |e: &str| metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            "histogram_quantile(0.99, sum by (le, group, topic) \
             (rate(taskflow_consumer_handler_seconds_bucket{group=~\"$group\"}[$__rate_interval])))"
        ),
        ["taskflow_consumer_handler_seconds_bucket"]
    );
    assert_eq!(
        names(
            "max(taskflow_outbox_backlog and on(instance) (taskflow_outbox_relay_active == 1)) > 0 \
             and deriv(max(taskflow_outbox_backlog)[5m:30s]) > 0"
        ),
        ["taskflow_outbox_backlog", "taskflow_outbox_relay_active"]
    );
    assert_eq!(
        names(
            "sum by (group, topic) (taskflow_consumer_dlq_total unless taskflow_consumer_dlq_total offset 5m) \
             or (sum(increase(x:recorded[5m])) or vector(0)) == 0"
        ),
        ["taskflow_consumer_dlq_total", "x:recorded"]
    );
    assert_eq!(
        names("max by (group, topic, partition) (taskflow_consumer_lag{reason=\"a}b\"}) > 1e3"),
        ["taskflow_consumer_lag"]
    );
    assert_eq!(
        grafana_query_names("label_values(taskflow_consumer_messages_total, group)")
            .into_iter()
            .collect::<Vec<_>>(),
        ["taskflow_consumer_messages_total"]
    );
    assert!(grafana_query_names("label_values(group)").is_empty());
}

// --- the Prometheus process -------------------------------------------------------------------

struct Prometheus {
    base: String,
    http: reqwest::Client,
    log: PathBuf,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `prometheus` scraping `targets` (job name -> `host:port`) every second, with
    /// the repository's alert rules loaded and evaluated every second.
    fn start(bin: &Path, targets: &[(String, String)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rules = repo_root().join("deploy/prometheus-rules.yml");
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {:?}\nscrape_configs:\n",
            rules.display().to_string()
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job:?}\n    static_configs: [{{ targets: [{target:?}] }}]\n"
            ));
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let log = dir.path().join("prometheus.log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            log,
            _child: child,
            _dir: dir,
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `data` of a successful API answer, `None` while Prometheus is not answering yet.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .ok()?;
        let body: Value = r.json().await.ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// Every metric name Prometheus holds (`/api/v1/label/__name__/values`).
    async fn names(&self) -> BTreeSet<String> {
        self.api("/api/v1/label/__name__/values", &[])
            .await
            .and_then(|d| d.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// The result vector of an instant query (empty while it selects nothing).
    async fn query(&self, q: &str) -> Vec<Value> {
        self.api("/api/v1/query", &[("query", q)])
            .await
            .and_then(|d| d["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// Waits until `query` returns at least one series, and returns them.
    async fn wait_series(&self, q: &str) -> Vec<Value> {
        let deadline = Instant::now() + WAIT;
        loop {
            let result = self.query(q).await;
            if !result.is_empty() {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "`{q}` selected nothing within {WAIT:?}; prometheus log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every name in `wanted` is among Prometheus's metric names.
    async fn wait_names(&self, wanted: &BTreeSet<String>, what: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let have = self.names().await;
            let missing: Vec<&String> = wanted.difference(&have).collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no binary exported {missing:?} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

// --- the binaries -----------------------------------------------------------------------------

/// An API user.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn signup(base: String) -> Self {
        let http = reqwest::Client::new();
        let creds =
            json!({"email": "prometheus@example.test", "password": "a long enough passphrase"});
        let r = http
            .post(format!("{base}/auth/signup"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "signup: {}", r.status());
        let r = http
            .post(format!("{base}/auth/login"))
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "login: {}", r.status());
        let body: Value = r.json().await.unwrap();
        let token = body["access_token"].as_str().unwrap().to_owned();
        Self { http, base, token }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, task: Value) -> String {
        let (status, body) = self.call(Method::POST, "/tasks", Some(task)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn complete(&self, id: &str) {
        let (status, body) = self
            .call(Method::POST, &format!("/tasks/{id}/complete"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Waits until an open task of the series other than `not` exists (the next instance
    /// the recurrence worker creates), and returns its id.
    async fn next_instance(&self, series: &str, not: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let (status, page) = self.call(Method::GET, "/tasks?limit=200", None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let next = page["items"].as_array().unwrap().iter().find(|t| {
                t["id"].as_str() != Some(not)
                    && t["title"].as_str() == Some(series)
                    && t["status"].as_str() == Some("open")
            });
            if let Some(t) = next {
                return t["id"].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "the recurrence worker created no next instance of {series:?} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_every_binary_and_every_dashboard_and_alert_metric_exists() {
    // First, so a machine without Prometheus fails at once, before anything starts.
    let prometheus_bin = prometheus_binary();
    let brokers = brokers();
    let events = unique("prom-events");
    let reminders = unique("prom-reminders");
    create_topic(&brokers, &events, 3).await;
    create_topic(&brokers, &reminders, 3).await;
    let groups: BTreeMap<&str, String> = ["audit", "recurrence", "reminders", "notifier"]
        .into_iter()
        .map(|w| (w, unique(&format!("prom-{w}"))))
        .collect();
    for group in groups.values() {
        create_topic(&brokers, &topics::dlq(group), 1).await;
    }
    let database = db::fresh().await;
    // A registry of this test's own, answering 503 at first: the failure metrics of schema
    // registration and of the outbox relay only exist once something failed.
    let registry = RegistryStandIn::start().await;
    registry.set_fault(Some(Fault::Status(503)));

    let common = |extra: Vec<(&'static str, String)>| {
        let mut env = vec![
            ("TASKFLOW_DATABASE_URL", database.url.clone()),
            ("TASKFLOW_KAFKA_BROKERS", brokers.clone()),
            ("TASKFLOW_SCHEMA_REGISTRY_URL", registry.url().to_owned()),
            ("TASKFLOW_TOPIC_TASK_EVENTS", events.clone()),
            ("TASKFLOW_TOPIC_REMINDERS", reminders.clone()),
            // Short relay timers (a new leader waits message timeout + margin before its
            // first send) and retries, so the test takes seconds, not minutes.
            ("TASKFLOW_OUTBOX_MESSAGE_TIMEOUT_MS", "3000".to_owned()),
            ("TASKFLOW_OUTBOX_FENCE_MARGIN_MS", "500".to_owned()),
            ("TASKFLOW_OUTBOX_IDLE_POLL_MS", "200".to_owned()),
            ("TASKFLOW_OUTBOX_RETRY_MAX_MS", "1000".to_owned()),
            // Workers: tansu holds an empty fetch ~500 ms otherwise; an unknown schema id is
            // dead-lettered after 1 s instead of 60.
            ("TASKFLOW_CONSUMER_FETCH_WAIT_MAX_MS", "10".to_owned()),
            ("TASKFLOW_KAFKA_SESSION_TIMEOUT_MS", "10000".to_owned()),
            ("TASKFLOW_UNKNOWN_SCHEMA_RETRY_SECS", "1".to_owned()),
        ];
        env.extend(extra);
        env
    };
    // Job name (as in deploy/prometheus.yml) -> admin port.
    let mut admin_ports: BTreeMap<String, u16> = BTreeMap::new();
    let mut processes = Vec::new();
    let (http_port, api_admin) = (free_port(), free_port());
    admin_ports.insert("taskflow-api".to_owned(), api_admin);
    processes.push(WorkerProcess::start_binary(
        binary("taskflow-api"),
        &common(vec![
            ("TASKFLOW_HTTP_ADDR", format!("127.0.0.1:{http_port}")),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{api_admin}")),
            (
                "TASKFLOW_JWT_SECRET",
                format!(
                    "{}{}",
                    uuid::Uuid::new_v4().simple(),
                    uuid::Uuid::new_v4().simple()
                ),
            ),
        ]),
    ));
    for (worker, group) in &groups {
        let name = format!("taskflow-{worker}");
        let port = free_port();
        let mut extra = vec![
            ("TASKFLOW_KAFKA_GROUP_ID", group.clone()),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{port}")),
        ];
        if *worker == "audit" {
            // The audit worker reads its topics from this list only.
            extra.push(("TASKFLOW_KAFKA_TOPICS", format!("{events},{reminders}")));
        }
        processes.push(WorkerProcess::start_binary(binary(&name), &common(extra)));
        admin_ports.insert(name, port);
    }
    let targets: Vec<(String, String)> = admin_ports
        .iter()
        .map(|(job, port)| (job.clone(), format!("127.0.0.1:{port}")))
        .collect();
    let prometheus = Prometheus::start(&prometheus_bin, &targets);

    // Every target up: Prometheus reaches every binary's /metrics.
    let deadline = Instant::now() + WAIT;
    loop {
        let active = prometheus
            .api("/api/v1/targets", &[("state", "active")])
            .await
            .and_then(|d| d["activeTargets"].as_array().cloned())
            .unwrap_or_default();
        let up: BTreeSet<String> = active
            .iter()
            .filter(|t| t["health"] == "up")
            .filter_map(|t| t["labels"]["job"].as_str().map(str::to_owned))
            .collect();
        if up.len() == targets.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not up within {WAIT:?}: {active:#?}\nprometheus log:\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // While the registry fails: a user and tasks (the API serves HTTP without the registry);
    // the relay cannot encode their events and the API cannot register its schemas.
    let api = Client::signup(format!("http://127.0.0.1:{http_port}")).await;
    let due = (Utc::now() + ChronoDuration::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let series = "Water the plants";
    let first = api
        .create(json!({
            "title": series,
            "due_at": due.to_rfc3339(),
            "recurrence": {"rrule": "FREQ=DAILY;COUNT=2", "tz": "UTC", "mode": "from_due"},
        }))
        .await;
    prometheus
        .wait_names(
            &[
                "taskflow_schema_registration_failures_total",
                "taskflow_outbox_failures_total",
            ]
            .map(str::to_owned)
            .into(),
            "while the registry answers 503",
        )
        .await;
    registry.set_fault(None);

    // One active relay among the API, recurrence and reminders (one database).
    let deadline = Instant::now() + WAIT;
    loop {
        let active = prometheus.query("sum(taskflow_outbox_relay_active)").await;
        if active.first().map(|s| s["value"][1] == "1") == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sum(taskflow_outbox_relay_active) is not 1: {active:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // A reminder that fires, and one that comes due after its task was completed but before
    // the reminders worker heard of it: the firing loop finds the task completed and counts
    // the timer as not fired (`cancelled`). To hold the completion event back, the registry
    // fails again once the timer is armed, so the relay cannot publish it.
    api.create(json!({
        "title": "A reminder that fires",
        "reminders": [{"at": (Utc::now() + ChronoDuration::seconds(2)).to_rfc3339()}],
    }))
    .await;
    // Far enough ahead to arm it and complete the task first on a loaded machine.
    let cancel_at = Utc::now() + ChronoDuration::seconds(15);
    let cancelled = api
        .create(json!({
            "title": "A reminder to cancel",
            "reminders": [{"at": cancel_at.to_rfc3339()}],
        }))
        .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let armed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM reminder_timers WHERE task_id = $1::uuid AND state = 'pending'",
        )
        .bind(&cancelled)
        .fetch_one(&database.pool)
        .await
        .unwrap();
        if armed == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reminders worker armed no timer for {cancelled} within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    registry.set_fault(Some(Fault::Status(503)));
    api.complete(&cancelled).await;
    assert!(
        Utc::now() < cancel_at,
        "arming the timer took longer than its 15 s lead: the machine is too slow for this check"
    );
    prometheus
        .wait_series("taskflow_reminders_not_fired_total{outcome=\"cancelled\"} > 0")
        .await;
    registry.set_fault(None);

    // A recurring series completed to its end (COUNT=2: one next instance, then the rule
    // ends).
    api.complete(&first).await;
    let second = api.next_instance(series, &first).await;
    api.complete(&second).await;
    // An undecodable message (a schema id no registry knows) on the events topic: every
    // worker retries it for its window, then dead-letters it.
    produce_raw(
        &producer(&brokers),
        &events,
        [(
            "not-a-task",
            "TaskCreated",
            &[0u8, 0x7f, 0xff, 0xff, 0xf0, 1, 2, 3][..],
        )],
    )
    .await;

    // The key series, per binary.
    for group in groups.values() {
        prometheus
            .wait_series(&format!(
                "taskflow_consumer_messages_total{{group=\"{group}\",outcome=\"ok\"}}"
            ))
            .await;
        prometheus
            .wait_series(&format!("taskflow_consumer_dlq_total{{group=\"{group}\"}}"))
            .await;
    }
    prometheus
        .wait_series("taskflow_outbox_published_total > 0")
        .await;
    prometheus
        .wait_series("http_requests_total{job=\"taskflow-api\"}")
        .await;
    prometheus
        .wait_series("taskflow_reminders_fired_total > 0")
        .await;
    prometheus
        .wait_series("taskflow_recurrence_series_ended_total{reason=\"rule_ended\"} > 0")
        .await;

    // Every metric the dashboard and the alert rules select exists. The rules as Prometheus
    // loaded them (so they also load and evaluate in a real Prometheus).
    let rules = prometheus
        .api("/api/v1/rules", &[])
        .await
        .expect("/api/v1/rules");
    let rule_list: Vec<Value> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect();
    let rules_text =
        std::fs::read_to_string(repo_root().join("deploy/prometheus-rules.yml")).unwrap();
    let in_file = rules_text
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            l.starts_with("- alert:") || l.starts_with("- record:")
        })
        .count();
    assert_eq!(
        rule_list.len(),
        in_file,
        "Prometheus loaded {} rules, deploy/prometheus-rules.yml has {in_file}",
        rule_list.len()
    );
    let mut referenced = dashboard_metrics();
    for rule in &rule_list {
        let name = rule["name"].as_str().unwrap_or("?");
        assert_ne!(
            rule["health"], "err",
            "rule {name} fails to evaluate: {}",
            rule["lastError"]
        );
        for n in metric_names(rule["query"].as_str().unwrap()) {
            referenced
                .entry(n)
                .or_insert_with(|| format!("deploy/prometheus-rules.yml ({name})"));
        }
    }
    for (allowed, why) in NOT_PRODUCIBLE {
        assert!(
            referenced.remove(*allowed).is_some(),
            "{allowed} is allow-listed ({why}) but neither the dashboard nor the rules use it: \
             drop it from NOT_PRODUCIBLE"
        );
    }
    assert!(
        referenced.len() > 20,
        "suspiciously few metric names read: {referenced:?}"
    );
    let wanted: BTreeSet<String> = referenced.keys().cloned().collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let have = prometheus.names().await;
        let missing: Vec<String> = referenced
            .iter()
            .filter(|(n, _)| !have.contains(*n))
            .map(|(n, used)| format!("{n} (in {used})"))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "selected by the dashboard or the rules but exported by no binary: {missing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "{} metric names of the dashboard and the rules scraped from {} binaries",
        wanted.len(),
        targets.len()
    );

    for p in processes {
        p.kill().await;
    }
}
