//! The relay's event stream in OpenAI's chunk format: a role chunk, content chunks, a chunk
//! with the finish reason, the usage chunk when asked for, then `data: [DONE]`. A failure
//! after the stream began is a `data: {"error": …}` event and never a `[DONE]`, which the
//! SDKs raise as an exception instead of presenting a partial answer as complete.

use actix_web::web;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;

use super::{
    errors::error_object,
    wire::{DONE, Head, chunk, delta_chunk, usage_chunk},
};
use crate::{
    conversation::{outcome::Destination, stream::EventWriter},
    error::ApiError,
    llm::{ChatResponse, Delta},
    state::AppState,
};

pub struct ChunkWriter {
    head: Head,
    include_usage: bool,
    role_sent: bool,
    state: web::Data<AppState>,
    destination: Option<Destination>,
}

impl ChunkWriter {
    pub fn new(
        head: Head,
        include_usage: bool,
        state: web::Data<AppState>,
        destination: Destination,
    ) -> ChunkWriter {
        ChunkWriter {
            head,
            include_usage,
            role_sent: false,
            state,
            destination: Some(destination),
        }
    }

    /// OpenAI opens every answer with a chunk that carries only the role.
    fn role(&mut self) -> String {
        if std::mem::replace(&mut self.role_sent, true) {
            return String::new();
        }
        let role = json!({"role": "assistant", "content": ""});
        chunk(&self.head, &role, None, None)
    }
}

#[async_trait]
impl EventWriter for ChunkWriter {
    fn delta(&mut self, delta: &Delta) -> Bytes {
        let mut out = self.role();
        out.push_str(&delta_chunk(&self.head, delta));
        Bytes::from(out)
    }

    async fn done(&mut self, answer: ChatResponse) -> Result<Bytes, ApiError> {
        let destination = self
            .destination
            .take()
            .ok_or_else(|| ApiError::Internal("answer completed twice".into()))?;
        // Stored (for a session) before anything says "complete".
        let completed = destination.complete(&self.state, answer).await?;
        // Known only now; the closing chunk carries it.
        self.head.system_fingerprint = completed.system_fingerprint;
        let mut out = self.role();
        let last = chunk(&self.head, &json!({}), None, Some(completed.finish_reason));
        out.push_str(&last);
        if self.include_usage {
            out.push_str(&usage_chunk(&self.head, completed.usage));
        }
        out.push_str(DONE);
        Ok(Bytes::from(out))
    }

    async fn error(&mut self, err: &ApiError) -> Bytes {
        if let Some(destination) = self.destination.as_mut() {
            destination.abandon().await;
        }
        let object = error_object(err);
        Bytes::from(format!("data: {}\n\n", json!({ "error": object })))
    }
}
