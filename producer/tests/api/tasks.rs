use reqwest::{header, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, etag, spawn_app};

#[tokio::test]
async fn lifecycle_versions_etags_and_outbox_events() {
    let app = spawn_app().await;
    let (user, token) = app.new_user().await;

    let r = app
        .req(reqwest::Method::POST, "/tasks", &token)
        .header("x-correlation-id", "corr-lifecycle")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .json(&json!({
            "title": "  Write report ",
            "description": "quarterly",
            "due_at": "2026-05-01T09:00:00+02:00",
            "priority": "high",
            "tags": ["work", " work ", "q2"],
            "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=FR", "tz": "Europe/Berlin", "mode": "from_due"},
            "reminders": [{"before": "PT15M"}, {"at": "2026-05-01T06:00:00Z"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(etag(&r), "\"1\"");
    let task: Value = r.json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_owned();
    assert_eq!(task["title"], "Write report");
    assert_eq!(task["status"], "open");
    assert_eq!(task["priority"], "high");
    assert_eq!(task["tags"], json!(["work", "q2"]));
    assert_eq!(task["due_at"], "2026-05-01T07:00:00Z");
    // Each reminder gets a stable id of its own.
    let reminders = task["reminders"].as_array().unwrap();
    assert_eq!(reminders.len(), 2);
    assert_eq!(reminders[0]["before"], "PT15M");
    assert_eq!(reminders[1]["at"], "2026-05-01T06:00:00Z");
    assert!(reminders.iter().all(|r| r["id"].is_string()));
    assert_ne!(reminders[0]["id"], reminders[1]["id"]);
    assert_eq!(task["recurrence"]["tz"], "Europe/Berlin");
    assert_eq!(task["version"], 1);

    let r = app.get_task(&token, &id).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r), "\"1\"");
    let mut fetched: Value = r.json().await.unwrap();
    // GET /tasks/{id} adds the computed next occurrences; the rest is the create's answer.
    let next = fetched
        .as_object_mut()
        .unwrap()
        .remove("next_occurrences")
        .unwrap();
    assert_eq!(next.as_array().unwrap().len(), 3, "{next}");
    assert_eq!(
        fetched, task,
        "a read returns exactly what the create answered"
    );

    let r = app
        .patch_task(
            &token,
            &id,
            json!({"title": "Write the report", "description": null}),
            Some("\"1\""),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r), "\"2\"");
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["title"], "Write the report");
    assert_eq!(patched["description"], Value::Null);

    // a patch that changes nothing: 200, same version, no event
    let r = app
        .patch_task(&token, &id, json!({"title": "Write the report"}), None)
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(etag(&r), "\"2\"");

    let r = app.action(&token, &id, "complete", Some("2")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let done: Value = r.json().await.unwrap();
    assert_eq!(done["status"], "completed");
    assert!(done["completed_at"].is_string());
    assert_eq!(done["version"], 3);
    assert_problem(
        app.action(&token, &id, "complete", None).await,
        StatusCode::CONFLICT,
    )
    .await;

    let r = app.action(&token, &id, "reopen", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let reopened: Value = r.json().await.unwrap();
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["completed_at"], Value::Null);
    assert_eq!(reopened["version"], 4);
    assert_problem(
        app.action(&token, &id, "reopen", None).await,
        StatusCode::CONFLICT,
    )
    .await;

    let r = app.delete_task(&token, &id, Some("\"4\"")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_problem(app.get_task(&token, &id).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.delete_task(&token, &id, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.patch_task(&token, &id, json!({"title": "zombie"}), None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;

    let rows = app.outbox().await;
    let types: Vec<&str> = rows.iter().map(|r| r.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "TaskCreated",
            "TaskUpdated",
            "TaskCompleted",
            "TaskReopened",
            "TaskDeleted"
        ]
    );
    let versions: Vec<i64> = rows.iter().map(|r| r.version()).collect();
    assert_eq!(versions, [1, 2, 3, 4, 5]);
    for row in &rows {
        assert_eq!(row.topic, app.topic);
        assert_eq!(row.partition_key, id);
        let meta = &row.payload["event"]["metadata"];
        assert_eq!(meta["task_id"], id.as_str());
        assert_eq!(meta["user_id"], user.to_string());
        assert_eq!(row.payload["type"], row.event_type.as_str());
    }
    // correlation id and trace context of the create request travel with its event
    assert_eq!(
        rows[0].payload["event"]["metadata"]["correlation_id"],
        "corr-lifecycle"
    );
    assert_eq!(
        rows[0].traceparent.as_deref(),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    let changes = &rows[1].payload["event"]["changes"];
    let fields: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["title", "description"]);
    assert_eq!(changes[0]["old_value"], "\"Write report\"");
    assert_eq!(changes[0]["new_value"], "\"Write the report\"");
    assert_eq!(changes[1]["new_value"], Value::Null);
    assert_eq!(
        rows[4].payload["event"]["task"]["title"],
        "Write the report"
    );
}

#[tokio::test]
async fn stale_if_match_is_412_and_writes_nothing() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let task = app.create_ok(&token, json!({"title": "a"})).await;
    let id = task["id"].as_str().unwrap();
    let r = app
        .patch_task(&token, id, json!({"title": "b"}), Some("\"1\""))
        .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = app
        .patch_task(&token, id, json!({"title": "c"}), Some("\"1\""))
        .await;
    assert_eq!(etag(&r), "\"2\"", "the 412 tells the current version");
    assert_problem(r, StatusCode::PRECONDITION_FAILED).await;
    assert_problem(
        app.action(&token, id, "complete", Some("1")).await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    assert_problem(
        app.delete_task(&token, id, Some("\"1\"")).await,
        StatusCode::PRECONDITION_FAILED,
    )
    .await;
    // a malformed If-Match is a 400, not a silent unconditional write
    assert_problem(
        app.delete_task(&token, id, Some("W/\"2\"")).await,
        StatusCode::BAD_REQUEST,
    )
    .await;

    let current: Value = app.get_task(&token, id).await.json().await.unwrap();
    assert_eq!(current["title"], "b");
    assert_eq!(current["version"], 2);
    assert_eq!(app.outbox().await.len(), 2);
    // the bare number form and `*` match
    assert_eq!(
        app.action(&token, id, "complete", Some("2")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.action(&token, id, "reopen", Some("*")).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn patch_validates_the_merged_task() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let task = app
        .create_ok(
            &token,
            json!({"title": "a", "due_at": "2026-05-01T09:00:00Z", "reminders": [{"before": "PT1H"}]}),
        )
        .await;
    let id = task["id"].as_str().unwrap();
    // clearing due_at would orphan the relative reminder: a valid patch
    // that conflicts with the task's state (409), naming the field
    let r = app
        .patch_task(&token, id, json!({"due_at": null}), None)
        .await;
    let p = assert_problem(r, StatusCode::CONFLICT).await;
    assert_eq!(error_fields(&p), ["reminders[0].before"]);
    // Under a stale If-Match that conflict is about a version the client has not seen: a
    // 412. A body wrong in itself stays a 422 whatever version If-Match names, even when
    // its fault (a rule that does not parse) shows only against the task (a fuzzer find).
    let stale = Some("\"655\"");
    let r = app
        .patch_task(&token, id, json!({"due_at": null}), stale)
        .await;
    assert_problem(r, StatusCode::PRECONDITION_FAILED).await;
    let bad_rule =
        json!({"recurrence": {"rrule": "\u{92}\u{12}wY", "tz": "America/Lower_Princes"}});
    let r = app.patch_task(&token, id, bad_rule, stale).await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["recurrence.rrule"]);
    let r = app
        .patch_task(&token, id, json!({"status": "completed"}), None)
        .await;
    assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let r = app
        .patch_task(
            &token,
            id,
            json!({"due_at": null, "reminders": null, "tags": ["x"]}),
            None,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["due_at"], Value::Null);
    assert_eq!(t["reminders"], json!([]));
    assert_eq!(t["tags"], json!(["x"]));
    assert_eq!(app.outbox().await.len(), 2);
}

#[tokio::test]
async fn another_users_task_is_404_everywhere() {
    let app = spawn_app().await;
    let (_, alice) = app.new_user().await;
    let (_, mallory) = app.new_user().await;
    let task = app.create_ok(&alice, json!({"title": "private"})).await;
    let id = task["id"].as_str().unwrap();

    assert_problem(app.get_task(&mallory, id).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.patch_task(&mallory, id, json!({"title": "pwned"}), None)
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.delete_task(&mallory, id, None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.action(&mallory, id, "complete", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.action(&mallory, id, "reopen", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let page: Value = app.list(&mallory, "").await.json().await.unwrap();
    assert_eq!(page["items"], json!([]));

    let r = app.get_task(&alice, id).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["title"], "private");
    assert_eq!(t["version"], 1);
    assert_eq!(app.outbox().await.len(), 1);
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let missing = uuid::Uuid::now_v7().to_string();
    assert_problem(app.get_task(&token, &missing).await, StatusCode::NOT_FOUND).await;
    assert_problem(
        app.get_task(&token, "not-a-uuid").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_problem(
        app.action(&token, &missing, "complete", None).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn create_sets_location_and_defaults() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app.create_task(&token, json!({"title": "plain"})).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r
        .headers()
        .get(header::LOCATION)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let t: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/tasks/{}", t["id"].as_str().unwrap()));
    assert_eq!(t["priority"], "medium");
    assert_eq!(t["tags"], json!([]));
    assert_eq!(t["reminders"], json!([]));
    assert_eq!(t["recurrence"], Value::Null);
    assert_eq!(t["created_at"], t["updated_at"]);
}

#[tokio::test]
async fn recurring_tasks_show_their_series_and_next_occurrences() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;

    // from_due needs a due date: 422 on create, nothing written.
    let r = app
        .create_task(
            &token,
            json!({"title": "t", "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC"}}),
        )
        .await;
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["due_at"]);
    app.assert_nothing_written().await;

    let t = app
        .create_ok(
            &token,
            json!({"title": "Stand-up", "due_at": "2026-03-27T09:00:00+01:00",
                   "recurrence": {"rrule": "FREQ=WEEKLY;BYDAY=FR", "tz": "Europe/Berlin",
                                  "exdates": ["2026-04-03T09:00:00+02:00"]}}),
        )
        .await;
    let id = t["id"].as_str().unwrap();
    assert!(t["series_id"].is_string());
    assert_eq!(t["occurrence"], "2026-03-27T08:00:00Z");
    assert_eq!(t["recurrence"]["exdates"], json!(["2026-04-03T07:00:00Z"]));
    let got: Value = app.get_task(&token, id).await.json().await.unwrap();
    // 09:00 Berlin across the DST change, the exdate skipped. The occurrence is in the past
    // (these dates are before the test runs), so they follow "now" in from_due mode.
    let next: Vec<&str> = got["next_occurrences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(next.len(), 3, "{got}");
    for n in &next {
        let t = chrono::DateTime::parse_from_rfc3339(n).unwrap();
        assert!(t > chrono::Utc::now(), "{n} is in the future");
        let berlin = t.with_timezone(&chrono_tz::Europe::Berlin);
        assert_eq!(berlin.format("%a %H:%M").to_string(), "Fri 09:00", "{n}");
    }

    // A patch that would leave a from_due recurrence without due_at: 409.
    let r = app
        .patch_task(&token, id, json!({"due_at": null}), None)
        .await;
    let p = assert_problem(r, StatusCode::CONFLICT).await;
    assert_eq!(error_fields(&p), ["due_at"]);

    // A task without recurrence has no series and no next occurrences.
    let plain = app.create_ok(&token, json!({"title": "once"})).await;
    assert_eq!(plain["series_id"], Value::Null);
    let got: Value = app
        .get_task(&token, plain["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got["next_occurrences"], json!([]));

    // scope is instance or series; anything else is a 422.
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/tasks/{id}?scope=all"),
            &token,
        )
        .send()
        .await
        .unwrap();
    let p = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&p), ["scope"]);
    let r = app
        .req(
            reqwest::Method::DELETE,
            &format!("/tasks/{id}?scope=series"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let ended: Option<String> =
        sqlx::query_scalar("SELECT end_reason FROM series WHERE id = $1::uuid")
            .bind(t["series_id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(ended.as_deref(), Some("deleted"));
}
