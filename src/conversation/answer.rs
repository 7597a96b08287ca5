//! Getting an answer, streamed or whole, for any API: of a prepared send (the session's
//! turns), or of a call that keeps nothing. Each API then writes it in its own format.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use tokio::time::Instant;

use super::{
    outcome::{Completed, Destination, reserve},
    send::{Prepared, call_chain},
    stream::{self, EventWriter, Opened},
    upstream,
};
use crate::{
    auth::Caller,
    domain::message::Message,
    error::ApiError,
    llm::{ChatRequest, Options, registry::Model},
    state::AppState,
};

/// An answer on its way.
pub enum Answering {
    /// A stream that has produced content, and where its complete answer goes.
    Streaming {
        opened: Opened,
        destination: Destination,
        deadline: Instant,
    },
    Complete(Completed),
}

impl Answering {
    /// A stream answers with the events `writer` writes; a complete answer with `render`.
    pub fn respond<W: EventWriter>(
        self,
        state: web::Data<AppState>,
        writer: impl FnOnce(&Opened, Destination) -> W,
        render: impl FnOnce(Completed) -> HttpResponse,
    ) -> HttpResponse {
        match self {
            Answering::Streaming {
                opened,
                destination,
                deadline,
            } => {
                let writer = writer(&opened, destination);
                stream::serve(state, opened, writer, deadline)
            }
            Answering::Complete(completed) => render(completed),
        }
    }
}

/// The answer of a prepared send; its lease is given back if the chain fails.
pub async fn of_send(
    state: &AppState,
    mut prepared: Prepared,
    streaming: bool,
) -> Result<Answering, ApiError> {
    let deadline = upstream::deadline(state);
    if streaming {
        let chain = prepared.chain.clone();
        let opened = stream::open(state, &chain, |m| prepared.request_for(m), deadline).await;
        let opened = prepared.lease.release_on_err(opened).await?;
        let destination = Destination::session(prepared, opened.index);
        return Ok(Answering::Streaming {
            opened,
            destination,
            deadline,
        });
    }
    let called = call_chain(state, &prepared).await;
    let (index, answer) = prepared.lease.release_on_err(called).await?;
    let destination = Destination::session(prepared, index);
    Ok(Answering::Complete(
        destination.complete(state, answer).await?,
    ))
}

/// A call that keeps nothing: `prompt` as given, metered against the caller's key.
pub struct Call {
    pub model: String,
    pub prompt: Vec<Message>,
    pub options: Arc<Options>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

pub async fn of_call(
    state: &AppState,
    caller: &Caller,
    call: Call,
    streaming: bool,
) -> Result<Answering, ApiError> {
    let chain = upstream::chain(state, &call.model, &[])?;
    let Call {
        prompt,
        options,
        max_tokens,
        temperature,
        ..
    } = call;
    let metering = reserve(state, caller, &chain, &prompt, &options.tools, max_tokens).await?;
    let request_for = |model: &Model| ChatRequest {
        model: model.upstream_name.clone(),
        messages: prompt.clone(),
        max_tokens,
        temperature,
        options: options.clone(),
        first_byte_timeout: None,
    };
    let deadline = upstream::deadline(state);
    if streaming {
        let opened = stream::open(state, &chain, request_for, deadline).await?;
        let model = upstream::answering(&chain, opened.index)?;
        let destination = Destination::Stateless {
            model,
            prompt,
            options,
            metering,
        };
        return Ok(Answering::Streaming {
            opened,
            destination,
            deadline,
        });
    }
    let routed = (state.router.complete(&chain, request_for, deadline).await)
        .map_err(upstream::api_error)?;
    let model = upstream::answering(&chain, routed.index)?;
    let destination = Destination::Stateless {
        model,
        prompt,
        options,
        metering,
    };
    Ok(Answering::Complete(
        destination.complete(state, routed.value).await?,
    ))
}
