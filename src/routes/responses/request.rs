//! `POST /v1/responses`: the request, checked, and translated into a send.
//!
//! Honoured: `model`, `input`, `instructions` (this turn's system prompt, never stored in
//! the conversation), `previous_response_id`, `conversation`, `store`, `stream`, function
//! `tools`, `tool_choice`, `parallel_tool_calls`, `text.format`, `max_output_tokens`,
//! `temperature`, `top_p`, `truncation`, `metadata`, `user` / `safety_identifier`, and —
//! where the upstream supports them — `reasoning.effort`, `prompt_cache_key` and
//! `service_tier`. Accepted and ignored: `include`, `stream_options`, `top_logprobs`,
//! `max_tool_calls`, `prompt_cache_retention`, `prompt_cache_options`,
//! `context_management`. Refused with a 400 naming them: built-in tools (`web_search`,
//! `file_search`, …), `background: true` and stored `prompt` templates.

use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Map, Value, json};

use super::items::Input;
use crate::{
    domain::{
        params::{Params, ReasoningEffort, ServiceTier},
        tools::{
            FunctionDefinition, JsonSchema, NamedFunction, ResponseFormat, Tool, ToolChoice,
            ToolChoiceMode, ToolKind,
        },
    },
    error::ApiError,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsesRequest {
    pub model: String,
    pub input: Option<Input>,
    pub instructions: Option<String>,
    pub previous_response_id: Option<String>,
    pub conversation: Option<ConversationRef>,
    pub store: Option<bool>,
    pub stream: Option<bool>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub text: Option<TextConfig>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f64>,
    pub truncation: Option<Truncation>,
    pub metadata: Option<Map<String, Value>>,
    pub user: Option<String>,
    pub safety_identifier: Option<String>,
    pub prompt_cache_key: Option<String>,
    pub reasoning: Option<Reasoning>,
    pub service_tier: Option<ServiceTier>,
    pub background: Option<bool>,
    pub prompt: Option<Value>,
    /// Accepted and ignored (see the module's documentation).
    #[serde(default, rename = "include")]
    _include: Option<IgnoredAny>,
    #[serde(default, rename = "stream_options")]
    _stream_options: Option<IgnoredAny>,
    #[serde(default, rename = "top_logprobs")]
    _top_logprobs: Option<IgnoredAny>,
    #[serde(default, rename = "max_tool_calls")]
    _max_tool_calls: Option<IgnoredAny>,
    #[serde(default, rename = "prompt_cache_retention")]
    _prompt_cache_retention: Option<IgnoredAny>,
    #[serde(default, rename = "prompt_cache_options")]
    _prompt_cache_options: Option<IgnoredAny>,
    #[serde(default, rename = "context_management")]
    _context_management: Option<IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConversationRef {
    Id(String),
    Object { id: String },
}

impl ConversationRef {
    pub fn id(&self) -> &str {
        match self {
            ConversationRef::Id(id) | ConversationRef::Object { id } => id,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct TextConfig {
    pub format: Option<Value>,
    pub verbosity: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Truncation {
    Auto,
    Disabled,
}

#[derive(Debug, Deserialize)]
pub struct Reasoning {
    pub effort: Option<ReasoningEffort>,
    pub summary: Option<Value>,
}

/// What a request asks of the send besides its turns.
pub struct Asked {
    pub tools: Option<Vec<Tool>>,
    pub tool_choice: Option<ToolChoice>,
    pub response_format: Option<ResponseFormat>,
    pub params: Params,
    pub extra: Map<String, Value>,
}

impl ResponsesRequest {
    pub fn streaming(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn keeps(&self) -> bool {
        self.store.unwrap_or(true)
    }

    /// OpenAI's default is to refuse rather than drop what does not fit.
    pub fn truncation(&self) -> Truncation {
        self.truncation.unwrap_or(Truncation::Disabled)
    }

    pub fn refused(&self) -> Result<(), ApiError> {
        if self.background == Some(true) {
            return Err(ApiError::invalid(
                "background",
                "background responses are not available here",
            ));
        }
        if self.prompt.is_some() {
            return Err(ApiError::invalid(
                "prompt",
                "stored prompt templates are not available here",
            ));
        }
        if self.previous_response_id.is_some() && self.conversation.is_some() {
            return Err(ApiError::invalid(
                "previous_response_id",
                "give `previous_response_id` or `conversation`, not both",
            ));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid("temperature", "must be between 0 and 2"));
        }
        if self.max_output_tokens == Some(0) {
            return Err(ApiError::invalid("max_output_tokens", "must be at least 1"));
        }
        Ok(())
    }

    /// The chat equivalents of the request's tools, format and parameters.
    pub fn asked(&self) -> Result<Asked, ApiError> {
        let tools = match &self.tools {
            None => None,
            Some(tools) => Some(
                tools
                    .iter()
                    .enumerate()
                    .map(|(i, t)| function_tool(i, t))
                    .collect::<Result<_, _>>()?,
            ),
        };
        let params = Params {
            top_p: self.top_p,
            parallel_tool_calls: self.parallel_tool_calls,
            user: self.safety_identifier.clone().or_else(|| self.user.clone()),
            service_tier: self.service_tier,
            ..Params::default()
        };
        params.validate()?;
        // Only OpenAI-compatible upstreams know these; elsewhere they are left out.
        let mut extra = Map::new();
        if let Some(key) = &self.prompt_cache_key {
            extra.insert("prompt_cache_key".into(), json!(key));
        }
        if let Some(effort) = self.reasoning.as_ref().and_then(|r| r.effort) {
            extra.insert("reasoning_effort".into(), json!(effort));
        }
        Ok(Asked {
            tools,
            tool_choice: self.tool_choice.as_ref().map(tool_choice).transpose()?,
            response_format: self
                .text
                .as_ref()
                .and_then(|t| t.format.as_ref())
                .map(format)
                .transpose()?,
            params,
            extra,
        })
    }

    /// The request's parameters as the response object echoes them back.
    pub fn echo(&self) -> Value {
        // What a client wrote as 0.2 is echoed as 0.2, not as the f32 nearest to it.
        let as_written = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::from(x));
        let reasoning = self.reasoning.as_ref();
        json!({
            "instructions": self.instructions,
            "max_output_tokens": self.max_output_tokens,
            "max_tool_calls": null,
            "metadata": self.metadata.clone().unwrap_or_default(),
            "parallel_tool_calls": self.parallel_tool_calls.unwrap_or(true),
            "previous_response_id": self.previous_response_id,
            "conversation": self.conversation.as_ref().map(|c| json!({"id": c.id()})),
            "prompt_cache_key": self.prompt_cache_key,
            "reasoning": {"effort": reasoning.and_then(|r| r.effort), "summary": reasoning.and_then(|r| r.summary.clone())},
            "safety_identifier": self.safety_identifier,
            "service_tier": self.service_tier.map_or(json!("default"), |t| json!(t)),
            "store": self.keeps(),
            "temperature": self.temperature.map_or(1.0, as_written),
            "text": {
                "format": self.text.as_ref().and_then(|t| t.format.clone()).unwrap_or_else(|| json!({"type": "text"})),
                "verbosity": self.text.as_ref().and_then(|t| t.verbosity.clone()).unwrap_or_else(|| "medium".into()),
            },
            "tool_choice": self.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "tools": self.tools.clone().unwrap_or_default(),
            "top_logprobs": 0,
            "top_p": self.top_p.unwrap_or(1.0),
            "truncation": if self.truncation() == Truncation::Auto { "auto" } else { "disabled" },
            "user": self.user,
            "background": false,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlatFunction {
    #[serde(rename = "type")]
    _kind: String,
    name: String,
    description: Option<String>,
    parameters: Option<Value>,
    strict: Option<bool>,
}

/// Responses function tools are flat (`{"type": "function", "name", …}`).
fn function_tool(i: usize, tool: &Value) -> Result<Tool, ApiError> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(ApiError::invalid(
            format!("tools[{i}].type"),
            "only function tools are available here; built-in tools (web_search, file_search, …) are not",
        ));
    }
    let flat: FlatFunction = serde_json::from_value(tool.clone()).map_err(|_| {
        ApiError::invalid(
            format!("tools[{i}]"),
            "a function tool: name, description, parameters, strict",
        )
    })?;
    Ok(Tool {
        kind: ToolKind::Function,
        function: FunctionDefinition {
            name: flat.name,
            description: flat.description,
            parameters: flat.parameters,
            strict: flat.strict,
        },
    })
}

fn tool_choice(choice: &Value) -> Result<ToolChoice, ApiError> {
    let mode = |m| Ok(ToolChoice::Mode(m));
    match choice {
        Value::String(s) if s == "none" => mode(ToolChoiceMode::None),
        Value::String(s) if s == "auto" => mode(ToolChoiceMode::Auto),
        Value::String(s) if s == "required" => mode(ToolChoiceMode::Required),
        Value::Object(o) if o.get("type") == Some(&json!("function")) => {
            match o.get("name").and_then(Value::as_str) {
                Some(name) => Ok(ToolChoice::Function {
                    kind: ToolKind::Function,
                    function: NamedFunction { name: name.into() },
                }),
                None => Err(ApiError::invalid(
                    "tool_choice.name",
                    "the function to call",
                )),
            }
        }
        _ => Err(ApiError::invalid(
            "tool_choice",
            "`none`, `auto`, `required` or {\"type\": \"function\", \"name\": …}",
        )),
    }
}

/// `text.format` is flat too: `{"type": "json_schema", "name", "schema", "strict"}`.
fn format(format: &Value) -> Result<ResponseFormat, ApiError> {
    let field = |name: &str| format.get(name).cloned();
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => Ok(ResponseFormat::JsonSchema {
            json_schema: JsonSchema {
                name: field("name")
                    .and_then(|n| n.as_str().map(str::to_string))
                    .ok_or_else(|| {
                        ApiError::invalid("text.format.name", "a json_schema format needs a name")
                    })?,
                description: field("description").and_then(|d| d.as_str().map(str::to_string)),
                schema: field("schema"),
                strict: field("strict").and_then(|s| s.as_bool()),
            },
        }),
        _ => Err(ApiError::invalid(
            "text.format.type",
            "`text`, `json_object` or `json_schema`",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn request(value: Value) -> ResponsesRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn flat_tools_choices_and_formats_become_their_chat_forms() {
        let asked = request(json!({
            "model": "m",
            "tools": [{"type": "function", "name": "look", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "look"},
            "text": {"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}},
            "reasoning": {"effort": "low"}, "safety_identifier": "u-1", "prompt_cache_key": "k"
        }))
        .asked()
        .unwrap();
        assert_eq!(asked.tools.unwrap()[0].function.name, "look");
        assert!(matches!(
            asked.tool_choice,
            Some(ToolChoice::Function { .. })
        ));
        assert!(matches!(
            asked.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert_eq!(asked.params.user.as_deref(), Some("u-1"));
        assert_eq!(asked.extra["reasoning_effort"], "low");
        assert_eq!(asked.extra["prompt_cache_key"], "k");
    }

    #[test]
    fn built_in_tools_background_and_unknown_fields_are_refused_by_name() {
        let field = |value| match request(value).asked() {
            Err(ApiError::InvalidRequest { field, .. }) => field,
            other => panic!("{:?}", other.err()),
        };
        assert_eq!(
            field(json!({"model": "m", "tools": [{"type": "web_search"}]})).as_deref(),
            Some("tools[0].type")
        );
        assert_eq!(
            field(json!({"model": "m", "tool_choice": {"type": "file_search"}})).as_deref(),
            Some("tool_choice")
        );
        let background = request(json!({"model": "m", "background": true})).refused();
        assert!(
            matches!(background, Err(ApiError::InvalidRequest { field: Some(f), .. }) if f == "background")
        );
        assert!(
            serde_json::from_value::<ResponsesRequest>(json!({"model": "m", "frobnicate": 1}))
                .is_err()
        );
    }

    #[test]
    fn the_echo_has_openais_defaults() {
        let echo = request(json!({"model": "m"})).echo();
        assert_eq!(echo["truncation"], "disabled");
        assert_eq!(echo["tool_choice"], "auto");
        assert_eq!(echo["text"]["format"], json!({"type": "text"}));
        assert_eq!(echo["parallel_tool_calls"], true);
        assert_eq!(echo["store"], true);
    }
}
