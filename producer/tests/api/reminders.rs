//! Reminder ids and the snooze endpoint: ids are assigned on create and stay stable across
//! patches (by id, else by rule); a due change clears a relative reminder's snooze but keeps
//! its id; a snooze is a new version with a `ReminderSnoozed` event; every bad request is a
//! 4xx naming the field and writes nothing.

use chrono::{DateTime, Duration, SubsecRound, Utc};
use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, etag, spawn_app, TestApp};

fn ids(task: &Value) -> Vec<String> {
    task["reminders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["id"]
                .as_str()
                .expect("every reminder has an id")
                .to_owned()
        })
        .collect()
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

async fn snooze(
    app: &TestApp,
    token: &str,
    task: &str,
    rid: &str,
    body: Value,
) -> reqwest::Response {
    app.req(
        Method::POST,
        &format!("/tasks/{task}/reminders/{rid}/snooze"),
        token,
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn outbox_types(app: &TestApp) -> Vec<String> {
    app.outbox()
        .await
        .into_iter()
        .map(|r| r.event_type)
        .collect()
}

#[tokio::test]
async fn reminder_ids_are_assigned_and_kept_by_id_or_by_rule() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let task = app
        .create_ok(
            &token,
            json!({"title": "a", "due_at": "2027-05-01T09:00:00Z",
                   "reminders": [{"before": "PT15M"}, {"at": "2027-05-01T06:00:00Z",
                                  "id": "0190a0b0-0000-7000-8000-000000000001"}]}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let first = ids(&task);
    assert_eq!(first.len(), 2);
    assert_ne!(first[0], first[1]);
    assert_ne!(
        first[1], "0190a0b0-0000-7000-8000-000000000001",
        "ids are the server's on create"
    );
    // The event carries the ids too.
    let created = &app.outbox().await[0];
    assert_eq!(
        created.payload["event"]["task"]["reminders"][0]["id"],
        first[0].as_str()
    );

    // The same rules without ids: the same reminders.
    let r = app
        .patch_task(
            &token,
            id,
            json!({"reminders": [{"at": "2027-05-01T06:00:00Z"}, {"before": "PT15M"}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let same: Value = r.json().await.unwrap();
    assert_eq!(ids(&same), [first[1].clone(), first[0].clone()]);

    // One kept by id with a new rule, one new.
    let r = app
        .patch_task(
            &token,
            id,
            json!({"reminders": [{"id": first[0], "before": "PT30M"}, {"before": "PT1H"}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let changed: Value = r.json().await.unwrap();
    let now_ids = ids(&changed);
    assert_eq!(now_ids[0], first[0]);
    assert!(!first.contains(&now_ids[1]));
    assert_eq!(changed["reminders"][0]["before"], "PT30M");

    // An id that is not one of this task's reminders (one that was dropped, or a stray
    // one) names nothing to keep: the item is a new reminder with an id of its own.
    let r = app
        .patch_task(
            &token,
            id,
            json!({"reminders": [{"id": first[1], "before": "PT5M"}]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let stray: Value = r.json().await.unwrap();
    let stray_ids = ids(&stray);
    assert_eq!(stray_ids.len(), 1);
    assert!(!first.contains(&stray_ids[0]) && !now_ids.contains(&stray_ids[0]));

    // `snoozed_until` is read-only, but must still be null or an instant.
    let r = app
        .patch_task(
            &token,
            id,
            json!({"reminders": [{"before": "PT5M", "snoozed_until": {}}]}),
            None,
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["reminders[0].snoozed_until"]);
}

#[tokio::test]
async fn a_snooze_is_a_new_version_with_its_event_and_a_due_change_clears_it() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let due = (Utc::now() + Duration::days(1)).to_rfc3339();
    let task = app
        .create_ok(
            &token,
            json!({"title": "a", "due_at": due, "reminders": [{"before": "PT15M"}]}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    let rid = ids(&task)[0].clone();

    let started = Utc::now();
    let r = snooze(&app, &token, id, &rid, json!({"for": "PT10M"})).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r), "\"2\"");
    let snoozed: Value = r.json().await.unwrap();
    let until = instant(&snoozed["reminders"][0]["snoozed_until"]);
    assert!(until >= started + Duration::minutes(10));
    assert!(until <= Utc::now() + Duration::minutes(10));
    assert_eq!(snoozed["reminders"][0]["id"], rid.as_str());
    assert_eq!(snoozed["version"], 2);
    let row = app.outbox().await.pop().unwrap();
    assert_eq!(row.event_type, "ReminderSnoozed");
    assert_eq!(row.payload["event"]["reminder_id"], rid.as_str());
    assert_eq!(
        instant(&row.payload["event"]["snoozed_until"]),
        until,
        "{}",
        row.payload
    );
    assert_eq!(row.payload["event"]["metadata"]["version"], 2);

    // `until` with If-Match.
    let later = (Utc::now() + Duration::hours(2)).trunc_subsecs(0);
    let r = app
        .req(
            Method::POST,
            &format!("/tasks/{id}/reminders/{rid}/snooze"),
            &token,
        )
        .header(header::IF_MATCH, "\"2\"")
        .json(&json!({"until": later.to_rfc3339()}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(instant(&v["reminders"][0]["snoozed_until"]), later);

    // Moving the due date moves the relative reminder: the snooze ends, the id stays.
    let moved = (Utc::now() + Duration::days(2)).to_rfc3339();
    let r = app
        .patch_task(&token, id, json!({"due_at": moved}), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reminders"][0]["id"], rid.as_str());
    assert!(v["reminders"][0].get("snoozed_until").is_none(), "{v}");
    assert_eq!(
        outbox_types(&app).await,
        [
            "TaskCreated",
            "ReminderSnoozed",
            "ReminderSnoozed",
            "TaskUpdated"
        ]
    );
}

#[tokio::test]
async fn bad_snoozes_are_refused_and_write_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let task = app
        .create_ok(
            &token,
            json!({"title": "a", "reminders": [{"at": "2027-05-01T06:00:00Z"}]}),
        )
        .await;
    let id = task["id"].as_str().unwrap().to_owned();
    let rid = ids(&task)[0].clone();
    let written = app.outbox().await.len();
    for (body, field) in [
        (json!({}), "body"),
        (
            json!({"for": "PT1M", "until": "2030-01-01T00:00:00Z"}),
            "body",
        ),
        (json!({"for": "-PT5M"}), "for"),
        (json!({"for": "soon"}), "for"),
        (json!({"for": "PT1M\u{0}"}), "for"),
        (json!({"until": 1_700_000_000}), "until"),
        (json!({"until": "2027-05-01T06:00:00"}), "until"),
    ] {
        let r = snooze(&app, &token, &id, &rid, body.clone()).await;
        let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&p), [field], "{body}");
    }
    // Unknown reminder, another user's task, a garbage id: 404.
    let r = snooze(&app, &token, &id, &id, json!({"for": "PT1M"})).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;
    let (_, other) = app.new_user().await;
    let r = snooze(&app, &other, &id, &rid, json!({"for": "PT1M"})).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;
    let r = snooze(&app, &token, &id, "not-a-uuid", json!({"for": "PT1M"})).await;
    assert_problem(r, StatusCode::NOT_FOUND).await;
    // Stale If-Match.
    let r = app
        .req(
            Method::POST,
            &format!("/tasks/{id}/reminders/{rid}/snooze"),
            &token,
        )
        .header(header::IF_MATCH, "\"7\"")
        .json(&json!({"for": "PT1M"}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::PRECONDITION_FAILED).await;
    assert_eq!(app.outbox().await.len(), written);

    // A completed task: reopen first.
    let r = app.action(&token, &id, "complete", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let written = app.outbox().await.len();
    let r = snooze(&app, &token, &id, &rid, json!({"for": "PT1M"})).await;
    assert_problem(r, StatusCode::CONFLICT).await;
    assert_eq!(app.outbox().await.len(), written);

    // A read-only token may not snooze.
    let r = app
        .req(Method::POST, "/tokens", &token)
        .json(&json!({"name": "ro", "scopes": ["tasks:read"]}))
        .send()
        .await
        .unwrap();
    let ro: Value = r.json().await.unwrap();
    let r = snooze(
        &app,
        ro["token"].as_str().unwrap(),
        &id,
        &rid,
        json!({"for": "PT1M"}),
    )
    .await;
    assert_problem(r, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn a_reminder_may_name_its_channels_and_keeps_them_across_edits() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app
        .req(Method::POST, "/tasks", &token)
        .json(&json!({"title": "t", "due_at": "2030-01-01T09:00:00Z",
                      "reminders": [{"before": "PT1H", "channels": ["webhook", "inbox", "webhook"]},
                                    {"before": "PT5M"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let task: Value = r.json().await.unwrap();
    assert_eq!(
        task["reminders"][0]["channels"],
        json!(["inbox", "webhook"])
    );
    assert!(task["reminders"][1].get("channels").is_none(), "{task}");
    // Sent back as read, with the channels changed: stored as sent.
    let mut reminders = task["reminders"].clone();
    reminders[1]["channels"] = json!([]);
    let r = app
        .req(
            Method::PATCH,
            &format!("/tasks/{}", task["id"].as_str().unwrap()),
            &token,
        )
        .json(&json!({ "reminders": reminders }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["reminders"][1]["channels"], json!([]));
    assert_eq!(ids(&patched), ids(&task), "the same reminders");

    for bad in [json!(["pager"]), json!("inbox"), json!([1])] {
        let r = app
            .req(Method::POST, "/tasks", &token)
            .json(&json!({"title": "t", "reminders": [{"at": "2030-01-01T09:00:00Z", "channels": bad}]}))
            .send()
            .await
            .unwrap();
        let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&problem), ["reminders[0].channels"], "{bad}");
    }
}
