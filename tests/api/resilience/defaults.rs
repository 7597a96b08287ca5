//! The shipped defaults against a primary that never answers: the fallback answers well
//! within the 30 s clients commonly wait, streamed or not, and the silent primary is
//! asked once per request (no second wait on it).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::{Instant, timeout};

use super::{Rig, rig_at_defaults};
use crate::faults::Reply;

const CLIENT_PATIENCE: Duration = Duration::from_secs(30);

async fn plain(rig: &Rig) -> Duration {
    let started = Instant::now();
    let body = json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}]});
    let reply = rig.chat(body, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["model"], "beta");
    assert_eq!(reply.body["choices"][0]["message"]["content"], "from beta");
    started.elapsed()
}

async fn streamed(rig: &Rig) -> Duration {
    let started = Instant::now();
    let body = json!({"model": "alpha", "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let (text, data) = rig.chat_stream(body).await;
    assert_eq!(text, "from beta", "{data:?}");
    assert_eq!(data.last(), Some(&json!("[DONE]")));
    started.elapsed()
}

#[tokio::test]
async fn silent_primary_is_answered_by_its_fallback_within_30_seconds_at_defaults() {
    let rig = rig_at_defaults(Reply::Silent, Reply::answer("from beta")).await;
    let both = async { tokio::join!(plain(&rig), streamed(&rig)) };
    let (plain, streamed) = timeout(CLIENT_PATIENCE, both)
        .await
        .expect("the fallback answered before the client gave up");
    assert!(plain < CLIENT_PATIENCE && streamed < CLIENT_PATIENCE);
    assert_eq!(
        rig.primary.count(),
        2,
        "one attempt each, no retry after a timeout"
    );
    assert_eq!(rig.backup.count(), 2);
}
