//! What a send asks for, decoded from whichever API it came through.

use crate::{
    domain::{
        message::Message,
        params::Params,
        tools::{ResponseFormat, Tool, ToolChoice},
        turns::Batch,
    },
    store::IdempotencyClaim,
};

/// What the client asked for, already decoded.
#[derive(Debug, Clone)]
pub struct SendInput {
    /// The new turns: a user turn, or the results of the last answer's tool calls.
    pub turns: Vec<Message>,
    /// How errors name the field of a new turn, as the client sent it.
    pub turn_field: fn(usize, &str) -> String,
    /// What the new turns may hold.
    pub batch: Batch,
    pub model: Option<String>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// `None` uses the session's tools (`Some(vec![])`: none this time).
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<ToolChoice>,
    /// `None` uses the session's format.
    pub response_format: Option<ResponseFormat>,
    pub params: Params,
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub idempotency: Option<IdempotencyClaim>,
    /// Replaces the session's system prompt for this send only.
    pub instructions: Option<String>,
    /// Refuse (400) rather than leave out turns the budget cannot hold.
    pub whole_history: bool,
    /// `false`: answer, but store nothing.
    pub keep: bool,
    /// Kept with the answer (the Responses API's echo of the request).
    pub record: Option<serde_json::Value>,
    /// The id of the answer this send continues, which must be the session's newest turn
    /// (checked in the admission's own read, so continuing costs no extra round trip).
    pub continues: Option<String>,
}

impl SendInput {
    /// A send of the given turns with everything else as the session says.
    pub fn of_turns(turns: Vec<Message>, turn_field: fn(usize, &str) -> String) -> SendInput {
        SendInput {
            turns,
            turn_field,
            batch: Batch::Delta,
            model: None,
            max_tokens: None,
            temperature: None,
            tools: None,
            tool_choice: None,
            response_format: None,
            params: Params::default(),
            extra: serde_json::Map::new(),
            idempotency: None,
            instructions: None,
            whole_history: false,
            keep: true,
            record: None,
            continues: None,
        }
    }
}
