//! A response as OpenAI's event stream, every event numbered: `response.created`,
//! `response.in_progress`, then per output item `response.output_item.added`, its content
//! part and text deltas (or a call's argument deltas) and their `.done` events, and last
//! `response.completed` (or `response.incomplete`, or `response.failed`). The answer is
//! stored before `response.completed` is written, so a follow-up sent the instant it
//! arrives finds it.

use actix_web::web;
use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use super::{
    items::{function_call_item, output_text},
    object::{Ending, Shell, response, status},
};
use crate::{
    conversation::{outcome::Destination, stream::EventWriter},
    domain::ids::{ItemPart, call_item_id, item_id},
    domain::tools::{FunctionCall, ToolCall},
    error::ApiError,
    llm::{ChatResponse, Delta},
    routes::openai::error_object,
    state::AppState,
};

pub struct ResponseEvents {
    state: web::Data<AppState>,
    destination: Option<Destination>,
    shell: Shell,
    /// The id of the answer's turn, which its items' ids derive from.
    answer_id: String,
    sequence: u64,
    started: bool,
    text: Option<TextItem>,
    calls: Vec<CallItem>,
    next_output: usize,
}

struct TextItem {
    output_index: usize,
    text: String,
}

struct CallItem {
    /// The call's index in the answer.
    index: u32,
    output_index: usize,
    item_id: String,
    call: ToolCall,
}

impl ResponseEvents {
    pub fn new(
        state: web::Data<AppState>,
        destination: Destination,
        shell: Shell,
        answer_id: String,
    ) -> ResponseEvents {
        ResponseEvents {
            state,
            destination: Some(destination),
            shell,
            answer_id,
            sequence: 0,
            started: false,
            text: None,
            calls: Vec::new(),
            next_output: 0,
        }
    }

    fn event(&mut self, out: &mut String, kind: &str, mut data: Value) {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push_str(&format!("event: {kind}\ndata: {data}\n\n"));
    }

    fn start(&mut self, out: &mut String) {
        if std::mem::replace(&mut self.started, true) {
            return;
        }
        let object = response(&self.shell, Ending::in_progress());
        self.event(out, "response.created", json!({ "response": object }));
        let object = response(&self.shell, Ending::in_progress());
        self.event(out, "response.in_progress", json!({ "response": object }));
    }

    fn message_id(&self) -> String {
        item_id(&self.answer_id, &ItemPart::Message)
    }

    fn text_piece(&mut self, out: &mut String, piece: &str) {
        let id = self.message_id();
        if self.text.is_none() {
            let output_index = self.next_output;
            self.next_output += 1;
            let item = json!({"type": "message", "id": id, "status": "in_progress", "role": "assistant", "content": []});
            self.event(
                out,
                "response.output_item.added",
                json!({"output_index": output_index, "item": item}),
            );
            let part = output_text("");
            self.event(out, "response.content_part.added", json!({"item_id": id, "output_index": output_index, "content_index": 0, "part": part}));
            self.text = Some(TextItem {
                output_index,
                text: String::new(),
            });
        }
        let Some(text) = self.text.as_mut() else {
            return;
        };
        text.text.push_str(piece);
        let output_index = text.output_index;
        self.event(out, "response.output_text.delta", json!({"item_id": id, "output_index": output_index, "content_index": 0, "delta": piece, "logprobs": []}));
    }

    fn call_piece(
        &mut self,
        out: &mut String,
        index: u32,
        id: Option<&str>,
        name: Option<&str>,
        arguments: &str,
    ) {
        let position = match self.calls.iter().position(|c| c.index == index) {
            Some(position) => position,
            None => {
                let call = ToolCall {
                    id: id.unwrap_or_default().to_string(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: name.unwrap_or_default().to_string(),
                        arguments: String::new(),
                    },
                };
                let output_index = self.next_output;
                self.next_output += 1;
                let item_id = call_item_id(&self.answer_id, &call.id);
                let item = function_call_item(&item_id, &call, "in_progress");
                self.event(
                    out,
                    "response.output_item.added",
                    json!({"output_index": output_index, "item": item}),
                );
                self.calls.push(CallItem {
                    index,
                    output_index,
                    item_id,
                    call,
                });
                self.calls.len() - 1
            }
        };
        if arguments.is_empty() {
            return;
        }
        let (item_id, output_index) = (
            self.calls[position].item_id.clone(),
            self.calls[position].output_index,
        );
        self.calls[position]
            .call
            .function
            .arguments
            .push_str(arguments);
        self.event(
            out,
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": output_index, "delta": arguments}),
        );
    }

