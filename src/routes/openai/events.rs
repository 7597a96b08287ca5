//! The relay's event stream in OpenAI's chunk format: a role chunk, content chunks, a chunk
//! with the finish reason, the usage chunk when asked for, then `data: [DONE]`. A failure
//! after the stream began is a `data: {"error": …}` event and never a `[DONE]`, which the
//! SDKs raise as an exception instead of presenting a partial answer as complete.

use std::sync::Arc;

use actix_web::web;
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;

use super::{
    errors::error_object,
    wire::{DONE, Head, chunk, delta_chunk, estimate_usage, usage_chunk},
};
use crate::{
    conversation::{
        send::{Prepared, finish},
        stream::EventWriter,
    },
    domain::message::Message,
    error::ApiError,
    llm::{ChatResponse, Delta, Options, Usage, finish_reason, registry::Model},
    metering::Metering,
    state::AppState,
};

pub struct ChunkWriter {
    head: Head,
    include_usage: bool,
    role_sent: bool,
    store: Store,
}

/// What happens to a complete answer.
enum Store {
    /// Stored as the session's next two turns; usage as billed to the session.
    Session {
        state: web::Data<AppState>,
        prepared: Option<Box<Prepared>>,
        index: usize,
    },
    /// Nothing stored; usage as reported, or counted when the upstream said nothing,
    /// and settled against the key's reservation.
    Stateless {
        model: Arc<Model>,
        prompt: (Vec<Message>, Arc<Options>),
        metering: Metering,
    },
}

impl ChunkWriter {
    pub fn session(
        head: Head,
        include_usage: bool,
        state: web::Data<AppState>,
        prepared: Prepared,
        index: usize,
    ) -> ChunkWriter {
        let store = Store::Session {
            state,
            prepared: Some(Box::new(prepared)),
            index,
        };
        ChunkWriter::new(head, include_usage, store)
    }

    pub fn stateless(
        head: Head,
        include_usage: bool,
        model: Arc<Model>,
        prompt: (Vec<Message>, Arc<Options>),
        metering: Metering,
    ) -> ChunkWriter {
        let store = Store::Stateless {
            model,
            prompt,
            metering,
        };
        ChunkWriter::new(head, include_usage, store)
    }

    fn new(head: Head, include_usage: bool, store: Store) -> ChunkWriter {
        ChunkWriter {
            head,
            include_usage,
            role_sent: false,
            store,
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

    async fn usage(&mut self, answer: ChatResponse) -> Result<Usage, ApiError> {
        match &mut self.store {
            Store::Session {
                state,
                prepared,
                index,
            } => {
                let prepared = prepared
                    .take()
                    .ok_or_else(|| ApiError::Internal("answer completed twice".into()))?;
                let response = finish(state, *prepared, *index, answer).await?;
                Ok(Usage {
                    prompt_tokens: response.usage.prompt_tokens,
                    completion_tokens: response.usage.completion_tokens,
                })
            }
            Store::Stateless {
                model,
                prompt,
                metering,
            } => {
                let (messages, options) = prompt;
                let usage = answer.usage.unwrap_or_else(|| {
                    estimate_usage(model.tokenizer, messages, &options.tools, &answer.message)
                });
                let cost = model.cost_nano_usd(usage.prompt_tokens, usage.completion_tokens);
                metering.settle(model, usage, cost).await;
                Ok(usage)
            }
        }
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
        let finish = finish_reason(answer.finish_reason.as_deref(), &answer.message);
        // Known only now; the closing chunk carries it.
        self.head.system_fingerprint = answer.system_fingerprint.clone();
        // Stored (for a session) before anything says "complete".
        let usage = self.usage(answer).await?;
        let mut out = self.role();
        out.push_str(&chunk(&self.head, &json!({}), None, Some(finish)));
        if self.include_usage {
            out.push_str(&usage_chunk(&self.head, usage));
        }
        out.push_str(DONE);
        Ok(Bytes::from(out))
    }

    async fn error(&mut self, err: &ApiError) -> Bytes {
        if let Store::Session {
            prepared: Some(prepared),
            ..
        } = &mut self.store
        {
            prepared.lease.release().await;
        }
        let object = error_object(err);
        Bytes::from(format!("data: {}\n\n", json!({ "error": object })))
    }
}
