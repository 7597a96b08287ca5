//! Circuit breakers over HTTP: they open on failures, skip the model while open, admit one
//! probe at a time when half-open, and bring traffic back when the probe succeeds.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use super::{Rig, rig_with};
use crate::{faults::Reply, helpers::Backend, helpers::Reply as HttpReply};

const BREAKER: [(&str, &str); 4] = [
    ("max_retries", "0"),
    ("breaker_min_requests", "3"),
    ("breaker_failure_rate", "0.5"),
    ("breaker_cooldown_ms", "500"),
];

async fn ask(rig: &Rig) -> HttpReply {
    let body = json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}]});
    rig.chat(body, &[]).await
}

fn answered_by(reply: &HttpReply) -> &str {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["model"].as_str().unwrap()
}

#[tokio::test]
async fn primary_down_for_a_while_then_healthy() {
    let rig = rig_with(
        Backend::Memory,
        5,
        Reply::status(503),
        Reply::answer("beta"),
        &BREAKER,
    )
    .await;
    assert_eq!(rig.breaker("alpha").await, "closed");
    for _ in 0..3 {
        assert_eq!(answered_by(&ask(&rig).await), "beta");
    }
    assert_eq!(rig.primary.count(), 3);
    assert_eq!(rig.breaker("alpha").await, "open");

    for _ in 0..3 {
        assert_eq!(answered_by(&ask(&rig).await), "beta");
    }
    assert_eq!(rig.primary.count(), 3, "skipped while open");

    // Healthy again, and slow enough that concurrent requests meet the probe in flight.
    rig.primary
        .set_default(Reply::answer("alpha is back").after(Duration::from_millis(300)));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rig.breaker("alpha").await, "half_open");
    rig.primary.reset_max_in_flight();
    let replies = futures_util::future::join_all((0..5).map(|_| ask(&rig))).await;
    let by_alpha = replies.iter().filter(|r| answered_by(r) == "alpha").count();
    assert_eq!(by_alpha, 1, "the probe");
    assert_eq!(rig.primary.count(), 4, "exactly one probe");
    assert_eq!(rig.primary.max_in_flight(), 1);
    assert_eq!(rig.breaker("alpha").await, "closed");

    rig.primary.set_default(Reply::answer("alpha is back"));
    for _ in 0..3 {
        assert_eq!(answered_by(&ask(&rig).await), "alpha");
    }
    assert_eq!(rig.primary.count(), 7, "traffic returned to the primary");
}

#[tokio::test]
async fn hung_probe_is_cut_by_its_own_timeout_and_reopens_for_longer() {
    let knobs = [
        ("breaker_min_requests", "1"),
        ("breaker_cooldown_ms", "300"),
        ("probe_timeout_ms", "200"),
    ];
    let rig = rig_with(
        Backend::Memory,
        5,
        Reply::status(503),
        Reply::answer("beta"),
        &[BREAKER[0], knobs[0], knobs[1], knobs[2]],
    )
    .await;
    assert_eq!(answered_by(&ask(&rig).await), "beta");
    assert_eq!(rig.breaker("alpha").await, "open");

    rig.primary.set_default(Reply::Silent);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let started = Instant::now();
    assert_eq!(answered_by(&ask(&rig).await), "beta");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_millis(600),
        "probe timeout, not the 1 s attempt timeout: {took:?}"
    );
    assert_eq!(rig.primary.count(), 2);
    assert_eq!(rig.breaker("alpha").await, "open");

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(
        rig.breaker("alpha").await,
        "open",
        "the cooldown doubled to 600 ms"
    );
    assert_eq!(answered_by(&ask(&rig).await), "beta");
    assert_eq!(rig.primary.count(), 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.breaker("alpha").await, "half_open");
}

#[tokio::test]
async fn every_breaker_open_fails_fast_without_calling_anyone() {
    let knobs = [
        BREAKER[0],
        ("breaker_min_requests", "1"),
        ("breaker_cooldown_ms", "60000"),
    ];
    let rig = rig_with(
        Backend::Memory,
        5,
        Reply::status(503),
        Reply::status(503),
        &knobs,
    )
    .await;
    assert_eq!(ask(&rig).await.status, StatusCode::BAD_GATEWAY);
    let id = rig.session().await;
    let started = Instant::now();
    let reply = rig.send(&id, "hi").await;
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "no waiting on dead upstreams"
    );
    assert_eq!(reply.status, StatusCode::BAD_GATEWAY);
    let reasons: Vec<&str> = reply.body["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["circuit_open", "circuit_open"]);
    assert_eq!((rig.primary.count(), rig.backup.count()), (1, 1));
}
