//! Task history and the activity feed. No audit worker runs here, so the
//! tests write `audit_log` rows themselves, from the outbox rows the API
//! wrote (the payload is exactly what the worker would store).

use std::collections::HashSet;

use chrono::{DateTime, FixedOffset, SecondsFormat, SubsecRound, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use taskflow_schemas::{Event, EventMetadata, ReminderDue};
use uuid::Uuid;

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

/// Copies every outbox row into `audit_log` the way the audit worker does
/// (metadata columns from the event, payload verbatim). Newest first, so the
/// history's version order cannot come from insertion order; `/audit` lists
/// them in this insertion order.
async fn audit_from_outbox(app: &TestApp) {
    sqlx::query(
        "INSERT INTO audit_log (event_id, event_type, task_id, user_id, occurred_at, version, \
             correlation_id, causation_id, payload, source_topic, source_partition, source_offset) \
         SELECT o.event_id, o.event_type, (m->>'task_id')::uuid, (m->>'user_id')::uuid, \
             (m->>'occurred_at')::timestamptz, (m->>'version')::bigint, m->>'correlation_id', \
             m->>'causation_id', o.payload, o.topic, 0, o.id \
         FROM outbox o CROSS JOIN LATERAL (SELECT o.payload->'event'->'metadata' AS m) meta \
         ORDER BY o.id DESC \
         ON CONFLICT DO NOTHING",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    settled(app).await;
}

/// Writes one event (e.g. a `ReminderDue` the reminders worker would
/// produce) as an audit row, without waiting for `/audit` to list it.
async fn insert_event<'e>(ex: impl sqlx::PgExecutor<'e>, event: &Event) {
    let m = event.metadata();
    sqlx::query(
        "INSERT INTO audit_log (event_id, event_type, task_id, user_id, occurred_at, version, \
             correlation_id, causation_id, payload, source_topic, source_partition, source_offset) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'taskflow.reminders', 0, 0)",
    )
    .bind(m.event_id)
    .bind(event.event_type().as_str())
    .bind(m.task_id)
    .bind(m.user_id)
    .bind(m.occurred_at)
    .bind(m.version)
    .bind(&m.correlation_id)
    .bind(&m.causation_id)
    .bind(serde_json::to_value(event).unwrap())
    .execute(ex)
    .await
    .unwrap();
}

/// Writes one event as an audit row and waits until `/audit` lists it.
async fn audit_event(app: &TestApp, event: &Event) {
    insert_event(&app.pool, event).await;
    settled(app).await;
}

/// Waits until every transaction that had started when this was called has
/// ended, cluster-wide: from then on `/audit` lists every row committed
/// before the call (it holds back rows behind a running transaction; a test
/// running beside this one may briefly hold one).
async fn settled(app: &TestApp) {
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let passed: bool =
            sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8")
                .bind(&horizon)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if passed {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a transaction older than xid {horizon} is still running"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn reminder(user_id: Uuid, task_id: Uuid, version: i64, occurred_at: DateTime<Utc>) -> Event {
    Event::ReminderDue(ReminderDue {
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            occurred_at,
            user_id,
            task_id,
            version,
            correlation_id: format!("corr-{version}"),
            causation_id: None,
        },
        reminder_key: format!("{task_id}:before:{version}"),
        fire_at: occurred_at,
        due_at: None,
        title: "reminded".into(),
        reminder_id: None,
        fired_at: None,
    })
}

async fn get(app: &TestApp, token: &str, path: &str) -> reqwest::Response {
    app.req(reqwest::Method::GET, path, token)
        .send()
        .await
        .unwrap()
}

async fn get_ok(app: &TestApp, token: &str, path: &str) -> Value {
    let r = get(app, token, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.json().await.unwrap()
}

fn items(v: &Value) -> &Vec<Value> {
    v["items"].as_array().unwrap()
}

fn strs<'a>(items: &'a [Value], key: &str) -> Vec<&'a str> {
    items.iter().map(|i| i[key].as_str().unwrap()).collect()
}

/// `t` with a +02:00 offset, URL-encoded (the `+` would read as a space).
fn query_instant(t: DateTime<Utc>) -> String {
    let offset = FixedOffset::east_opt(2 * 3600).unwrap();
    t.with_timezone(&offset)
        .to_rfc3339_opts(SecondsFormat::Micros, false)
        .replace('+', "%2B")
}

