//! Answers as server-sent events, for the session API and the OpenAI relay alike.
//!
//! The router holds an upstream stream back until its first content, so every failure
//! before that point (refused, reset, 5xx, no first token in time) still falls back to the
//! next attempt and the client sees nothing of it. From the first byte sent on, the model
//! is fixed: a later failure (cut, stall, malformed chunk, an end before any finish) ends the
//! stream with an error event, never with the event that means "complete", and nothing is
//! stored.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use tokio::{sync::mpsc, time::Instant};

use super::{outcome::Destination, upstream};
use crate::{
    error::ApiError,
    llm::{
        ChatRequest, ChatResponse, Delta, EventStream, ProviderError, StreamEvent, registry::Model,
        router::Attempt,
    },
    state::AppState,
};

/// An upstream stream that has produced content, and how it was reached.
pub struct Opened {
    /// Position in the chain of the model that answers.
    pub index: usize,
    pub model: String,
    first: Option<StreamEvent>,
    rest: EventStream,
    failed: Vec<Attempt>,
}

/// How one kind of event stream writes its events.
#[async_trait]
pub trait EventWriter: Send + 'static {
    fn delta(&mut self, delta: &Delta) -> Bytes;
    /// The complete answer arrived: store it if there is something to store, and write
    /// the closing events.
    async fn done(&mut self, answer: ChatResponse) -> Result<Bytes, ApiError>;
    /// The stream failed: give the session back first, then write the error event.
    async fn error(&mut self, err: &ApiError) -> Bytes;
}

/// Opens a stream along the chain. A failure here is an ordinary JSON error.
pub async fn open(
    state: &AppState,
    chain: &[Arc<Model>],
    request_for: impl Fn(&Model) -> ChatRequest,
    deadline: Instant,
) -> Result<Opened, ApiError> {
    let routed = state
        .router
        .open_stream(chain, request_for, deadline)
        .await
        .map_err(upstream::api_error)?;
    let model = chain
        .get(routed.index)
        .map(|m| m.name.clone())
        .ok_or_else(|| ApiError::Internal("model index".into()))?;
    Ok(Opened {
        index: routed.index,
        model,
        first: Some(routed.value.first),
        rest: routed.value.rest,
        failed: routed.failed,
    })
}

/// Answers with an event stream fed by a task that relays the upstream.
pub fn serve(
    state: web::Data<AppState>,
    opened: Opened,
    writer: impl EventWriter,
    deadline: Instant,
) -> HttpResponse {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    tokio::spawn(pump(state, opened, writer, tx, deadline));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, actix_web::Error>(chunk), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}

/// Relays events until the answer is complete or the stream fails. If the client goes
/// away, the upstream request is dropped (cancelled) and, for a session, the lease
/// released: nothing is stored for an answer nobody saw. So too when a shutdown's grace
/// period ends first, after an `error` event.
async fn pump(
    state: web::Data<AppState>,
    mut opened: Opened,
    mut writer: impl EventWriter,
    tx: mpsc::Sender<Bytes>,
    deadline: Instant,
) {
    let idle = state.router.idle_timeout();
    let mut grace_over = std::pin::pin!(state.draining.grace_over());
    loop {
        let next = match opened.first.take() {
            Some(first) => Ok(Some(Ok(first))),
            None => {
                let wake = (Instant::now() + idle).min(deadline);
                tokio::select! {
                    () = tx.closed() => return,
                    // The server is about to close every connection: say so, nothing is stored.
                    () = &mut grace_over => {
                        let _ = tx.send(writer.error(&ApiError::ShuttingDown).await).await;
                        return;
                    }
                    next = tokio::time::timeout_at(wake, opened.rest.next()) => next,
                }
            }
        };
        let (bytes, last) = match next {
            Ok(Some(Ok(StreamEvent::Delta(delta)))) => (writer.delta(&delta), false),
            Ok(Some(Ok(StreamEvent::Done(answer)))) => match writer.done(answer).await {
                Ok(closing) => (closing, true),
                Err(err) => (writer.error(&err).await, true),
            },
            Ok(Some(Err(err))) => (writer.error(&broke(&state, &mut opened, err)).await, true),
            Ok(None) => {
                let err = broke(&state, &mut opened, ProviderError::StreamCut);
                (writer.error(&err).await, true)
            }
            Err(_) if Instant::now() >= deadline => {
                (writer.error(&ApiError::UpstreamTimeout).await, true)
            }
            Err(_) => {
                let err = broke(&state, &mut opened, ProviderError::Timeout);
                (writer.error(&err).await, true)
            }
        };
        if tx.send(bytes).await.is_err() || last {
            return;
        }
    }
}

/// The stream failed after it began: the breaker hears of it, the client gets every
/// failed attempt of this request.
fn broke(state: &AppState, opened: &mut Opened, err: ProviderError) -> ApiError {
    tracing::warn!(model = %opened.model, error = %err, "upstream stream failed after it began");
    state.router.stream_failed(&opened.model);
    opened.failed.push(Attempt {
        model: opened.model.clone(),
        error: Some(err),
    });
    ApiError::UpstreamError {
        attempts: opened.failed.iter().map(upstream::report).collect(),
    }
}

/// `POST /v1/sessions/{id}/messages` with `"stream": true`: `delta` events, then one `done`
/// event with the full response, or an `error` event and never a `done`.
pub struct SessionEvents {
    state: web::Data<AppState>,
    destination: Option<Destination>,
}

impl SessionEvents {
    pub fn new(state: web::Data<AppState>, destination: Destination) -> SessionEvents {
        SessionEvents {
            state,
            destination: Some(destination),
        }
    }
}

#[async_trait]
impl EventWriter for SessionEvents {
    /// `{"content": …}`, with OpenAI's `tool_calls` pieces when the answer calls tools.
    fn delta(&mut self, delta: &Delta) -> Bytes {
        sse("delta", &delta.wire())
    }

    async fn done(&mut self, answer: ChatResponse) -> Result<Bytes, ApiError> {
        let destination = self
            .destination
            .take()
            .ok_or_else(|| ApiError::Internal("answer completed twice".into()))?;
        let completed = destination.complete(&self.state, answer).await?;
        Ok(sse("done", &completed.sent))
    }

    async fn error(&mut self, err: &ApiError) -> Bytes {
        if let Some(destination) = self.destination.as_mut() {
            destination.abandon().await;
        }
        sse("error", &err.body())
    }
}

fn sse(event: &str, data: &impl Serialize) -> Bytes {
    let data = serde_json::to_string(data).unwrap_or_else(|_| "{}".into());
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}
