//! Non-streaming faults through the session endpoint: retries, fallbacks, deadlines.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::time::Instant;

use super::{gaps_ms, rig, rig_with};
use crate::{
    faults::{Reply, USAGE},
    helpers::{Backend, Reply as HttpReply},
};

fn assert_answered_by(reply: &HttpReply, model: &str, fallbacks: u64) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model_used"], model, "{}", reply.body);
    assert_eq!(reply.body["fallback_count"], fallbacks);
}

#[tokio::test]
async fn rate_limited_once_with_retry_after_waits_and_retries_the_same_model() {
    let rig = rig(Reply::answer("hello from alpha"), Reply::answer("beta")).await;
    rig.primary
        .script(vec![Reply::status(429).with_header("retry-after", "2")]);
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_answered_by(&reply, "alpha", 0);
    assert_eq!(reply.body["assistant_message"], "hello from alpha");
    assert_eq!(rig.primary.count(), 2);
    let gap = gaps_ms(&rig.primary)[0];
    assert!(
        (2_000..2_500).contains(&gap),
        "Retry-After: 2 honoured, waited {gap} ms"
    );
    assert_eq!(rig.backup.count(), 0);
    assert_eq!(
        rig.primary.seen()[0].headers["authorization"],
        "Bearer sk-fake-primary"
    );
}

#[tokio::test]
async fn persistent_429_without_retry_after_moves_on_at_once() {
    let rig = rig(Reply::status(429), Reply::answer("beta answers")).await;
    let id = rig.session().await;
    for turn in 1..=3 {
        let started = Instant::now();
        let reply = rig.send(&id, "hi").await;
        assert_answered_by(&reply, "beta", 1);
        assert!(started.elapsed() < Duration::from_millis(500), "no waiting");
        assert_eq!(
            rig.primary.count(),
            turn,
            "one attempt per request, no retry"
        );
        assert_eq!(rig.backup.count(), turn);
    }
}

#[tokio::test]
async fn server_error_once_then_healthy_is_retried_after_a_short_backoff() {
    let rig = rig(Reply::answer("alpha answers"), Reply::answer("beta")).await;
    rig.primary.script(vec![Reply::status(500)]);
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_answered_by(&reply, "alpha", 0);
    assert_eq!(rig.primary.count(), 2);
    assert!(gaps_ms(&rig.primary)[0] < 300, "backoff capped at 100 ms");
    assert_eq!(rig.backup.count(), 0);
}

#[tokio::test]
async fn persistent_503_everywhere_is_502_listing_every_attempt() {
    let rig = rig(Reply::status(503), Reply::status(503)).await;
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.error_code(), "upstream_error");
    let attempts = reply.body["attempts"].as_array().unwrap();
    let models: Vec<&str> = attempts
        .iter()
        .map(|a| a["model"].as_str().unwrap())
        .collect();
    assert_eq!(
        models,
        ["alpha", "alpha", "beta", "beta"],
        "one retry per model"
    );
    assert!(
        attempts
            .iter()
            .all(|a| a["status"] == 503 && a["reason"] == "server_error")
    );
    assert_eq!((rig.primary.count(), rig.backup.count()), (2, 2));
    assert!(rig.history(&id).await.is_empty(), "nothing stored");
}

#[tokio::test]
async fn primary_503_and_the_fallback_answers_with_its_own_usage() {
    let rig = rig_with(
        Backend::Redis,
        5,
        Reply::status(503),
        Reply::answer("beta answers"),
        &[],
    )
    .await;
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_answered_by(&reply, "beta", 1);
    let (prompt, completion) = USAGE;
    let usage = json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion});
    assert_eq!(reply.body["usage"], usage);
    assert_eq!(
        reply.body["cost_usd"], 0.000025,
        "beta's prices: 11 × $1 + 7 × $2 per Mtok"
    );
    assert_eq!((rig.primary.count(), rig.backup.count()), (2, 1));
    assert_eq!(rig.backup.seen()[0].body["model"], "beta");
    let session = rig
        .app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(
        session.body["usage"]["prompt_tokens"], prompt,
        "failed attempts are not billed"
    );
    assert_eq!(session.body["usage"]["completion_tokens"], completion);
    assert_eq!(rig.history(&id).await.len(), 2);
}

