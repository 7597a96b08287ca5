//! Streaming faults: before the first content a failure falls back invisibly; after it the
//! model never changes, and a failure ends the stream with an `error` event, no `done`,
//! nothing stored.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Rig, rig};
use crate::faults::{End, Reply, content_event, proper_tail};

/// Sends a streamed message; returns the status and the `(event, data)` pairs.
async fn stream(rig: &Rig, id: &str, content: &str) -> (StatusCode, Vec<(String, Value)>) {
    let response = rig
        .app
        .http
        .post(format!("{}/v1/sessions/{id}/messages", rig.app.address))
        .bearer_auth(&rig.app.key)
        .json(&json!({ "content": content, "stream": true }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let events = text
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap_or_default()
                    .to_string()
            };
            let data = serde_json::from_str(&field("data: ")).unwrap_or(Value::Null);
            (field("event: "), data)
        })
        .collect();
    (status, events)
}

fn deltas(events: &[(String, Value)]) -> String {
    events
        .iter()
        .filter(|(name, _)| name == "delta")
        .map(|(_, data)| data["content"].as_str().unwrap())
        .collect()
}

/// The stream ended with an `error` event naming `reason`, and no `done`.
fn assert_ends_in_error(events: &[(String, Value)], reason: &str) {
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "error", "{events:?}");
    assert_eq!(data["error"], "upstream_error");
    assert_eq!(
        data["attempts"].as_array().unwrap().last().unwrap()["reason"],
        reason
    );
    assert!(events.iter().all(|(name, _)| name != "done"));
}

fn tail() -> Vec<String> {
    proper_tail()
}

#[tokio::test]
async fn first_token_after_a_long_delay_falls_back_invisibly() {
    let tail = tail();
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    let late = Reply::stream(
        Duration::from_secs(3),
        Duration::ZERO,
        &["late alpha"],
        &tail,
        End::Close,
    );
    let rig = rig(late, Reply::answer("beta streams this")).await;
    let id = rig.session().await;
    let started = Instant::now();
    let (status, events) = stream(&rig, &id, "hi").await;
    assert_eq!(status, StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_000),
        "one 500 ms wait, then the fallback: {took:?}"
    );
    assert_eq!(
        deltas(&events),
        "beta streams this",
        "nothing of alpha reached the client"
    );
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done");
    assert_eq!(
        (done["model_used"].clone(), done["fallback_count"].clone()),
        (json!("beta"), json!(1))
    );
    assert_eq!((rig.primary.count(), rig.backup.count()), (1, 1));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rig.primary.in_flight(), 0, "the slow streams were dropped");
    assert_eq!(rig.history(&id).await.len(), 2);
}

#[tokio::test]
async fn malformed_first_chunk_is_a_failure_before_content_and_falls_back() {
    let broken = Reply::Sse {
        events: vec![(Duration::ZERO, "data: {oops\n\n".into())],
        end: End::Close,
    };
    let rig = rig(broken, Reply::answer("beta answers")).await;
    let id = rig.session().await;
    let (_, events) = stream(&rig, &id, "hi").await;
    assert_eq!(deltas(&events), "beta answers");
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!((rig.primary.count(), rig.backup.count()), (2, 1));
}

#[tokio::test]
async fn stream_cut_after_part_of_the_answer_is_an_error_and_not_stored() {
    let cut = Reply::stream(
        Duration::ZERO,
        Duration::ZERO,
        &["Hello ", "wor"],
        &[],
        End::Close,
    );
    let rig = rig(cut, Reply::answer("beta")).await;
    let id = rig.session().await;
    let (status, events) = stream(&rig, &id, "hi").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(deltas(&events), "Hello wor");
    assert_ends_in_error(&events, "stream_cut");
    assert_eq!(
        (rig.primary.count(), rig.backup.count()),
        (1, 0),
        "never switch mid-answer"
    );
    assert!(
        rig.history(&id).await.is_empty(),
        "nothing incomplete is stored"
    );
}

#[tokio::test]
async fn stalled_stream_with_the_connection_open_ends_after_the_idle_timeout() {
    let stalled = Reply::stream(Duration::ZERO, Duration::ZERO, &["Hel"], &[], End::Hang);
    let rig = rig(stalled, Reply::answer("beta")).await;
    let id = rig.session().await;
    let started = Instant::now();
    let (_, events) = stream(&rig, &id, "hi").await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1_000),
        "{took:?}"
    );
    assert_eq!(deltas(&events), "Hel");
    assert_ends_in_error(&events, "timeout");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.primary.in_flight(),
        0,
        "the stalled connection was closed"
    );
    assert_eq!(rig.backup.count(), 0);
    assert!(rig.history(&id).await.is_empty());
}

#[tokio::test]
async fn malformed_chunk_mid_stream_ends_cleanly_and_the_service_stays_healthy() {
    let events = vec![
        (Duration::ZERO, content_event("Hel")),
        (Duration::ZERO, "data: {oops\n\n".to_string()),
        (Duration::ZERO, content_event("lo")),
        (Duration::ZERO, "data: [DONE]\n\n".to_string()),
    ];
    let rig = rig(
        Reply::Sse {
            events,
            end: End::Close,
        },
        Reply::answer("beta"),
    )
    .await;
    let id = rig.session().await;
    let (_, events) = stream(&rig, &id, "hi").await;
    assert_eq!(deltas(&events), "Hel", "nothing after the bad chunk");
    assert_ends_in_error(&events, "malformed_response");
    assert!(rig.history(&id).await.is_empty());
    rig.primary.set_default(Reply::answer("fine again"));
    let reply = rig.send(&id, "again").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["assistant_message"], "fine again");
}

/// The primary streams "Hel", "lo" and then `tail`, closing without `[DONE]`.
async fn without_done(tail: &[&str]) -> (Rig, String, Vec<(String, Value)>) {
    let reply = Reply::stream(
        Duration::ZERO,
        Duration::ZERO,
        &["Hel", "lo"],
        tail,
        End::Close,
    );
    let rig = rig(reply, Reply::answer("beta")).await;
    let id = rig.session().await;
    let (_, events) = stream(&rig, &id, "hi").await;
    (rig, id, events)
}

#[tokio::test]
async fn stream_that_finished_but_never_sent_its_terminator_is_complete() {
    let tail = tail();
    let finish_and_usage: Vec<&str> = tail[..2].iter().map(String::as_str).collect();
    let (rig, id, events) = without_done(&finish_and_usage).await;
    assert_eq!(deltas(&events), "Hello");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["finish_reason"], "stop", "{done}");
    assert_eq!(done["usage"]["completion_tokens"], 7, "{done}");
    assert_eq!(rig.backup.count(), 0);
    let history = rig.history(&id).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["content"], "Hello");
}

#[tokio::test]
async fn stream_that_ends_with_no_finish_is_not_presented_as_complete() {
    let tail = tail();
    let usage_only: Vec<&str> = tail[1..2].iter().map(String::as_str).collect();
    let (rig, id, events) = without_done(&usage_only).await;
    assert_eq!(deltas(&events), "Hello");
    assert_ends_in_error(&events, "stream_cut");
    assert_eq!(rig.backup.count(), 0);
    assert!(rig.history(&id).await.is_empty());
}
