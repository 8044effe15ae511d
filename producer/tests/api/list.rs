use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{assert_problem, error_fields, spawn_app, TestApp};

async fn titles(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let r = app.list(token, query).await;
    assert_eq!(r.status(), StatusCode::OK, "{query}");
    let page: Value = r.json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_combine_with_and() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let (_, other) = app.new_user().await;
    app.create_ok(
        &token,
        json!({"title": "alpha", "tags": ["work", "urgent"], "priority": "high",
                                 "due_at": "2026-01-10T00:00:00Z"}),
    )
    .await;
    app.create_ok(&token, json!({"title": "beta", "tags": ["work"], "priority": "low",
                                 "due_at": "2026-02-10T00:00:00Z", "description": "Discount 50% off"})).await;
    let gamma = app
        .create_ok(
            &token,
            json!({"title": "gamma", "tags": ["home"], "priority": "high"}),
        )
        .await;
    let deleted = app
        .create_ok(&token, json!({"title": "delta deleted", "tags": ["work"]}))
        .await;
    app.create_ok(&token, json!({"title": "under_score 500 items"}))
        .await;
    app.create_ok(
        &other,
        json!({"title": "alpha of someone else", "tags": ["work"]}),
    )
    .await;
    app.action(&token, gamma["id"].as_str().unwrap(), "complete", None)
        .await;
    app.delete_task(&token, deleted["id"].as_str().unwrap(), None)
        .await;

    assert_eq!(
        titles(&app, &token, "").await,
        ["alpha", "beta", "gamma", "under_score 500 items"]
    );
    assert_eq!(titles(&app, &token, "?tag=work").await, ["alpha", "beta"]);
    assert_eq!(
        titles(&app, &token, "?tag=work&tag=urgent").await,
        ["alpha"]
    );
    assert_eq!(
        titles(&app, &token, "?priority=high").await,
        ["alpha", "gamma"]
    );
    assert_eq!(
        titles(&app, &token, "?priority=high&status=open").await,
        ["alpha"]
    );
    assert_eq!(titles(&app, &token, "?status=completed").await, ["gamma"]);
    assert_eq!(
        titles(&app, &token, "?due_after=2026-01-15T00:00:00%2B01:00").await,
        ["beta"]
    );
    assert_eq!(
        titles(&app, &token, "?due_before=2026-01-15T00:00:00Z").await,
        ["alpha"]
    );
    assert_eq!(
        titles(
            &app,
            &token,
            "?due_after=2026-01-01T00:00:00Z&due_before=2026-03-01T00:00:00Z&tag=work&priority=low"
        )
        .await,
        ["beta"]
    );
    // q: case-insensitive on title and description, with % and _ taken literally
    assert_eq!(titles(&app, &token, "?q=ALPH").await, ["alpha"]);
    assert_eq!(titles(&app, &token, "?q=50%25").await, ["beta"]);
    // unescaped, `_` would match the "l" of "alpha"
    assert_eq!(titles(&app, &token, "?q=a_p").await, Vec::<String>::new());
    assert_eq!(
        titles(&app, &token, "?q=under_").await,
        ["under_score 500 items"]
    );

    let p = assert_problem(
        app.list(
            &token,
            "?status=done&priority=meh&due_after=2026-01-01T00:00:00",
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&p), ["status", "priority", "due_after"]);
}

#[tokio::test]
async fn pagination_walks_every_task_once_in_order() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let mut created = Vec::new();
    for i in 0..7 {
        let t = app
            .create_ok(&token, json!({"title": format!("task {i}")}))
            .await;
        created.push(t["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut query = "?limit=3".to_owned();
    loop {
        let r = app.list(&token, &query).await;
        assert_eq!(r.status(), StatusCode::OK);
        let page: Value = r.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?limit=3&cursor={c}"),
            None => break,
        }
        assert!(pages < 10, "pagination does not terminate");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 7);

    // an exact multiple of the page size ends with next_cursor null
    let page: Value = app.list(&token, "?limit=7").await.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_cursor"], Value::Null);

    for bad in [
        "?cursor=garbage",
        "?cursor=AAAA",
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?color=red",
    ] {
        assert_problem(
            app.list(&token, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    }
}
