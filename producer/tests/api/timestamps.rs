//! Event instants along a task's versions never go backwards, however the
//! writers interleave: they are taken after the task row is locked.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn concurrent_patches_give_increasing_versions_and_non_decreasing_instants() {
    let app = spawn_app().await;
    let (_, token) = app.new_user().await;
    let task = app.create_ok(&token, json!({"title": "contended"})).await;
    let id = task["id"].as_str().unwrap().to_owned();

    let patches = (0..40).map(|i| {
        let (app, token, id) = (&app, &token, &id);
        async move {
            app.patch_task(token, id, json!({"title": format!("writer {i}")}), None)
                .await
        }
    });
    for r in futures::future::join_all(patches).await {
        assert!(r.status().is_success(), "{}", r.status());
    }

    let rows = app.outbox().await;
    assert_eq!(rows.len(), 41, "one event per version");
    let versions: Vec<i64> = rows.iter().map(|r| r.version()).collect();
    assert_eq!(
        versions,
        (1..=41).collect::<Vec<_>>(),
        "strictly increasing in outbox order"
    );
    let instants: Vec<chrono::DateTime<chrono::Utc>> = rows
        .iter()
        .map(|r| {
            let s = r.payload["event"]["metadata"]["occurred_at"]
                .as_str()
                .expect("occurred_at");
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("RFC 3339")
                .to_utc()
        })
        .collect();
    for w in instants.windows(2) {
        assert!(
            w[0] <= w[1],
            "occurred_at went backwards: {} then {}",
            w[0],
            w[1]
        );
    }
}
