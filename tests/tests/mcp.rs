//! `taskflow-mcp` driven by a real MCP client (the official Python SDK) over
//! stdio and over streamable HTTP: initialize, tools/list with valid
//! schemas, every tool called, each result checked through the HTTP API and
//! the task's events on the topic; another user's task is a 404, a token
//! without `tasks:write` cannot create, a revoked token is refused on the
//! next call.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use taskflow_schemas::Event;
use taskflow_tests::{
    broker::{brokers, create_topic, Collector},
    mcp::drive,
    system::TestSystem,
    unique,
    worker::{binary, WorkerProcess},
};
use uuid::Uuid;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn post(sys: &TestSystem, path: &str, token: &str, body: Value) -> Value {
    let r = sys
        .http
        .post(format!("{}{path}", sys.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST {path}: {}", r.status());
    r.json().await.unwrap()
}

async fn get(sys: &TestSystem, path: &str, token: &str) -> (u16, Value) {
    let r = sys
        .http
        .get(format!("{}{path}", sys.api))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// What the scenario needs besides the transport.
struct Fixture {
    sys: TestSystem,
    login: String,
    other: String,
    foreign_task: String,
    config: Value,
}

async fn fixture(topic_prefix: &str) -> Fixture {
    let brokers = brokers();
    let topic = unique(topic_prefix);
    create_topic(&brokers, &topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let login = sys.user().await;
    let other = sys.user().await;
    let foreign = post(&sys, "/tasks", &other, json!({"title": "someone else's"})).await;
    let mut tokens = BTreeMap::new();
    let mut revocable_id = String::new();
    for (name, scopes) in [
        (
            "full",
            json!(["tasks:read", "tasks:write", "notifications:read"]),
        ),
        ("read_only", json!(["tasks:read"])),
        ("revocable", json!(["tasks:read"])),
    ] {
        let t = post(
            &sys,
            "/tokens",
            &login,
            json!({"name": name, "scopes": scopes}),
        )
        .await;
        tokens.insert(name, t["token"].as_str().unwrap().to_owned());
        if name == "revocable" {
            revocable_id = t["id"].as_str().unwrap().to_owned();
        }
    }
    // A notification in the user's inbox, as the notifier writes one for a fired reminder.
    // The database holds two users: `other` (who owns the foreign task) and the token owner.
    let other_id: uuid::Uuid = sqlx::query_scalar("SELECT user_id FROM tasks WHERE id = $1")
        .bind(uuid::Uuid::parse_str(foreign["id"].as_str().unwrap()).unwrap())
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE id <> $1")
        .bind(other_id)
        .fetch_one(&sys.db.pool)
        .await
        .unwrap();
    let notification = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, event_id, kind, title, body, created_at) \
         VALUES ($1, $2, $3, 'reminder_due', 'Water the plants', 'Reminder', now())",
    )
    .bind(notification)
    .bind(owner)
    .bind(uuid::Uuid::now_v7())
    .execute(&sys.db.pool)
    .await
    .unwrap();
    let config = json!({
        "notification_id": notification,
        "tokens": tokens,
        "api_url": sys.api,
        "login": login,
        "revocable_id": revocable_id,
        "foreign_task_id": foreign["id"],
    });
    Fixture {
        login,
        other,
        foreign_task: foreign["id"].as_str().unwrap().to_owned(),
        sys,
        config,
    }
}

fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    let s = &report["steps"][name];
    assert!(s.is_object(), "no step {name} in {report}");
    assert!(s.get("exception").is_none(), "step {name} raised: {s}");
    s
}

fn ok<'a>(report: &'a Value, name: &str) -> &'a Value {
    let s = step(report, name);
    assert_eq!(s["is_error"], false, "{name} failed: {s}");
    &s["structured"]
}

