//! A controllable fake upstream for the resilience tests: a raw HTTP/1.1 server on
//! 127.0.0.1 that answers OpenAI chat-completion requests from a script (including the
//! failures no real framework would produce: resets, silence, cut and stalled streams,
//! malformed chunks) and records every request it saw, when, and how many were in flight.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

#[derive(Clone, Debug)]
pub enum Reply {
    /// A complete answer: JSON, or a well-formed stream when the request asks for one.
    Answer(String),
    /// Any status with a JSON body and extra headers.
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Status 200 and raw SSE events, each sent after its delay; then the stream ends.
    Sse {
        events: Vec<(Duration, String)>,
        end: End,
    },
    /// Reads the request, then resets the connection before sending any header.
    Reset,
    /// Reads the request and never answers, keeping the connection open.
    Silent,
    /// Waits, then answers with the inner reply.
    Delayed(Duration, Box<Reply>),
}

#[derive(Clone, Copy, Debug)]
pub enum End {
    /// Closes the connection.
    Close,
    /// Keeps the connection open and sends nothing more.
    Hang,
}

/// Prompt and completion tokens every fake answer reports.
pub const USAGE: (u32, u32) = (11, 7);

impl Reply {
    pub fn answer(text: &str) -> Reply {
        Reply::Answer(text.to_string())
    }

    pub fn status(status: u16) -> Reply {
        let body = json!({"error": {"message": format!("fake {status}"), "type": "server_error"}});
        Reply::Status {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    pub fn after(self, delay: Duration) -> Reply {
        Reply::Delayed(delay, Box::new(self))
    }

    pub fn with_header(self, name: &'static str, value: &str) -> Reply {
        match self {
            Reply::Status {
                status,
                mut headers,
                body,
            } => {
                headers.push((name, value.to_string()));
                Reply::Status {
                    status,
                    headers,
                    body,
                }
            }
            other => other,
        }
    }

    /// An OpenAI-shaped error body.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        let body =
            json!({"error": {"message": message, "type": "invalid_request_error", "code": code}});
        Reply::Status {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// Content chunks of `pieces`, sent `gap` apart after `first_after`, then `tail`
    /// (raw events: finish, usage, `[DONE]` — or whatever the fault needs).
    pub fn stream(
        first_after: Duration,
        gap: Duration,
        pieces: &[&str],
        tail: &[&str],
        end: End,
    ) -> Reply {
        let mut events: Vec<(Duration, String)> = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let delay = if i == 0 { first_after } else { gap };
                (delay, content_event(piece))
            })
            .collect();
        events.extend(tail.iter().map(|raw| (Duration::ZERO, raw.to_string())));
        Reply::Sse { events, end }
    }
}

pub fn content_event(piece: &str) -> String {
    let chunk = json!({"id": "fake", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]});
    format!("data: {chunk}\n\n")
}

/// The events of a proper ending: finish reason, usage, terminator.
pub fn proper_tail() -> Vec<String> {
    let finish = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    let usage =
        json!({"choices": [], "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1}});
    vec![
        format!("data: {finish}\n\n"),
        format!("data: {usage}\n\n"),
        "data: [DONE]\n\n".to_string(),
    ]
}

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: Value,
}

struct State {
    script: VecDeque<Reply>,
    default: Reply,
    seen: Vec<Seen>,
    in_flight: usize,
    max_in_flight: usize,
}

#[derive(Clone)]
pub struct Fake {
    /// What a provider's `base_url` should be (the API root with its version).
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl Fake {
    /// Answers every request with `default` once the script (empty here) has run out.
    pub async fn start(default: Reply) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State {
            script: VecDeque::new(),
            default,
            seen: Vec::new(),
            in_flight: 0,
            max_in_flight: 0,
        }));
        let shared = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, shared.clone()));
            }
        });
        Fake { base_url, state }
    }

    /// Replies for the next requests, in order, before the default applies again.
    pub fn script(&self, replies: Vec<Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = reply;
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }

    /// Requests being served right now (a silent or hanging one counts until the client
    /// closes its connection).
    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    pub fn reset_max_in_flight(&self) {
        let mut state = self.state.lock().unwrap();
        state.max_in_flight = state.in_flight;
    }
}

async fn serve(mut socket: TcpStream, state: Arc<Mutex<State>>) {
    let Some(seen) = read_request(&mut socket).await else {
        return;
    };
    let streaming = seen.body["stream"] == json!(true);
    let reply = {
        let mut state = state.lock().unwrap();
        state.seen.push(seen);
        state.in_flight += 1;
        state.max_in_flight = state.max_in_flight.max(state.in_flight);
        state
            .script
            .pop_front()
            .unwrap_or_else(|| state.default.clone())
    };
    answer(&mut socket, reply, streaming).await;
    state.lock().unwrap().in_flight -= 1;
}

async fn answer(socket: &mut TcpStream, reply: Reply, streaming: bool) {
    match reply {
        Reply::Answer(text) if streaming => {
            let pieces: Vec<&str> = text.split_inclusive(' ').collect();
            let tail = proper_tail();
            let tail: Vec<&str> = tail.iter().map(String::as_str).collect();
            let reply = Reply::stream(Duration::ZERO, Duration::ZERO, &pieces, &tail, End::Close);
            Box::pin(answer(socket, reply, true)).await;
        }
        Reply::Answer(text) => {
            let body = json!({
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": USAGE.0, "completion_tokens": USAGE.1, "total_tokens": USAGE.0 + USAGE.1},
            });
            write_json(socket, 200, &[], &body.to_string()).await;
        }
        Reply::Status {
            status,
            headers,
            body,
        } => write_json(socket, status, &headers, &body).await,
        Reply::Sse { events, end } => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for (delay, event) in events {
                if !pause(socket, delay).await {
                    return;
                }
                if socket.write_all(event.as_bytes()).await.is_err() {
                    return;
                }
            }
            if let End::Hang = end {
                wait_for_close(socket).await;
            }
            let _ = socket.shutdown().await;
        }
        Reply::Reset => {
            let _ = socket.set_zero_linger();
        }
        Reply::Silent => wait_for_close(socket).await,
        Reply::Delayed(delay, reply) => {
            if !pause(socket, delay).await {
                return;
            }
            Box::pin(answer(socket, *reply, streaming)).await;
        }
    }
}

async fn write_json(socket: &mut TcpStream, status: u16, headers: &[(&str, String)], body: &str) {
    let extra: String = headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}\r\n"))
        .collect();
    let response = format!(
        "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Waits `delay` unless the client closes the connection first (then `false`), so a
/// request the client gave up on stops counting as in flight at once.
async fn pause(socket: &mut TcpStream, delay: Duration) -> bool {
    if delay.is_zero() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = wait_for_close(socket) => false,
    }
}

/// Returns when the client closes the connection (it gave up on us).
async fn wait_for_close(socket: &mut TcpStream) {
    let mut buffer = [0u8; 1024];
    while matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {}
}

async fn read_request(socket: &mut TcpStream) -> Option<Seen> {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = socket.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&buffer[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_lowercase(), value.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length")?.parse().ok()?;
    while bytes.len() < head_end + length {
        let n = socket.read(&mut buffer).await.ok().filter(|n| *n > 0)?;
        bytes.extend_from_slice(&buffer[..n]);
    }
    let body = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Seen {
        at,
        path,
        headers,
        body,
    })
}
