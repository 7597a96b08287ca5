//! The fake upstream: an OpenAI-style `chat/completions` that answers at once under
//! `/instant/v1` and after a fixed delay under `/slow/v1`, always with the same completion
//! (one message of `TEXT`, so a stored answer is as long as a stored question); and under
//! `/tools/v1` with a call of a tool, as JSON or, to a request that streams, as OpenAI's
//! chunks (the call's id and name, then its arguments in three fragments); and under
//! `/summary/v1` as a summarizer, with a summary of about 250 tokens, counting its calls
//! and the tokens it was sent ([`summarizer_counts`]).

use std::{
    net::TcpListener,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::Bytes;
use serde_json::{Value, json};
use session_relay::domain::tokens::{TokenCounter, Tokenizer};

use crate::client::{MODEL, TEXT};

/// The delay of the slow mode: a stand-in for a real model's time to answer.
pub const SLOW_DELAY: Duration = Duration::from_millis(50);

/// What a summarizer of a long support conversation writes: names, numbers, decisions.
pub const SUMMARY: &str = "The customer, Dana Whitfield (account 88213), contacted support about \
    order 44719, a pair of trail shoes paid by card. The order arrived with the left shoe in size \
    42 and the right in 43; she asked for an exchange, then a refund. The refund of 129.90 EUR was \
    approved on the 3rd and sent to the card ending 4417; banks take three to five working days. \
    She moved to 14 Harbour Lane, Leith, EH6 6JJ, and asked for the invoice to go there; the \
    address was updated and a corrected invoice promised by email. She also asked about the \
    loyalty points of the returned order (they are removed with the refund) and whether the \
    replacement pair in size 43 is back in stock (expected next week; she wants an email when it \
    is). Open: confirmation that the refund reached the card, the corrected invoice, the stock \
    email. She prefers short answers and no phone calls.";

static SUMMARIZER_CALLS: AtomicU64 = AtomicU64::new(0);
static SUMMARIZER_PROMPT_TOKENS: AtomicU64 = AtomicU64::new(0);

/// Calls of the summarizer mode so far, and the tokens of the messages they carried
/// (o200k, content only).
pub fn summarizer_counts() -> (u64, u64) {
    (
        SUMMARIZER_CALLS.load(Ordering::Relaxed),
        SUMMARIZER_PROMPT_TOKENS.load(Ordering::Relaxed),
    )
}

fn summarize(body: &[u8]) -> HttpResponse {
    let request: Value = serde_json::from_slice(body).unwrap_or_default();
    let counter = TokenCounter::shared();
    let tokens: u64 = (request["messages"].as_array().into_iter().flatten())
        .filter_map(|m| m["content"].as_str())
        .map(|text| u64::from(counter.count_text(Tokenizer::O200kBase, text)))
        .sum();
    SUMMARIZER_CALLS.fetch_add(1, Ordering::Relaxed);
    SUMMARIZER_PROMPT_TOKENS.fetch_add(tokens, Ordering::Relaxed);
    let reply = json!({
        "id": "cmpl-summary", "object": "chat.completion", "created": 0, "model": "summarizer",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": SUMMARY}, "finish_reason": "stop"}]
    });
    HttpResponse::Ok().json(reply)
}

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
                "/summary/v1/chat/completions",
                web::post().to(|body: Bytes| async move { summarize(&body) }),
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
