//! `POST /recurrence/preview` (a rule in plain words and its next occurrences, nothing
//! stored) and `GET /tasks?series_id=` (the web page's series view).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app};

#[tokio::test]
async fn a_rule_is_previewed_in_words_with_its_next_occurrences_and_nothing_is_stored() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let r = app
        .req(Method::POST, "/recurrence/preview", &token)
        .json(&json!({
            "rrule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
            "tz": "Europe/Berlin",
            "start": "2026-03-27T09:00:00+01:00",
            "count": 2,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["description"], "every weekday at 09:00");
    assert_eq!(body["rrule"], "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR");
    // 09:00 in Berlin on both sides of the spring change (CET, then CEST).
    assert_eq!(
        body["next"],
        json!(["2026-03-30T07:00:00Z", "2026-03-31T07:00:00Z"])
    );
    app.assert_nothing_written().await;

    // Invalid input: each field named, as for a task's recurrence.
    let r = app
        .req(Method::POST, "/recurrence/preview", &token)
        .json(&json!({"rrule": "FREQ=SOMETIMES", "tz": "Atlantis/Capital", "count": 0}))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields = error_fields(&problem);
    fields.sort();
    assert_eq!(fields, ["count", "rrule", "tz"]);

    // A credential is needed, like every task route.
    let r = app
        .client
        .post(app.url("/recurrence/preview"))
        .json(&json!({"rrule": "FREQ=DAILY", "tz": "UTC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn tasks_are_listed_by_series() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let recurring = |title: &str| {
        json!({"title": title, "due_at": "2026-12-07T09:00:00Z",
               "recurrence": {"rrule": "FREQ=DAILY", "tz": "UTC"}})
    };
    let a = app.create_ok(&token, recurring("a")).await;
    app.create_ok(&token, recurring("b")).await;
    app.create_ok(&token, json!({"title": "plain"})).await;
    let series = a["series_id"].as_str().unwrap();
    let r = app.list(&token, &format!("?series_id={series}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let page: Value = r.json().await.unwrap();
    let titles: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["a"]);

    // Another user's series shows nothing, and a malformed id is named.
    let (_, other) = app.new_user().await;
    let page: Value = app
        .list(&other, &format!("?series_id={series}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"], json!([]));
    let problem = assert_problem(
        app.list(&token, "?series_id=nope").await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&problem), ["series_id"]);
}
