//! A chat request as a Messages API body.

use serde_json::{Map, Value, json};

use super::DEFAULT_MAX_TOKENS;
use crate::{
    domain::{
        content::{Content, Part, data_url},
        message::{Message, Role},
        tools::{ResponseFormat, ToolChoice, ToolChoiceMode},
    },
    llm::{ChatRequest, ProviderError},
};

const PROVIDER: &str = "Anthropic";

/// Parameters the Messages API has an equivalent for, or that concern only OpenAI's own
/// storage and billing (`store`, `metadata`, `service_tier`: accepted and ignored).
const HONOURED: [&str; 7] = [
    "top_p",
    "stop",
    "user",
    "parallel_tool_calls",
    "store",
    "metadata",
    "service_tier",
];

pub(super) struct Translated {
    pub body: Value,
    /// The forced tool that carries a structured answer, when the caller asked for one.
    pub answer_tool: Option<String>,
}

pub(super) fn translate(request: &ChatRequest, stream: bool) -> Result<Translated, ProviderError> {
    let options = &request.options;
    if let Some(name) =
        (options.params.set_names().into_iter()).find(|n| !HONOURED.contains(&n.as_str()))
    {
        return Err(ProviderError::unsupported(name, PROVIDER));
    }
    if request.temperature.is_some_and(|t| t > 1.0) {
        return Err(ProviderError::Unsupported {
            param: "temperature".into(),
            message: "the Anthropic API takes a temperature between 0 and 1".into(),
        });
    }
    let (system, mut messages) = conversation(&request.messages)?;
    // A last assistant turn is what the API continues. It refuses one ending in
    // whitespace, which the answer goes on with anyway.
    if let Some(prefill) = request.prefill.as_deref().map(str::trim_end)
        && !prefill.is_empty()
    {
        messages.push(json!({ "role": "assistant", "content": prefill }));
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(request.model));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    body.insert("messages".into(), Value::Array(messages));
    body.insert(
        "max_tokens".into(),
        json!(request.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(t) = request.temperature {
        body.insert("temperature".into(), json!(t));
    }
    let params = &options.params;
    if let Some(top_p) = params.top_p {
        body.insert("top_p".into(), json!(top_p));
    }
    if let Some(stop) = &params.stop {
        body.insert("stop_sequences".into(), json!(stop.sequences()));
    }
    if let Some(user) = &params.user {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }
    body.insert("stream".into(), json!(stream));
    let answer_tool = tools(request, &mut body)?;
    Ok(Translated {
        body: Value::Object(body),
        answer_tool,
    })
}

/// Tools and the tool choice; or, for structured output, the one forced tool whose input
/// is the answer (its name is returned).
fn tools(
    request: &ChatRequest,
    body: &mut Map<String, Value>,
) -> Result<Option<String>, ProviderError> {
    let options = &request.options;
    let answer_schema = match &options.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => {
            Some(("json_object".to_string(), None, json!({"type": "object"})))
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => Some((
            json_schema.name.clone(),
            json_schema.description.clone(),
            json_schema
                .schema
                .clone()
                .unwrap_or_else(|| json!({"type": "object"})),
        )),
    };
    if let Some((name, description, schema)) = answer_schema {
        // A forced answer tool beside the caller's own tools would forbid calling them.
        if !options.tools.is_empty() {
            return Err(ProviderError::Unsupported {
                param: "response_format".into(),
                message: "the Anthropic API cannot combine structured output with tools".into(),
            });
        }
        let description =
            description.unwrap_or_else(|| "Give the answer as this tool's input.".into());
        body.insert(
            "tools".into(),
            json!([{ "name": name, "description": description, "input_schema": schema }]),
        );
        body.insert(
            "tool_choice".into(),
            json!({ "type": "tool", "name": name }),
        );
        return Ok(Some(name));
    }
    if options.tools.is_empty() {
        return Ok(None);
    }
    let tools: Vec<Value> = options
        .tools
        .iter()
        .map(|tool| {
            let f = &tool.function;
            let mut wire = json!({
                "name": f.name,
                "input_schema": f.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
            if let Some(description) = &f.description {
                wire["description"] = json!(description);
            }
            wire
        })
        .collect();
    body.insert("tools".into(), Value::Array(tools));
    let mut choice = match &options.tool_choice {
        None | Some(ToolChoice::Mode(ToolChoiceMode::Auto)) => json!({"type": "auto"}),
        Some(ToolChoice::Mode(ToolChoiceMode::None)) => json!({"type": "none"}),
        Some(ToolChoice::Mode(ToolChoiceMode::Required)) => json!({"type": "any"}),
        Some(ToolChoice::Function { function, .. }) => {
            json!({"type": "tool", "name": function.name})
        }
    };
    if options.params.parallel_tool_calls == Some(false) && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    body.insert("tool_choice".into(), choice);
    Ok(None)
}

/// System and developer turns become the top-level `system`; the others become
/// alternating user and assistant turns of content blocks (tool results are user-side
/// blocks, and consecutive turns of one side are merged, as the API requires).
fn conversation(messages: &[Message]) -> Result<(Vec<String>, Vec<Value>), ProviderError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let field = |rest: &str| format!("messages[{i}]{rest}");
        let (side, blocks) = match message.role {
            Role::System | Role::Developer => {
                if let Content::Parts(parts) = &message.content
                    && parts.iter().any(|p| !matches!(p, Part::Text { .. }))
                {
                    return Err(ProviderError::unsupported(field(".content"), PROVIDER));
                }
                system.push(message.content.text().into_owned());
                continue;
            }
            Role::User => (
                "user",
                content_blocks(&message.content, &field(".content"))?,
            ),
            Role::Assistant => ("assistant", assistant_blocks(message, &field)?),
            Role::Tool => match &message.tool_call_id {
                Some(id) => {
                    let result = content_blocks(&message.content, &field(".content"))?;
                    (
                        "user",
                        vec![json!({"type": "tool_result", "tool_use_id": id, "content": result})],
                    )
                }
                // History from before tool calls were kept: plain user-side text.
                None => (
                    "user",
                    content_blocks(&message.content, &field(".content"))?,
                ),
            },
            Role::Function => return Err(ProviderError::unsupported(field(".role"), PROVIDER)),
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == side => existing.extend(blocks),
            _ => turns.push((side, blocks)),
        }
    }
    let turns = turns
        .into_iter()
        .map(|(role, mut content)| match content.as_mut_slice() {
            // A turn of plain text only is written the short way.
            [Value::Object(block)] if block.len() == 2 && block["type"] == "text" => {
                json!({ "role": role, "content": block["text"] })
            }
            _ => json!({ "role": role, "content": content }),
        })
        .collect();
    Ok((system, turns))
}

fn assistant_blocks(
    message: &Message,
    field: &dyn Fn(&str) -> String,
) -> Result<Vec<Value>, ProviderError> {
    if message.function_call.is_some() {
        return Err(ProviderError::unsupported(
            field(".function_call"),
            PROVIDER,
        ));
    }
    let mut blocks = content_blocks(&message.content, &field(".content"))?;
    if let Some(refusal) = message.refusal.as_ref().filter(|r| !r.is_empty()) {
        blocks.push(json!({"type": "text", "text": refusal}));
    }
    for (j, call) in message.tool_calls.iter().enumerate() {
        let input: Value = serde_json::from_str(&call.function.arguments).unwrap_or(Value::Null);
        let input = match input {
            Value::Object(_) => input,
            // An empty argument string is a call without arguments.
            Value::Null if call.function.arguments.trim().is_empty() => json!({}),
            _ => {
                return Err(ProviderError::Unsupported {
                    param: field(&format!(".tool_calls[{j}].function.arguments")),
                    message: "the Anthropic API needs tool arguments that are a JSON object".into(),
                });
            }
        };
        blocks.push(
            json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}),
        );
    }
    Ok(blocks)
}

