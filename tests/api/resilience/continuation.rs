//! A stream that breaks after content reached the client is continued on the next model
//! of the chain: `beta` is given what `alpha` streamed as the start of its answer, and only
//! what it adds is streamed, so the client reassembles one answer, stored as one turn and
//! charged to each model for its part.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    Rig, rig,
    streams::{assert_ends_in_error, deltas, malformed_after, stream},
};
use crate::faults::{End, Reply, USAGE, content_event};

/// What `beta` streams after the start `alpha` gave.
const REST: &str = "ld, and welcome back.";

/// `alpha` breaks as `primary` says, `beta` continues with [`REST`]; the stream's events.
async fn continued(primary: Reply) -> (Rig, String, Vec<(String, Value)>) {
    let rig = rig(primary, Reply::answer(REST)).await;
    let id = rig.session().await;
    let (status, events) = stream(&rig, &id, "hi").await;
    assert_eq!(status, StatusCode::OK);
    (rig, id, events)
}

/// One answer, `start` + [`REST`], from both models, stored as one turn; `beta` was given
/// `start` to go on from.
async fn assert_one_answer(rig: &Rig, id: &str, events: &[(String, Value)], start: &str) {
    let whole = format!("{start}{REST}");
    assert_eq!(deltas(events), whole, "{events:?}");
    let (last, done) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    assert_eq!(done["assistant_message"], whole.as_str());
    assert_eq!(done["model_used"], "alpha");
    assert_eq!(done["models_used"], json!(["alpha", "beta"]));
    assert_eq!(done["fallback_count"], 0);
    let history = rig.history(id).await;
    assert_eq!(history.len(), 2, "the question and one answer");
    assert_eq!(history[1]["role"], "assistant");
    assert_eq!(history[1]["content"], whole.as_str());
    assert_eq!(rig.backup.count(), 1);
    let sent = &rig.backup.seen()[0].body["messages"];
    let sent = sent.as_array().unwrap();
    let [.., question, prefill, instruction] = sent.as_slice() else {
        panic!("{sent:?}");
    };
    assert_eq!(
        (&question["role"], &question["content"]),
        (&json!("user"), &json!("hi"))
    );
    assert_eq!(
        (&prefill["role"], &prefill["content"]),
        (&json!("assistant"), &json!(start))
    );
    assert_eq!(instruction["role"], "user");
    assert!(
        (instruction["content"].as_str().unwrap()).contains("do not repeat"),
        "{instruction}"
    );
    // `beta`'s part as it reported it (priced 1 and 2 $ per million); `alpha`'s is free.
    let (prompt, completion) = (f64::from(USAGE.0), f64::from(USAGE.1));
    let beta_cost = (prompt * 1.0 + completion * 2.0) / 1e6;
    let cost = done["cost_usd"].as_f64().unwrap();
    assert!((cost - beta_cost).abs() < 1e-9, "{done}");
    let usage = &done["usage"];
    assert!(
        usage["completion_tokens"].as_u64().unwrap() > u64::from(USAGE.1),
        "{done}"
    );
    assert!(
        usage["prompt_tokens"].as_u64().unwrap() > u64::from(USAGE.0),
        "{done}"
    );
}

/// "Hello ", "wor", then no finish: the stream closes or hangs as `end` says.
fn hello_wor(end: End) -> Reply {
    Reply::stream(Duration::ZERO, Duration::ZERO, &["Hello ", "wor"], &[], end)
}

#[tokio::test]
async fn a_cut_stream_is_finished_by_the_fallback() {
    let (rig, id, events) = continued(hello_wor(End::Close)).await;
    assert_one_answer(&rig, &id, &events, "Hello wor").await;
    assert_eq!(
        rig.primary.count(),
        1,
        "the broken model is not asked again"
    );
}

#[tokio::test]
async fn a_stalled_stream_is_finished_by_the_fallback() {
    let (rig, id, events) = continued(hello_wor(End::Hang)).await;
    assert_one_answer(&rig, &id, &events, "Hello wor").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(rig.primary.in_flight(), 0, "the stalled stream was dropped");
}

#[tokio::test]
async fn a_stream_with_a_malformed_chunk_is_finished_by_the_fallback() {
    let (rig, id, events) = continued(malformed_after("Hello wor")).await;
    assert_one_answer(&rig, &id, &events, "Hello wor").await;
}

#[tokio::test]
async fn a_fallback_that_refuses_the_continuation_ends_in_an_error() {
    let cut = hello_wor(End::Close);
    let refuses = Reply::error(400, "invalid_request_error", "no assistant prefill");
    let rig = rig(cut, refuses).await;
    let id = rig.session().await;
    let (_, events) = stream(&rig, &id, "hi").await;
    assert_eq!(deltas(&events), "Hello wor");
    assert_ends_in_error(&events, "rejected");
    let attempts = events.last().unwrap().1["attempts"].clone();
    let models: Vec<&str> = (attempts.as_array().unwrap().iter())
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(models, ["alpha", "beta"], "{attempts}");
    assert_eq!(rig.backup.count(), 1);
    assert!(
        rig.history(&id).await.is_empty(),
        "nothing incomplete is stored"
    );
}

#[tokio::test]
async fn an_answer_that_began_calling_tools_is_not_continued() {
    let call = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"ci"}}]}, "finish_reason": null}]});
    let events = vec![
        (Duration::ZERO, content_event("Let me look. ")),
        (Duration::ZERO, format!("data: {call}\n\n")),
    ];
    let (rig, id, events) = continued(Reply::Sse {
        events,
        end: End::Close,
    })
    .await;
    assert_ends_in_error(&events, "stream_cut");
    assert_eq!(rig.backup.count(), 0);
    assert!(rig.history(&id).await.is_empty());
}
