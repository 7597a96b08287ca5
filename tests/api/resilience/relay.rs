//! The relay's own behaviour: fallbacks it reports, sessions through it, broken streams.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{data_lines, openai_sdk::assert_usage, rig, rig_with};
use crate::{
    faults::{End, Reply, USAGE},
    helpers::Backend,
};

#[tokio::test]
async fn primary_503_relay_names_the_fallback_and_its_usage() {
    let rig = rig(Reply::status(503), Reply::answer("beta answers")).await;
    let reply = rig
        .chat(
            json!({"model": "alpha", "messages": [{"role": "user", "content": "x"}]}),
            &[],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model"], "beta");
    assert_eq!(
        reply.body["choices"][0]["message"]["content"],
        "beta answers"
    );
    assert_usage(&reply.body["usage"]);
    assert_eq!((rig.primary.count(), rig.backup.count()), (2, 1));
}

#[tokio::test]
async fn a_session_through_the_relay_keeps_its_history() {
    let rig = rig_with(
        Backend::Redis,
        5,
        Reply::answer("answer one"),
        Reply::answer("beta"),
        &[],
    )
    .await;
    let created = rig
        .app
        .create_session(json!({"model": "alpha", "system_prompt": "Be brief."}))
        .await;
    let id = created["session_id"].as_str().unwrap();
    let first = json!({"model": "alpha", "messages": [{"role": "user", "content": "first"}]});
    let reply = rig.chat(first, &[("X-Session-Id", id)]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    rig.primary.set_default(Reply::answer("answer two"));
    let second = json!({"model": "alpha", "session_id": id, "stream": true,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "second"}]}]});
    let response = rig
        .app
        .http
        .post(format!("{}/v1/chat/completions", rig.app.address))
        .bearer_auth(&rig.app.key)
        .json(&second)
        .send()
        .await
        .unwrap();
    let data = data_lines(response).await;
    assert_eq!(data.last(), Some(&json!("[DONE]")));

    let upstream = &rig.primary.seen()[1].body["messages"];
    let expected = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "answer one"},
        // Content parts are stored and sent as the client gave them.
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]);
    assert_eq!(
        upstream, &expected,
        "the session's context was put in front"
    );
    let turns: Vec<Value> = rig
        .history(id)
        .await
        .iter()
        .map(|t| t["content"].clone())
        .collect();
    let second = json!([{"type": "text", "text": "second"}]);
    assert_eq!(
        turns,
        [
            json!("first"),
            json!("answer one"),
            second,
            json!("answer two")
        ]
    );
    let usage = rig
        .app
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await
        .body["usage"]
        .clone();
    assert_eq!(usage["prompt_tokens"], 2 * USAGE.0);

    let history = json!({"model": "alpha", "session_id": id, "messages": [
        {"role": "user", "content": "a"}, {"role": "user", "content": "b"}]});
    let refused = rig.chat(history, &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"]["param"], "messages");
}

#[tokio::test]
async fn relay_stream_cut_mid_answer_ends_with_an_error_event_and_no_done() {
    let cut = Reply::stream(Duration::ZERO, Duration::ZERO, &["Hel"], &[], End::Close);
    let rig = rig(cut, Reply::answer("beta")).await;
    let id = rig.session().await;
    let body =
        json!({"model": "alpha", "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let response = rig
        .app
        .http
        .post(format!("{}/v1/chat/completions", rig.app.address))
        .bearer_auth(&rig.app.key)
        .header("x-session-id", &id)
        .json(&body)
        .send()
        .await
        .unwrap();
    let data = data_lines(response).await;
    let last = data.last().unwrap();
    assert_eq!(last["error"]["code"], "upstream_error", "{data:?}");
    assert!(!data.contains(&json!("[DONE]")));
    assert!(rig.history(&id).await.is_empty(), "nothing stored");
}