/// Content as blocks; empty text is left out (the API refuses empty text blocks).
fn content_blocks(content: &Content, field: &str) -> Result<Vec<Value>, ProviderError> {
    let parts = match content {
        Content::Text(text) if text.is_empty() => return Ok(Vec::new()),
        Content::Text(text) => return Ok(vec![json!({"type": "text", "text": text})]),
        Content::Parts(parts) => parts,
    };
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let unsupported = || ProviderError::unsupported(format!("{field}[{j}]"), PROVIDER);
        let block = match part {
            Part::Text { text } | Part::Refusal { refusal: text } if text.is_empty() => continue,
            Part::Text { text } | Part::Refusal { refusal: text } => {
                json!({"type": "text", "text": text})
            }
            Part::ImageUrl { image_url } => {
                json!({"type": "image", "source": source(&image_url.url)})
            }
            Part::File { file } => {
                let data = file.file_data.as_deref().ok_or_else(unsupported)?;
                if data_url(data).is_none() {
                    return Err(unsupported());
                }
                json!({"type": "document", "source": source(data)})
            }
            Part::InputAudio { .. } => return Err(unsupported()),
        };
        blocks.push(block);
    }
    Ok(blocks)
}

/// A `data:` URL travels as base64 with its media type; any other URL by reference.
fn source(url: &str) -> Value {
    match data_url(url) {
        Some((media_type, data)) => {
            json!({"type": "base64", "media_type": media_type, "data": data})
        }
        None => json!({"type": "url", "url": url}),
    }
}
