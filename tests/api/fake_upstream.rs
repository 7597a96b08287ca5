//! A controllable fake of an OpenAI-compatible `/chat/completions` API on 127.0.0.1.
//!
//! Plain HTTP/1.1 over a tokio `TcpListener`, one request per connection
//! (`connection: close`), so that it can also cut a stream half-way, which no real
//! framework would do. It records every request body, counts requests in flight (and
//! the most ever in flight at once), and answers as the current [`Behaviour`] says —
//! the default one, or the one set for the request's `model`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How the fake answers a request.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// A completion after `delay`. `content: None` echoes what was received:
    /// `echo[<number of messages>]: <content of the last message>`. A request that asks
    /// to stream gets the same content as one `delta`, then usage and `[DONE]`.
    Reply {
        content: Option<String>,
        prompt_tokens: u32,
        completion_tokens: u32,
        delay: Duration,
    },
    /// Server-sent events: one chunk per piece with `gap` before each, then a usage
    /// chunk and `data: [DONE]`.
    Stream {
        pieces: Vec<String>,
        prompt_tokens: u32,
        completion_tokens: u32,
        gap: Duration,
    },
    /// Server-sent events for `pieces`, then the connection closes without `[DONE]`.
    Cut { pieces: Vec<String> },
    /// An answer that calls tools: `(id, function name, arguments)` each. Streamed, each
    /// call's arguments come in two fragments after a piece naming the call.
    Calls {
        calls: Vec<(String, String, String)>,
    },
    /// An error status with this body.
    Error { status: u16, body: String },
}

impl Behaviour {
    /// Echoes the request, reporting the given usage.
    pub fn echo(prompt_tokens: u32, completion_tokens: u32) -> Behaviour {
        Behaviour::Reply {
            content: None,
            prompt_tokens,
            completion_tokens,
            delay: Duration::ZERO,
        }
    }

    /// Echoes the request after `delay`.
    pub fn slow_echo(delay: Duration) -> Behaviour {
        Behaviour::Reply {
            content: None,
            prompt_tokens: 10,
            completion_tokens: 5,
            delay,
        }
    }

    pub fn reply(content: &str, prompt_tokens: u32, completion_tokens: u32) -> Behaviour {
        Behaviour::Reply {
            content: Some(content.to_string()),
            prompt_tokens,
            completion_tokens,
            delay: Duration::ZERO,
        }
    }

    pub fn calls(calls: &[(&str, &str, &str)]) -> Behaviour {
        let calls = calls
            .iter()
            .map(|(id, name, args)| (id.to_string(), name.to_string(), args.to_string()))
            .collect();
        Behaviour::Calls { calls }
    }

    pub fn error(status: u16, message: &str) -> Behaviour {
        Behaviour::Error {
            status,
            body: json!({"error": {"message": message, "type": "server_error", "code": null}})
                .to_string(),
        }
    }
}

/// What the echo answer says for a request body.
pub fn echo_content(body: &Value) -> String {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last = messages
        .last()
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    format!("echo[{}]: {last}", messages.len())
}

struct Shared {
    requests: Mutex<Vec<Value>>,
    default: Mutex<Behaviour>,
    per_model: Mutex<HashMap<String, Behaviour>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Responses the peer went away from before they were written in full.
    aborted: AtomicUsize,
}

pub struct FakeUpstream {
    /// What a provider's `base_url` should be: the API root, `/chat/completions` below it.
    pub base_url: String,
    shared: Arc<Shared>,
}

impl FakeUpstream {
    /// Starts the fake in the current runtime; it echoes until told otherwise.
    pub async fn start() -> FakeUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("address"));
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            default: Mutex::new(Behaviour::echo(10, 5)),
            per_model: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            aborted: AtomicUsize::new(0),
        });
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, accepting.clone()));
            }
        });
        FakeUpstream { base_url, shared }
    }

    /// The behaviour for every model without one of its own.
    pub fn set(&self, behaviour: Behaviour) {
        *self.shared.default.lock().unwrap() = behaviour;
    }

    /// The behaviour for requests whose `model` field is `model`.
    pub fn set_for_model(&self, model: &str, behaviour: Behaviour) {
        self.shared
            .per_model
            .lock()
            .unwrap()
            .insert(model.to_string(), behaviour);
    }

    /// Every request body received so far, in arrival order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn calls(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// The `messages` of the latest request.
    pub fn last_messages(&self) -> Value {
        self.requests()
            .last()
            .map(|r| r["messages"].clone())
            .expect("the fake received a request")
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::SeqCst)
    }

    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// Responses abandoned by the peer before they were complete.
    pub fn aborted(&self) -> usize {
        self.shared.aborted.load(Ordering::SeqCst)
    }
}