#[tokio::test]
async fn connection_reset_before_headers_is_retried_then_falls_back() {
    let rig = rig(Reply::Reset, Reply::answer("beta answers")).await;
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_answered_by(&reply, "beta", 1);
    assert_eq!((rig.primary.count(), rig.backup.count()), (2, 1));
    rig.primary.set_default(Reply::answer("alpha again"));
    assert_answered_by(&rig.send(&id, "again").await, "alpha", 0);
}

#[tokio::test]
async fn no_response_at_all_times_out_and_falls_back_without_a_second_wait() {
    let rig = rig_with(
        Backend::Memory,
        5,
        Reply::Silent,
        Reply::answer("beta answers"),
        &[("attempt_timeout_ms", "300")],
    )
    .await;
    let id = rig.session().await;
    let started = Instant::now();
    let reply = rig.send(&id, "hi").await;
    assert_answered_by(&reply, "beta", 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(700),
        "one 300 ms attempt, then the fallback: {took:?}"
    );
    assert_eq!(rig.primary.count(), 1, "no retry while a fallback remains");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rig.primary.in_flight(),
        0,
        "timed-out connections are closed"
    );
}

#[tokio::test]
async fn deadline_passed_is_504_and_nothing_is_sent_after_it() {
    let rig = rig_with(
        Backend::Memory,
        2,
        Reply::Silent,
        Reply::Silent,
        &[("attempt_timeout_ms", "10000")],
    )
    .await;
    let id = rig.session().await;
    let started = Instant::now();
    let reply = rig.send(&id, "hi").await;
    let took = started.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.body);
    assert_eq!(reply.error_code(), "upstream_timeout");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2_300),
        "{took:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        (rig.primary.count(), rig.backup.count()),
        (1, 1),
        "the primary had half the deadline, the fallback the rest; no attempt after it"
    );
    assert!(rig.primary.seen()[0].at < started + Duration::from_secs(2));
    assert!(rig.backup.seen()[0].at < started + Duration::from_secs(2));
    assert_eq!(rig.primary.in_flight(), 0, "the hung attempt was abandoned");
    assert_eq!(rig.backup.in_flight(), 0, "and so was the fallback's");
    assert!(rig.history(&id).await.is_empty());
}

#[tokio::test]
async fn context_length_exceeded_moves_to_the_next_model_without_retry() {
    let too_long = Reply::error(
        400,
        "context_length_exceeded",
        "This model's maximum context length is 8192 tokens.",
    );
    let rig = rig(too_long, Reply::answer("beta has room")).await;
    let id = rig.session().await;
    let reply = rig.send(&id, "a long prompt").await;
    assert_answered_by(&reply, "beta", 1);
    assert_eq!((rig.primary.count(), rig.backup.count()), (1, 1));
}

#[tokio::test]
async fn content_filter_is_final_and_its_reason_reaches_the_caller() {
    let filtered = Reply::error(
        400,
        "content_filter",
        "The prompt was filtered by the content policy.",
    );
    let rig = rig(filtered, Reply::answer("beta")).await;
    let id = rig.session().await;
    let reply = rig.send(&id, "something").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let attempt = &reply.body["attempts"][0];
    assert_eq!(attempt["reason"], "content_filter");
    assert_eq!(attempt["status"], 400);
    assert!(
        attempt["error"]
            .as_str()
            .unwrap()
            .contains("filtered by the content policy")
    );
    assert_eq!(
        (rig.primary.count(), rig.backup.count()),
        (1, 0),
        "no retry, no fallback"
    );

    let relayed = rig
        .chat(
            json!({"model": "alpha", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await;
    assert_eq!(relayed.status, StatusCode::BAD_REQUEST, "{}", relayed.body);
    assert_eq!(relayed.body["error"]["code"], "content_filter");
    assert!(
        relayed.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content policy")
    );
}

#[tokio::test]
async fn plain_400_ends_the_chain_without_retry() {
    let rig = rig(
        Reply::error(400, "invalid_value", "bad temperature"),
        Reply::answer("beta"),
    )
    .await;
    let id = rig.session().await;
    let reply = rig.send(&id, "hi").await;
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    assert_eq!(reply.body["attempts"][0]["reason"], "rejected");
    assert_eq!((rig.primary.count(), rig.backup.count()), (1, 0));
}
