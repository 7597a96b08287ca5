//! The fake upstream: an OpenAI-style `chat/completions` that answers at once under
//! `/instant/v1` and after a fixed delay under `/slow/v1`, always with the same completion
//! (one message of `TEXT`, so a stored answer is as long as a stored question); and under
//! `/tools/v1` with a call of a tool, as JSON or, to a request that streams, as OpenAI's
//! chunks (the call's id and name, then its arguments in three fragments).

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
    let (tool_json, tool_stream) = (tool_reply(false), tool_reply(true));
    let server = HttpServer::new(move || {
        let (instant, slow) = (reply.clone(), reply.clone());
        let (tool_json, tool_stream) = (tool_json.clone(), tool_stream.clone());
        App::new()
            .route(
                "/tools/v1/chat/completions",
                web::post().to(move |body: Bytes| {
                    let streamed = body.windows(13).any(|w| w == b"\"stream\":true");
                    let (reply, kind) = if streamed {
                        (tool_stream.clone(), "text/event-stream")
                    } else {
                        (tool_json.clone(), "application/json")
                    };
                    async move { HttpResponse::Ok().content_type(kind).body(reply) }
                }),
            )
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

/// A call of the second tool, whole or in chunks.
fn tool_reply(stream: bool) -> Bytes {
    let args = r#"{"order_id": "44719", "currency": "EUR"}"#;
    let call = json!({"id": "call_bench", "type": "function",
                      "function": {"name": "refund_status", "arguments": args}});
    if !stream {
        return Bytes::from(
            json!({
                "id": "cmpl-bench", "object": "chat.completion", "created": 0, "model": crate::client::TOOL_MODEL,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [call]},
                             "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 600, "completion_tokens": 20, "total_tokens": 620}
            })
            .to_string(),
        );
    }
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let c = json!({"id": "cmpl-bench", "object": "chat.completion.chunk", "created": 0,
                       "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    let mut out = chunk(json!({"role": "assistant", "content": null}), json!(null));
    out.push_str(&chunk(
        json!({"tool_calls": [{"index": 0, "id": "call_bench", "type": "function",
                               "function": {"name": "refund_status", "arguments": ""}}]}),
        json!(null),
    ));
    let third = args.len() / 3;
    for piece in [&args[..third], &args[third..2 * third], &args[2 * third..]] {
        out.push_str(&chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            json!(null),
        ));
    }
    out.push_str(&chunk(json!({}), json!("tool_calls")));
    let usage = json!({"id": "cmpl-bench", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": 600, "completion_tokens": 20, "total_tokens": 620}});
    out.push_str(&format!("data: {usage}\n\ndata: [DONE]\n\n"));
    Bytes::from(out)
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