#[tokio::test]
async fn history_lists_events_in_version_order_with_field_changes() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let task = app
        .create_ok(
            &token,
            json!({"title": "Draft", "description": "first pass", "tags": ["work"],
                   "due_at": "2026-05-01T09:00:00+02:00", "reminders": [{"before": "PT15M"}]}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let r = app
        .req(reqwest::Method::PATCH, &format!("/tasks/{id}"), &token)
        .header("x-correlation-id", "corr-patch")
        .json(&json!({"title": "Final", "description": null, "tags": ["work", "q3"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let completed: Value = app
        .action(&token, &id, "complete", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.action(&token, &id, "reopen", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.delete_task(&token, &id, None).await.status(),
        StatusCode::NO_CONTENT
    );
    audit_from_outbox(&app).await;
    // A reminder fired from version 2, recorded after everything else: the
    // history orders by version first, so it sits right after the update.
    let task_id = Uuid::parse_str(&id).unwrap();
    audit_event(
        &app,
        &Event::ReminderDue(ReminderDue {
            metadata: EventMetadata {
                event_id: Uuid::now_v7(),
                occurred_at: Utc::now().trunc_subsecs(6),
                user_id: user,
                task_id,
                version: 2,
                correlation_id: "corr-reminder".into(),
                causation_id: None,
            },
            reminder_key: format!("{id}:before:900"),
            fire_at: Utc::now().trunc_subsecs(6),
            due_at: None,
            title: "Final".into(),
            reminder_id: None,
            fired_at: None,
        }),
    )
    .await;

    // the task is deleted (GET answers 404) but its history stays readable
    let history = get_ok(&app, &token, &format!("/tasks/{id}/history")).await;
    assert_eq!(history["task_id"], id.as_str());
    let items = items(&history);
    assert_eq!(
        strs(items, "event_type"),
        [
            "TaskCreated",
            "TaskUpdated",
            "ReminderDue",
            "TaskCompleted",
            "TaskReopened",
            "TaskDeleted"
        ]
    );
    let versions: Vec<i64> = items
        .iter()
        .map(|i| i["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 2, 3, 4, 5]);
    let outbox_ids: HashSet<String> = app
        .outbox()
        .await
        .iter()
        .map(|r| {
            r.payload["event"]["metadata"]["event_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert!(items
        .iter()
        .filter(|i| i["event_type"] != "ReminderDue")
        .all(|i| outbox_ids.contains(i["event_id"].as_str().unwrap())));

    // created: every set field, old null, in the API's representation
    assert_eq!(
        items[0]["changes"],
        json!([
            {"field": "title", "old": null, "new": "Draft"},
            {"field": "description", "old": null, "new": "first pass"},
            {"field": "due_at", "old": null, "new": "2026-05-01T07:00:00Z"},
            {"field": "priority", "old": null, "new": "medium"},
            {"field": "tags", "old": null, "new": ["work"]},
            {"field": "reminders", "old": null,
             "new": [{"before": "PT15M", "id": items[0]["task"]["reminders"][0]["id"]}]},
        ])
    );
    assert!(items[0]["task"]["reminders"][0]["id"].is_string());
    assert_eq!(items[0]["task"]["title"], "Draft");
    assert_eq!(items[0]["task"]["version"], 1);

    // the PATCH: exactly the changed fields, values parsed back into JSON
    let update = &items[1];
    assert_eq!(
        update["changes"],
        json!([
            {"field": "title", "old": "Draft", "new": "Final"},
            {"field": "description", "old": "first pass", "new": null},
            {"field": "tags", "old": ["work"], "new": ["work", "q3"]},
        ])
    );
    assert_eq!(update["correlation_id"], "corr-patch");
    assert_eq!(update["causation_id"], Value::Null);
    assert_eq!(update["task"]["id"], id.as_str());
    assert_eq!(update["task"]["title"], "Final");
    assert_eq!(update["task"]["description"], Value::Null);
    assert_eq!(update["task"]["version"], 2);

    assert_eq!(items[2]["changes"], json!([]));
    assert_eq!(items[2]["task"], Value::Null);
    assert_eq!(items[2]["correlation_id"], "corr-reminder");

    assert_eq!(
        items[3]["changes"],
        json!([
            {"field": "status", "old": "open", "new": "completed"},
            {"field": "completed_at", "old": null, "new": completed["completed_at"]},
        ])
    );
    assert_eq!(items[3]["task"]["status"], "completed");
    // the reopen reports the completion instant it cleared
    assert_eq!(
        items[4]["changes"],
        json!([
            {"field": "status", "old": "completed", "new": "open"},
            {"field": "completed_at", "old": completed["completed_at"], "new": null},
        ])
    );
    assert_eq!(items[5]["changes"][0]["field"], "deleted_at");
    assert!(items[5]["changes"][0]["new"].is_string());
}

#[tokio::test]
async fn other_users_history_is_404_and_their_events_never_appear() {
    let app = spawn_app().await;
    let (_, alice_token) = app.new_user().await;
    let (_, bob_token) = app.new_user().await;
    let mine = app.create_ok(&alice_token, json!({"title": "mine"})).await;
    let theirs = app.create_ok(&bob_token, json!({"title": "theirs"})).await;
    let theirs_id = theirs["id"].as_str().unwrap();
    app.patch_task(
        &bob_token,
        theirs_id,
        json!({"title": "still theirs"}),
        None,
    )
    .await;
    audit_from_outbox(&app).await;

    for path in [
        format!("/tasks/{theirs_id}/history"),
        format!("/tasks/{}/history", Uuid::now_v7()),
        "/tasks/not-a-uuid/history".to_owned(),
    ] {
        assert_problem(get(&app, &alice_token, &path).await, StatusCode::NOT_FOUND).await;
    }
    let bobs = get_ok(&app, &bob_token, &format!("/tasks/{theirs_id}/history")).await;
    assert_eq!(items(&bobs).len(), 2);

    let feed = get_ok(&app, &alice_token, "/audit").await;
    let feed = items(&feed);
    assert_eq!(feed.len(), 1);
    assert_eq!(feed[0]["task_id"], mine["id"]);
    assert_eq!(feed[0]["task"]["title"], "mine");
    let mut all = get_ok(&app, &alice_token, "/audit?type=TaskUpdated").await;
    assert_eq!(items(&all).len(), 0, "bob's update leaked: {all}");
    all = get_ok(&app, &bob_token, "/audit").await;
    assert!(items(&all).iter().all(|i| i["task_id"] == theirs["id"]));

    // a task of hers that the audit log has not caught up with: empty, not 404
    let fresh = app.create_ok(&alice_token, json!({"title": "fresh"})).await;
    let h = get_ok(
        &app,
        &alice_token,
        &format!("/tasks/{}/history", fresh["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(h["items"], json!([]));

    assert_problem(
        app.client
            .get(app.url(&format!("/tasks/{theirs_id}/history")))
            .send()
            .await
            .unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_problem(
        app.client.get(app.url("/audit")).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn audit_filters_by_type_and_time_and_paginates() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let (_, other) = app.new_user().await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let t = app
            .create_ok(&token, json!({"title": format!("task {i}")}))
            .await;
        ids.push(t["id"].as_str().unwrap().to_owned());
    }
    app.patch_task(&token, &ids[0], json!({"priority": "high"}), None)
        .await;
    app.patch_task(&token, &ids[1], json!({"tags": ["x"]}), None)
        .await;
    app.action(&token, &ids[2], "complete", None).await;
    app.create_ok(&other, json!({"title": "noise"})).await;
    audit_from_outbox(&app).await;

    // what the feed must return: the user's events in the order they were
    // recorded (audit_from_outbox: newest outbox row first)
    let mut recorded: Vec<(DateTime<Utc>, String)> = app
        .outbox()
        .await
        .iter()
        .map(|r| &r.payload["event"]["metadata"])
        .filter(|m| m["user_id"] == user.to_string().as_str())
        .map(|m| {
            (
                m["occurred_at"].as_str().unwrap().parse().unwrap(),
                m["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    recorded.reverse();
    let expected_ids: Vec<String> = recorded.iter().map(|e| e.1.clone()).collect();
    assert_eq!(expected_ids.len(), 7);

    // every page walked: all events once, in order, 4 pages of <= 2, then an
    // empty page (nothing recorded after the last position yet)
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = "/audit?limit=2".to_owned();
    loop {
        let page = get_ok(&app, &token, &path).await;
        pages += 1;
        assert!(items(&page).len() <= 2);
        seen.extend(
            strs(items(&page), "event_id")
                .into_iter()
                .map(str::to_owned),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/audit?limit=2&cursor={c}"),
            None => {
                assert!(items(&page).is_empty(), "a page with items has a cursor");
                break;
            }
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(pages, 5);
    assert_eq!(seen, expected_ids);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

    let updated = get_ok(&app, &token, "/audit?type=TaskUpdated").await;
    assert_eq!(strs(items(&updated), "event_type"), ["TaskUpdated"; 2]);
    assert_eq!(
        items(&updated)[1]["changes"],
        json!([{"field": "priority", "old": "medium", "new": "high"}]),
        "recorded order: the tags update (newer outbox row) was recorded first"
    );
    let two = get_ok(&app, &token, "/audit?type=TaskUpdated&type=TaskCompleted").await;
    assert_eq!(items(&two).len(), 3);

    // [from, to) around the 3rd..5th instants, with a +02:00 offset, walked
    // one per page; listed in recorded order
    let mut instants: Vec<DateTime<Utc>> = recorded.iter().map(|e| e.0).collect();
    instants.sort();
    let (from_t, to_t) = (instants[2], instants[5]);
    let window: Vec<String> = recorded
        .iter()
        .filter(|(t, _)| *t >= from_t && *t < to_t)
        .map(|e| e.1.clone())
        .collect();
    assert_eq!(window.len(), 3);
    let from = query_instant(from_t);
    let to = query_instant(to_t);
    let mut seen = Vec::new();
    let mut path = format!("/audit?from={from}&to={to}&limit=1");
    for _ in 0..10 {
        let page = get_ok(&app, &token, &path).await;
        seen.extend(
            strs(items(&page), "event_id")
                .into_iter()
                .map(str::to_owned),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/audit?from={from}&to={to}&limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, window);
    let none = get_ok(
        &app,
        &token,
        &format!("/audit?from={}", query_instant(Utc::now())),
    )
    .await;
    assert_eq!(none["items"], json!([]));
    assert_eq!(none["next_cursor"], Value::Null);
    // an empty range selects nothing; it is not an error
    let empty = get_ok(
        &app,
        &token,
        "/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(empty["items"], json!([]));

    for (query, fields) in [
        ("?from=2026-01-01T00:00:00", vec!["from"]),
        ("?to=2026-01-01T00:00:00", vec!["to"]),
        ("?type=TaskExploded", vec!["type"]),
        (
            "?limit=0&cursor=garbage&user_id=x",
            vec!["limit", "cursor", "user_id"],
        ),
    ] {
        let p = assert_problem(
            get(&app, &token, &format!("/audit{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&p), fields, "{query}");
    }
}

/// The bug this cursor fixes: the audit worker records events late and out
/// of order. Here a row's transaction takes the lower sequence value, carries
/// an older `occurred_at`, and commits only after a page was read past the
/// rows around it; following `next_cursor` still returns it.
#[tokio::test]
async fn audit_cursor_returns_a_row_that_commits_late() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;
    let task = Uuid::now_v7();
    let now = Utc::now().trunc_subsecs(6);
    let first = reminder(user, task, 1, now);
    audit_event(&app, &first).await;

    let late = reminder(user, task, 2, now - chrono::Duration::minutes(5));
    let mut slow = app.pool.begin().await.unwrap();
    insert_event(&mut *slow, &late).await;
    let early = reminder(user, task, 3, now + chrono::Duration::seconds(1));
    insert_event(&app.pool, &early).await;
    let seq_of = |sql_id: Uuid| {
        sqlx::query_scalar::<_, i64>("SELECT seq FROM audit_log WHERE event_id = $1").bind(sql_id)
    };
    let late_seq = seq_of(late.metadata().event_id)
        .fetch_one(&mut *slow)
        .await
        .unwrap();
    let early_seq = seq_of(early.metadata().event_id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(
        late_seq < early_seq,
        "the late row holds the lower sequence"
    );

    // A reader now: `early` is committed and visible, but listing it would
    // move the cursor past `late`'s position; it is held back instead.
    let page = get_ok(&app, &token, "/audit?limit=10").await;
    assert_eq!(
        strs(items(&page), "event_id"),
        [first.metadata().event_id.to_string()]
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();

    slow.commit().await.unwrap();
    settled(&app).await;
    let page = get_ok(&app, &token, &format!("/audit?limit=10&cursor={cursor}")).await;
    assert_eq!(
        strs(items(&page), "event_id"),
        [
            late.metadata().event_id.to_string(),
            early.metadata().event_id.to_string()
        ],
        "the late row is returned, in recorded order"
    );
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let rest = get_ok(&app, &token, &format!("/audit?cursor={cursor}")).await;
    assert_eq!(rest["items"], json!([]));
    assert_eq!(rest["next_cursor"], Value::Null);
}

#[tokio::test]
async fn openapi_documents_the_audit_routes() {
    let app = spawn_app().await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let history = &doc["paths"]["/tasks/{id}/history"]["get"];
    assert!(history["responses"]["404"].is_object());
    let audit = &doc["paths"]["/audit"]["get"];
    assert!(audit["responses"]["422"]["content"]["application/problem+json"].is_object());
    let params: Vec<&str> = audit["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["from", "to", "type", "limit", "cursor"]);
    assert!(doc["components"]["schemas"]["AuditEventResponse"].is_object());
}
