//! The live path end to end: API → outbox → relay → broker → notifier (and the reminders
//! worker) → feed → the API's Server-Sent Events. Two streams of one user both receive a
//! task change and the task's reminder, in feed order, once; a stream of another user
//! receives none of it.
//!
//! Every wait is on state (frames arriving within a bound), never a fixed sleep.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use chrono::{Duration as ChronoDuration, SubsecRound, Utc};
use serde_json::json;
use taskflow_tests::{
    broker::{brokers, create_topic},
    sse::{Frame, SseStream},
    system::TestSystem,
    unique,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

/// `(seq, event)` of each frame until `until` holds for them, or `deadline`.
async fn events(
    s: &mut SseStream,
    deadline: Instant,
    until: impl Fn(&[(i64, String)]) -> bool,
) -> Vec<(i64, String)> {
    let pairs = |frames: &[Frame]| -> Vec<(i64, String)> {
        frames
            .iter()
            .filter_map(|f| Some((f.id?, f.event.clone())))
            .collect()
    };
    let frames = s.frames_until(deadline, |f| until(&pairs(f))).await;
    pairs(&frames)
}

async fn open(sys: &TestSystem, token: &str) -> SseStream {
    SseStream::open(&sys.http, &sys.api, token, None)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_streams_of_a_user_get_a_change_and_a_reminder_another_users_gets_nothing() {
    let brokers = brokers();
    let topic = unique("live-task-events");
    let reminders_topic = unique("live-reminders");
    create_topic(&brokers, &topic, 3).await;
    create_topic(&brokers, &reminders_topic, 3).await;
    let sys = TestSystem::start(&brokers, &topic).await;
    let stop = CancellationToken::new();

    let notifier = sys
        .spawn_notifier(&[topic.as_str(), reminders_topic.as_str()], &stop, |_| {})
        .await;
    let reminder_worker = sys.spawn_reminders(&reminders_topic, &stop).await;

    let (alice, bob) = (sys.user().await, sys.user().await);
    let mut a1 = open(&sys, &alice).await;
    let mut a2 = open(&sys, &alice).await;
    let mut b = open(&sys, &bob).await;

    let soon = (Utc::now() + ChronoDuration::seconds(2)).trunc_subsecs(3);
    let r = sys
        .http
        .post(format!("{}/tasks", sys.api))
        .bearer_auth(&alice)
        .json(&json!({"title": "Call mum", "reminders": [{"at": soon.to_rfc3339()}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);

    let deadline = Instant::now() + WAIT;
    let both = |evs: &[(i64, String)]| {
        evs.iter().any(|(_, k)| k == "TaskCreated") && evs.iter().any(|(_, k)| k == "ReminderDue")
    };
    let first = events(&mut a1, deadline, both).await;
    let second = events(&mut a2, deadline, both).await;
    for evs in [&first, &second] {
        let kinds: Vec<&str> = evs.iter().map(|(_, k)| k.as_str()).collect();
        assert_eq!(kinds, ["TaskCreated", "ReminderDue"], "{evs:?}");
        assert!(evs[0].0 < evs[1].0, "feed order: {evs:?}");
    }
    assert_eq!(first, second, "both streams, the same entries");
    // Bob's stream: nothing of Alice's (it keeps only heartbeats meanwhile).
    let bobs = events(&mut b, Instant::now() + Duration::from_secs(2), |e| {
        !e.is_empty()
    })
    .await;
    assert!(bobs.is_empty(), "{bobs:?}");

    stop.cancel();
    notifier.join().await.unwrap();
    reminder_worker.join().await.unwrap();
}
