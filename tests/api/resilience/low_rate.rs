//! An outage at low traffic: the breaker's window never holds enough outcomes for the
//! failure rate to count, so the run of failures in a row is what opens it; and once the
//! primary heals, traffic is back on it within one (capped) cooldown.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::time::Instant;

use super::{Rig, rig_with};
use crate::{faults::Reply, helpers::Backend};

/// A 1 s window needing 10 outcomes, one request every 200 ms: at most 5 fit, as at a
/// request a second against the default 30 s window with a few more to go. The run of
/// 5 failures opens the breaker; cooldowns of 400 ms growing to at most 800 ms.
const QUIET: [(&str, &str); 6] = [
    ("max_retries", "0"),
    ("breaker_window_seconds", "1"),
    ("breaker_min_requests", "10"),
    ("breaker_consecutive_failures", "5"),
    ("breaker_cooldown_ms", "400"),
    ("breaker_max_cooldown_ms", "800"),
];
const SPACING: Duration = Duration::from_millis(200);

/// One request; the model that answered it.
async fn ask(rig: &Rig) -> String {
    let body = json!({"model": "alpha", "messages": [{"role": "user", "content": "hi"}]});
    let reply = rig.chat(body, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["model"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn low_rate_outage_opens_the_breaker_and_recovery_is_prompt() {
    let rig = rig_with(
        Backend::Memory,
        5,
        Reply::status(503),
        Reply::answer("beta"),
        &QUIET,
    )
    .await;
    for _ in 0..15 {
        assert_eq!(ask(&rig).await, "beta");
        tokio::time::sleep(SPACING).await;
    }
    let attempts = rig.primary.count();
    assert!(
        (5..=9).contains(&attempts),
        "5 failures, then a probe per cooldown, not one attempt per request: {attempts}"
    );

    rig.primary.set_default(Reply::answer("alpha"));
    let healed = Instant::now();
    while ask(&rig).await != "alpha" {
        assert!(
            healed.elapsed() < Duration::from_millis(1_300),
            "back on the primary within the longest cooldown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = rig.primary.count();
    for _ in 0..3 {
        assert_eq!(ask(&rig).await, "alpha");
    }
    assert_eq!(rig.primary.count(), before + 3, "closed again");
    assert_eq!(rig.breaker("alpha").await, "closed");
}
