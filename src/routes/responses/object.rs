//! The response object: the request's parameters as it echoes them, and what came of it.

use std::sync::LazyLock;

use chrono::Utc;
use serde_json::{Value, json};

use super::{items::items_of, request::ResponsesRequest};
use crate::domain::ids;
use crate::{
    domain::message::{AnswerRecord, Turn},
    llm::Usage,
};

/// What every event of one response shares: its id, time, model and echo.
#[derive(Clone, Debug)]
pub struct Shell {
    pub id: String,
    pub created_at: i64,
    pub model: String,
    pub echo: Value,
}

pub fn usage(usage: Usage) -> Value {
    json!({
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
    })
}

/// A finish reason as a response status: a cut-off answer is `incomplete`, with why.
pub fn status(finish_reason: &str) -> (&'static str, Value) {
    match finish_reason {
        "length" => ("incomplete", json!({"reason": "max_output_tokens"})),
        "content_filter" => ("incomplete", json!({"reason": "content_filter"})),
        _ => ("completed", Value::Null),
    }
}

/// What a response says about how it ended.
pub struct Ending {
    pub status: &'static str,
    pub output: Vec<Value>,
    pub usage: Option<Usage>,
    pub incomplete_details: Value,
    pub error: Value,
}

impl Ending {
    pub fn in_progress() -> Ending {
        Ending {
            status: "in_progress",
            output: Vec::new(),
            usage: None,
            incomplete_details: Value::Null,
            error: Value::Null,
        }
    }
}

pub fn response(shell: &Shell, ending: Ending) -> Value {
    let mut object = shell.echo.clone();
    let done = ending.status != "in_progress";
    let fields = [
        ("id", json!(shell.id)),
        ("object", json!("response")),
        ("created_at", json!(shell.created_at)),
        (
            "completed_at",
            if done {
                json!(Utc::now().timestamp())
            } else {
                Value::Null
            },
        ),
        ("status", json!(ending.status)),
        ("error", ending.error),
        ("incomplete_details", ending.incomplete_details),
        ("model", json!(shell.model)),
        ("output", Value::Array(ending.output)),
        ("usage", ending.usage.map_or(Value::Null, usage)),
    ];
    for (key, value) in fields {
        object[key] = value;
    }
    object
}

/// A stored answer read back as its response: the request's echo and usage from its
/// record (an answer made through the sessions API has none: OpenAI's defaults stand in).
pub fn stored(session: &str, session_model: &str, turn: &Turn) -> Value {
    let record = turn.record.as_deref();
    let model = record.map_or(session_model, |r| r.model.as_str());
    let shell = Shell {
        id: ids::response_id(session, &turn.id),
        created_at: turn.created_at.timestamp(),
        model: model.to_string(),
        echo: full_echo(record.map(|r| &r.request)),
    };
    let (status, incomplete_details) = status(record.map_or("stop", |r| r.finish_reason.as_str()));
    response(
        &shell,
        Ending {
            status,
            output: items_of(turn),
            usage: record.map(|r: &AnswerRecord| Usage {
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
            }),
            incomplete_details,
            error: Value::Null,
        },
    )
}

/// The echo of a request that sets nothing (the echo names no model): OpenAI's defaults.
static DEFAULT_ECHO: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_value::<ResponsesRequest>(json!({ "model": "" }))
        .map(|r| r.echo())
        .unwrap_or_else(|_| json!({}))
});

/// What an answer's record keeps of its request's echo: only what differs from OpenAI's
/// defaults (most of it does not), so a stored answer stays small.
pub fn compact_echo(echo: &Value) -> Value {
    let Value::Object(echo) = echo else {
        return json!({});
    };
    let differs = echo
        .iter()
        .filter(|(key, value)| DEFAULT_ECHO.get(key.as_str()) != Some(value));
    Value::Object(differs.map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// The echo again: the defaults, with what the record kept over them.
fn full_echo(kept: Option<&Value>) -> Value {
    let mut echo = DEFAULT_ECHO.clone();
    if let (Value::Object(echo), Some(Value::Object(kept))) = (&mut echo, kept) {
        echo.extend(kept.clone());
    }
    echo
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn echo_of(request: Value) -> Value {
        serde_json::from_value::<ResponsesRequest>(request)
            .unwrap()
            .echo()
    }

    #[test]
    fn a_record_keeps_only_what_differs_from_the_defaults_and_reads_back_whole() {
        let plain = echo_of(json!({"model": "gpt-4o"}));
        assert_eq!(compact_echo(&plain), json!({}));
        assert_eq!(full_echo(Some(&json!({}))), plain);
        let asked = echo_of(json!({"model": "gpt-4o", "temperature": 0.2, "truncation": "auto"}));
        let kept = compact_echo(&asked);
        assert_eq!(kept, json!({"temperature": 0.2, "truncation": "auto"}));
        assert_eq!(full_echo(Some(&kept)), asked);
    }
}