    /// The `.done` events of every item that was opened, in the order they were.
    fn close_items(&mut self, out: &mut String) {
        if let Some(text) = self.text.take() {
            let id = self.message_id();
            let index = text.output_index;
            self.event(out, "response.output_text.done", json!({"item_id": id, "output_index": index, "content_index": 0, "text": text.text, "logprobs": []}));
            let part = output_text(&text.text);
            self.event(
                out,
                "response.content_part.done",
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
            );
            let item = json!({"type": "message", "id": id, "status": "completed", "role": "assistant", "content": [part]});
            self.event(
                out,
                "response.output_item.done",
                json!({"output_index": index, "item": item}),
            );
        }
        for call in std::mem::take(&mut self.calls) {
            let id = call.item_id.clone();
            let arguments = call.call.function.arguments.clone();
            self.event(
                out,
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": call.output_index, "arguments": arguments}),
            );
            let item = function_call_item(&id, &call.call, "completed");
            self.event(
                out,
                "response.output_item.done",
                json!({"output_index": call.output_index, "item": item}),
            );
        }
    }
}

#[async_trait]
impl EventWriter for ResponseEvents {
    fn delta(&mut self, delta: &Delta) -> Bytes {
        let mut out = String::new();
        self.start(&mut out);
        if !delta.content.is_empty() {
            self.text_piece(&mut out, &delta.content);
        }
        for piece in &delta.tool_calls {
            self.call_piece(
                &mut out,
                piece.index,
                piece.id.as_deref(),
                piece.name.as_deref(),
                &piece.arguments,
            );
        }
        Bytes::from(out)
    }

    async fn done(&mut self, answer: ChatResponse) -> Result<Bytes, ApiError> {
        let mut out = String::new();
        self.start(&mut out);
        self.close_items(&mut out);
        let destination = self
            .destination
            .take()
            .ok_or_else(|| ApiError::Internal("answer completed twice".into()))?;
        let completed = destination.complete(&self.state, answer).await?;
        let (status, incomplete_details) = status(completed.finish_reason);
        let kind = if status == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let ending = Ending {
            status,
            output: super::items::items_of_message(&self.answer_id, &completed.message),
            usage: Some(completed.usage),
            incomplete_details,
            error: Value::Null,
        };
        let object = response(&self.shell, ending);
        self.event(&mut out, kind, json!({ "response": object }));
        Ok(Bytes::from(out))
    }

    async fn error(&mut self, err: &ApiError) -> Bytes {
        if let Some(destination) = self.destination.as_mut() {
            destination.abandon().await;
        }
        let mut out = String::new();
        self.start(&mut out);
        let failure = error_object(err);
        let ending = Ending {
            status: "failed",
            error: json!({"code": failure["code"], "message": failure["message"]}),
            ..Ending::in_progress()
        };
        let object = response(&self.shell, ending);
        self.event(&mut out, "response.failed", json!({ "response": object }));
        Bytes::from(out)
    }
}

/// A stored response replayed (an `Idempotency-Key` seen before), as a short stream.
pub fn replayed(object: &impl Serialize) -> String {
    let object = serde_json::to_value(object).unwrap_or_default();
    let created = json!({"type": "response.created", "sequence_number": 0, "response": object});
    let done = json!({"type": "response.completed", "sequence_number": 1, "response": object});
    format!(
        "event: response.created\ndata: {created}\n\nevent: response.completed\ndata: {done}\n\n"
    )
}