/// A tool error: its status and field names.
fn refused(report: &Value, name: &str) -> (u64, Vec<String>) {
    let s = step(report, name);
    assert_eq!(s["is_error"], true, "{name} should have failed: {s}");
    let p = &s["structured"];
    assert!(
        s["text"]
            .as_str()
            .unwrap()
            .contains("Taskflow refused the call"),
        "{s}"
    );
    let fields = p["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (p["status"].as_u64().unwrap(), fields)
}

/// Everything the scenario did, checked from the report, the API and the topic.
async fn check(f: &Fixture, report: &Value) {
    assert_eq!(report["server_name"], "taskflow-mcp");
    let tools = report["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "create_task",
            "list_tasks",
            "get_task",
            "update_task",
            "complete_task",
            "reopen_task",
            "snooze_reminder",
            "delete_task",
            "list_notifications",
            "mark_notification_read",
            "preview_recurrence"
        ]
    );
    for t in tools {
        assert_eq!(t["input"], "valid", "{t}");
        assert_eq!(t["output"], "valid", "{t}");
        assert!(t["description"].as_str().unwrap().len() > 40, "{t}");
    }
    let create_schema = &tools[0]["input_schema"];
    assert_eq!(create_schema["required"], json!(["title"]));
    assert_eq!(create_schema["additionalProperties"], false);

    let created = ok(report, "create");
    let id = created["id"].as_str().unwrap();
    assert_eq!(created["title"], "Water the plants via MCP");
    assert_eq!(created["status"], "open");
    assert_eq!(created["version"], 1);
    assert_eq!(created["reminders"][0]["before"], "PT15M");
    let reminder = created["reminders"][0]["id"].as_str().unwrap();

    // The API's validation, field by field, and nothing written for it.
    let (status, mut fields) = refused(report, "create_invalid");
    fields.sort();
    assert_eq!(
        (status, fields),
        (422, vec!["colour".into(), "due_at".into(), "title".into()])
    );
    let (status, mut fields) = refused(report, "list_invalid");
    fields.sort();
    assert_eq!(
        (status, fields),
        (422, vec!["limit".into(), "priority".into()])
    );

    let page = ok(report, "list");
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["items"][0]["id"], id);
    assert!(page["next_cursor"].is_null());
    assert_eq!(ok(report, "get")["id"], id);
    let updated = ok(report, "update");
    assert_eq!(
        (updated["version"].as_i64(), &updated["priority"]),
        (Some(2), &json!("low"))
    );
    assert_eq!(updated["description"], "changed by MCP");
    assert_eq!(refused(report, "update_stale").0, 412);
    assert_eq!(ok(report, "complete")["status"], "completed");
    assert_eq!(refused(report, "complete_again").0, 409);
    assert_eq!(ok(report, "reopen")["status"], "open");
    let snoozed = ok(report, "snooze");
    assert_eq!(snoozed["reminders"][0]["id"], reminder);
    assert!(
        snoozed["reminders"][0]["snoozed_until"].is_string(),
        "{snoozed}"
    );
    assert_eq!(
        refused(report, "snooze_invalid"),
        (422, vec!["for".to_owned()])
    );
    assert_eq!(refused(report, "bad_id"), (422, vec!["id".to_owned()]));

    // A rule in words and the occurrences after `start`, across the end of summer time in
    // Berlin (25 October 2026): the start's 09:00 local was 07:00Z, the next ones are 08:00Z.
    let preview = ok(report, "preview");
    assert_eq!(preview["description"], "every Monday at 09:00", "{preview}");
    assert_eq!(
        preview["next"],
        json!([
            "2026-10-26T08:00:00Z",
            "2026-11-02T08:00:00Z",
            "2026-11-09T08:00:00Z"
        ])
    );
    let (status, mut fields) = refused(report, "preview_invalid");
    fields.sort();
    assert_eq!((status, fields), (422, vec!["rrule".into(), "tz".into()]));

    // The inbox: the notification listed unread, then marked read; another's is a 404.
    let inbox = ok(report, "notifications");
    assert_eq!(inbox["items"][0]["id"], f.config["notification_id"]);
    assert!(inbox["items"][0]["read_at"].is_null());
    let read = ok(report, "mark_read");
    assert!(read["read_at"].is_string(), "{read}");
    assert_eq!(refused(report, "mark_read_foreign").0, 404);

    // Another user's task: the API's 404, and it is untouched.
    assert_eq!(refused(report, "foreign_get").0, 404);
    assert_eq!(refused(report, "foreign_complete").0, 404);
    let (status, foreign) = get(&f.sys, &format!("/tasks/{}", f.foreign_task), &f.other).await;
    assert_eq!((status, &foreign["status"]), (200, &json!("open")));

    // The open-tasks resource listed the task while it was open.
    assert_eq!(report["resources"], json!(["taskflow://tasks/open"]));
    let open: Vec<&str> = report["open_tasks"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(open, [id]);

    assert_eq!(ok(report, "delete"), &json!({"id": id, "deleted": true}));
    assert_eq!(refused(report, "get_deleted").0, 404);
    let (status, _) = get(&f.sys, &format!("/tasks/{id}"), &f.login).await;
    assert_eq!(status, 404, "deleted through MCP, gone through the API");
    let kept = ok(report, "create_kept");
    let (status, through_api) = get(
        &f.sys,
        &format!("/tasks/{}", kept["id"].as_str().unwrap()),
        &f.login,
    )
    .await;
    assert_eq!(
        (status, &through_api["title"]),
        (200, &json!("Kept from MCP"))
    );

    // Scopes and revocation.
    let s = step(report, "read_only_create");
    assert_eq!(s["is_error"], true, "{s}");
    assert_eq!(s["structured"]["status"], 403);
    assert!(s["text"].as_str().unwrap().contains("tasks:write"), "{s}");
    ok(report, "read_only_list");
    ok(report, "before_revoke");
    assert_eq!(report["revoke_status"], 204);
    assert_eq!(refused(report, "after_revoke").0, 401);
    // Of the two tasks created through MCP, the kept one is all that is left.
    let (_, mine) = get(&f.sys, "/tasks", &f.login).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1, "{mine}");

    // The events are the API's own: created, updated, completed, reopened,
    // snoozed, deleted for the task, with the user's id, plus the kept task's
    // and the other user's TaskCreated.
    let user_id: Uuid = sqlx::query_scalar("SELECT user_id FROM tasks WHERE id = $1")
        .bind(Uuid::parse_str(id).unwrap())
        .fetch_one(&f.sys.db.pool)
        .await
        .unwrap();
    let received = Collector::new(&f.sys.brokers, &f.sys.topic)
        .collect(8, Duration::from_secs(120))
        .await;
    assert_eq!(received.len(), 8, "events on the topic");
    let mut of_task = Vec::new();
    for msg in &received {
        let event = f.sys.codec.decode(&msg.payload).await.expect("decode");
        if event.key() == id {
            of_task.push(event);
        }
    }
    of_task.sort_by_key(|e| e.metadata().version);
    let kinds: Vec<&str> = of_task.iter().map(|e| e.event_type().as_str()).collect();
    assert_eq!(
        kinds,
        [
            "TaskCreated",
            "TaskUpdated",
            "TaskCompleted",
            "TaskReopened",
            "ReminderSnoozed",
            "TaskDeleted"
        ]
    );
    assert!(of_task.iter().all(|e| e.metadata().user_id == user_id));
    match &of_task[0] {
        Event::TaskCreated(c) => assert_eq!(c.task.title, "Water the plants via MCP"),
        other => panic!("first event is {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_stdio_acts_as_the_token_owner_through_the_api() {
    let mut f = fixture("mcp-stdio").await;
    f.config["transport"] = json!("stdio");
    f.config["command"] = json!(binary("taskflow-mcp"));
    f.config["env"] = json!({
        "TASKFLOW_MCP_TRANSPORT": "stdio",
        "TASKFLOW_MCP_API_URL": f.sys.api,
        "TASKFLOW_LOG": std::env::var("TASKFLOW_TEST_LOG").unwrap_or_else(|_| "warn".into()),
    });
    let report = drive(&f.config).await;
    check(&f, &report).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_over_streamable_http_takes_the_bearer_token_per_request() {
    let mut f = fixture("mcp-http").await;
    let (port, admin_port) = (free_port(), free_port());
    let server = WorkerProcess::start_binary(
        binary("taskflow-mcp"),
        &[
            ("TASKFLOW_MCP_TRANSPORT", "http".to_owned()),
            ("TASKFLOW_MCP_API_URL", f.sys.api.clone()),
            ("TASKFLOW_MCP_HTTP_ADDR", format!("127.0.0.1:{port}")),
            ("TASKFLOW_ADMIN_ADDR", format!("127.0.0.1:{admin_port}")),
        ],
    );
    let admin = format!("http://127.0.0.1:{admin_port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !f
        .sys
        .http
        .get(format!("{admin}/healthz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "taskflow-mcp never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://127.0.0.1:{port}/mcp");

    // No bearer token: a 401 before any MCP processing.
    let r = f
        .sys
        .http
        .post(&url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    f.config["transport"] = json!("http");
    f.config["url"] = json!(url);
    let report = drive(&f.config).await;
    check(&f, &report).await;

    let metrics = f
        .sys
        .http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"taskflow_mcp_tool_calls_total{outcome="ok",tool="create_task"} 2"#,
        r#"taskflow_mcp_tool_calls_total{outcome="refused",tool="get_task"} 3"#,
    ] {
        assert!(
            metrics.contains(needle),
            "/metrics lacks {needle}:\n{metrics}"
        );
    }
    let status = server.terminate().await;
    assert!(
        status.success(),
        "taskflow-mcp exits cleanly on SIGTERM: {status:?}"
    );
}
