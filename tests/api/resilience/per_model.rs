//! `[[models]]` attempt settings override `[routing]`'s for that model only. The tests'
//! routing allows one retry, a 1 s attempt and 500 ms to the first token; model `alpha`
//! says no retry, 300 ms per attempt and 2 s to the first token.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Rig, rig_with_models};
use crate::faults::{End, Reply, proper_tail};

const ALPHA: &str = "max_retries = 0\nattempt_timeout_ms = 300\nfirst_token_timeout_ms = 2000";

fn question(stream: bool) -> Value {
    json!({"model": "alpha", "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn rig_for(primary: Reply) -> Rig {
    rig_with_models(primary, Reply::answer("beta"), [ALPHA, ""]).await
}

#[tokio::test]
async fn a_model_without_retries_is_tried_once() {
    let rig = rig_for(Reply::status(503)).await;
    let reply = rig.chat(question(false), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model"], "beta");
    assert_eq!(rig.primary.count(), 1, "routing's one retry is not alpha's");
}

#[tokio::test]
async fn a_model_with_a_shorter_attempt_timeout_falls_back_sooner() {
    let rig = rig_for(Reply::answer("alpha").after(Duration::from_millis(600))).await;
    let reply = rig.chat(question(false), &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["model"], "beta",
        "600 ms is within routing's 1 s"
    );
}

#[tokio::test]
async fn a_model_with_a_longer_first_token_timeout_is_waited_for() {
    let tail = proper_tail();
    let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
    let late = Reply::stream(
        Duration::from_secs(1),
        Duration::ZERO,
        &["from ", "alpha"],
        &tail,
        End::Close,
    );
    let rig = rig_for(late).await;
    let (text, data) = rig.chat_stream(question(true)).await;
    assert_eq!(
        text, "from alpha",
        "1 s is beyond routing's 500 ms: {data:?}"
    );
    assert_eq!(rig.backup.count(), 0);
}