/// Counts a request as in flight until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn serve(mut socket: TcpStream, shared: Arc<Shared>) {
    let Some((path, body)) = read_request(&mut socket).await else {
        return;
    };
    // Anthropic's Messages API: plain replies (streamed or not) in its format; the other
    // behaviours answer in OpenAI's whatever the path.
    let anthropic = path.ends_with("/messages");
    let in_flight = InFlight::enter(&shared);
    let model = body["model"].as_str().unwrap_or_default().to_string();
    let streaming = body["stream"].as_bool().unwrap_or(false);
    shared.requests.lock().unwrap().push(body.clone());
    let behaviour = {
        let per_model = shared.per_model.lock().unwrap();
        per_model
            .get(&model)
            .cloned()
            .unwrap_or_else(|| shared.default.lock().unwrap().clone())
    };
    let complete = match behaviour {
        Behaviour::Reply {
            content,
            prompt_tokens,
            completion_tokens,
            delay,
        } => {
            tokio::time::sleep(delay).await;
            let content = content.unwrap_or_else(|| echo_content(&body));
            let usage = (prompt_tokens, completion_tokens);
            if anthropic {
                write_anthropic(&mut socket, streaming, &model, &content, usage).await
            } else if streaming {
                let pieces = [content];
                write_sse(
                    &mut socket,
                    &pieces,
                    Duration::ZERO,
                    true,
                    prompt_tokens,
                    completion_tokens,
                )
                .await
            } else {
                let completion = json!({
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": 0,
                    "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens},
                });
                write_json(&mut socket, 200, &completion.to_string()).await
            }
        }
        Behaviour::Stream {
            pieces,
            prompt_tokens,
            completion_tokens,
            gap,
        } => {
            write_sse(
                &mut socket,
                &pieces,
                gap,
                true,
                prompt_tokens,
                completion_tokens,
            )
            .await
        }
        Behaviour::Cut { pieces } => {
            write_sse(&mut socket, &pieces, Duration::ZERO, false, 0, 0).await
        }
        Behaviour::Calls { calls } if streaming => write_call_stream(&mut socket, &calls).await,
        Behaviour::Calls { calls } => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .map(|(id, name, args)| json!({"id": id, "type": "function", "function": {"name": name, "arguments": args}}))
                .collect();
            let completion = json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": null, "tool_calls": tool_calls}}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
            });
            write_json(&mut socket, 200, &completion.to_string()).await
        }
        Behaviour::Error { status, body } => write_json(&mut socket, status, &body).await,
    };
    if !complete {
        shared.aborted.fetch_add(1, Ordering::SeqCst);
    }
    // Out of flight as soon as the answer is written, before the connection is closed.
    drop(in_flight);
    let _ = socket.shutdown().await;
}

/// Reads one request (head, then a `content-length` body): its path, and its body as JSON.
async fn read_request(socket: &mut TcpStream) -> Option<(String, Value)> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while bytes.len() < head_end + length {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&buf[..n]);
    }
    let path = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let body = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
    Some((path, body))
}

async fn write_json(socket: &mut TcpStream, status: u16, body: &str) -> bool {
    let response = format!(
        "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(response.as_bytes()).await.is_ok()
}

/// An event stream delimited by the connection's close. Returns whether every byte
/// was written.
async fn write_sse(
    socket: &mut TcpStream,
    pieces: &[String],
    gap: Duration,
    finish: bool,
    prompt_tokens: u32,
    completion_tokens: u32,
) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let role = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]});
    if !write_event(socket, &role.to_string()).await {
        return false;
    }
    for piece in pieces {
        tokio::time::sleep(gap).await;
        let chunk = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                           "choices": [{"index": 0, "delta": {"content": piece}}]});
        if !write_event(socket, &chunk.to_string()).await {
            return false;
        }
    }
    if !finish {
        return true;
    }
    let last = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                      "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "choices": [],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                 "total_tokens": prompt_tokens + completion_tokens}});
    write_event(socket, &last.to_string()).await
        && write_event(socket, &usage.to_string()).await
        && write_event(socket, "[DONE]").await
}

/// Tool calls as OpenAI streams them: a piece with the call's id and name, then its
/// arguments in two fragments.
async fn write_call_stream(socket: &mut TcpStream, calls: &[(String, String, String)]) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        .to_string()
    };
    let mut events = vec![chunk(
        json!({"role": "assistant", "content": null}),
        Value::Null,
    )];
    for (index, (id, name, args)) in calls.iter().enumerate() {
        let (first, second) = args.split_at(args.len() / 2);
        events.push(chunk(
            json!({"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}),
            Value::Null,
        ));
        for fragment in [first, second] {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!("tool_calls")));
    if socket.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for event in events.iter().map(String::as_str).chain(["[DONE]"]) {
        if !write_event(socket, event).await {
            return false;
        }
    }
    true
}

async fn write_event(socket: &mut TcpStream, data: &str) -> bool {
    let event = format!("data: {data}\n\n");
    socket.write_all(event.as_bytes()).await.is_ok() && socket.flush().await.is_ok()
}

/// A reply in the shape of Anthropic's Messages API: one message, or its event stream.
async fn write_anthropic(
    socket: &mut TcpStream,
    streaming: bool,
    model: &str,
    content: &str,
    (input_tokens, output_tokens): (u32, u32),
) -> bool {
    if !streaming {
        let message = json!({
            "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        });
        return write_json(socket, 200, &message.to_string()).await;
    }
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
    let events = [
        (
            "message_start",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
            "role": "assistant", "model": model, "content": [],
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}}}),
        ),
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": ""}}),
        ),
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": content}}),
        ),
        (
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        (
            "message_delta",
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": output_tokens}}),
        ),
        ("message_stop", json!({"type": "message_stop"})),
    ];
    let mut stream = head.to_string();
    for (name, data) in events {
        stream.push_str(&format!("event: {name}\ndata: {data}\n\n"));
    }
    socket.write_all(stream.as_bytes()).await.is_ok()
}
