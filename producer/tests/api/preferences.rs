//! `GET /preferences` and `PUT /preferences`: defaults, a full document stored and shown,
//! every invalid field named, and the login-token-only rule for changing them. How the
//! notifier routes by them is tested in `tests/tests/webhooks.rs`.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app};

#[tokio::test]
async fn preferences_have_defaults_are_replaced_whole_and_invalid_fields_are_named() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let get = || async {
        let r = app
            .req(Method::GET, "/preferences", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Value>().await.unwrap()
    };
    let defaults = get().await;
    assert_eq!(defaults["time_zone"], "UTC");
    assert_eq!(defaults["quiet_hours"], Value::Null);
    assert_eq!(
        defaults["channels"]["reminder.due"],
        json!(["inbox", "live", "webhook", "email"])
    );
    assert_eq!(
        defaults["channels"]["task.created"],
        json!(["live", "webhook"])
    );

    let r = app
        .req(Method::PUT, "/preferences", &token)
        .json(&json!({
            "time_zone": "Europe/Berlin",
            "quiet_hours": {"start": "22:00", "end": "07:00"},
            "channels": {"task.created": ["inbox", "live"]},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stored = get().await;
    assert_eq!(stored["time_zone"], "Europe/Berlin");
    assert_eq!(
        stored["quiet_hours"],
        json!({"start": "22:00:00", "end": "07:00:00"})
    );
    assert_eq!(stored["channels"]["task.created"], json!(["inbox", "live"]));
    assert_eq!(
        stored["channels"]["task.updated"],
        json!(["live", "webhook"])
    );

    // A whole replacement: what is absent returns to its default.
    let r = app
        .req(Method::PUT, "/preferences", &token)
        .json(&json!({"time_zone": "Asia/Tokyo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let stored = get().await;
    assert_eq!(stored["quiet_hours"], Value::Null);
    assert_eq!(
        stored["channels"]["task.created"],
        json!(["live", "webhook"])
    );

    let r = app
        .req(Method::PUT, "/preferences", &token)
        .json(&json!({
            "time_zone": "Nowhere/Town",
            "quiet_hours": {"start": "07:00", "end": "7:00 pm"},
            "channels": {"task.created": ["fax"]},
        }))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["channels.task.created[0]", "quiet_hours.end", "time_zone"]
    );
    assert_eq!(get().await["time_zone"], "Asia/Tokyo", "nothing stored");
}

#[tokio::test]
async fn a_personal_access_token_reads_but_cannot_change_them() {
    let app = spawn_app().await;
    let (_, login) = app.new_user().await;
    let r = app
        .req(Method::POST, "/tokens", &login)
        .json(&json!({"name": "reader", "scopes": ["notifications:read"]}))
        .send()
        .await
        .unwrap();
    let pat: Value = r.json().await.unwrap();
    let pat = pat["token"].as_str().unwrap();
    let r = app
        .req(Method::GET, "/preferences", pat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = app
        .req(Method::PUT, "/preferences", pat)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_problem(r, StatusCode::FORBIDDEN).await;
}
