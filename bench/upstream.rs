//! The fake upstream: an OpenAI-style `chat/completions` that answers at once under
//! `/instant/v1` and after a fixed delay under `/slow/v1`, always with the same completion
//! (one message of `TEXT`, so a stored answer is as long as a stored question).

use std::{net::TcpListener, time::Duration};

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::json;

use crate::client::{MODEL, TEXT};

/// The delay of the slow mode: a stand-in for a real model's time to answer.
pub const SLOW_DELAY: Duration = Duration::from_millis(50);

/// Starts the fake on a free loopback port; returns its base URL (no path).
pub fn start() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Serialized once: the fake's own cost is in the baseline, so it should be small.
    let reply = Bytes::from(
        json!({
            "id": "cmpl-bench", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 500, "completion_tokens": 40, "total_tokens": 540}
        })
        .to_string(),
    );
    let server = HttpServer::new(move || {
        let (instant, slow) = (reply.clone(), reply.clone());
        App::new()
            .route(
                "/instant/v1/chat/completions",
                web::post().to(move |_: Bytes| answer(instant.clone(), Duration::ZERO)),
            )
            .route(
                "/slow/v1/chat/completions",
                web::post().to(move |_: Bytes| answer(slow.clone(), SLOW_DELAY)),
            )
    })
    // One worker: the fake shares the machine's cores with everything it measures.
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    tokio::spawn(server);
    format!("http://127.0.0.1:{port}")
}

/// The request body is read (`Bytes` extractor) as a real upstream would, then ignored.
async fn answer(body: Bytes, delay: Duration) -> HttpResponse {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body)
}
