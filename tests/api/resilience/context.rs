//! A fallback with a smaller window gets a prompt sized for it: the newest history that
//! fits its own budget, not the one built for the primary's window.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Rig, rig_with_models};
use crate::{faults::Reply, helpers::Reply as HttpReply};

/// `beta` holds 400 tokens, 300 of them for the prompt next to a 100-token reply;
/// `alpha` the default 8192.
const SMALL_BETA: &str = "context_tokens = 400";

async fn say(rig: &Rig, id: &str, content: &str) -> HttpReply {
    let path = format!("/v1/sessions/{id}/messages");
    let body = json!({ "content": content, "max_tokens": 100 });
    rig.app.call(Method::POST, &path, Some(body)).await
}

fn messages(body: &Value) -> Vec<Value> {
    body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_fallback_with_a_smaller_window_gets_a_trimmed_prompt_and_answers() {
    let rig = rig_with_models(
        Reply::answer("noted"),
        Reply::answer("from beta"),
        ["", SMALL_BETA],
    )
    .await;
    let id = rig.session().await;
    let long = "word ".repeat(50);
    for turn in 0..6 {
        let reply = say(&rig, &id, &format!("turn {turn}: {long}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    rig.primary.set_default(Reply::status(503));
    let reply = say(&rig, &id, "last question").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model_used"], "beta");
    assert_eq!(reply.body["assistant_message"], "from beta");

    let for_primary = messages(&rig.primary.seen().last().unwrap().body);
    assert_eq!(for_primary.len(), 13, "the whole history fits the primary");
    let for_backup = messages(&rig.backup.seen()[0].body);
    assert!(
        (2..for_primary.len()).contains(&for_backup.len()),
        "older turns left out for the small window: {} of {}",
        for_backup.len(),
        for_primary.len()
    );
    let newest = &for_primary[for_primary.len() - for_backup.len()..];
    assert_eq!(for_backup, newest, "the newest turns, in order");
    assert_eq!(for_backup.last().unwrap()["content"], "last question");
}
