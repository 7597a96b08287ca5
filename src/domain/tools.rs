//! Function tools, the calls a model makes to them, and structured-output formats, in
//! OpenAI's chat format (which is also how they are stored and forwarded).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::error::{DomainError, DomainResult};

/// One call an assistant turn makes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as the model wrote it (it may not even be valid JSON).
    #[serde(default)]
    pub arguments: String,
}

fn function_type() -> String {
    "function".to_string()
}

/// A tool the model may call. Only function tools exist in the chat format.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: ToolKind,
    pub function: FunctionDefinition,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolKind {
    Function,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionDefinition {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode, or one named function.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(ToolChoiceMode),
    Function {
        #[serde(rename = "type")]
        kind: ToolKind,
        function: NamedFunction,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolChoiceMode {
    None,
    Auto,
    Required,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

/// `response_format`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchema },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonSchema {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// The most tools one request may carry (OpenAI's own limit).
pub const MAX_TOOLS: usize = 128;

/// Function names as OpenAI accepts them: 1 to 64 of `a-z A-Z 0-9 _ -`.
pub fn is_function_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks tools, the tool choice and the response format together: names, counts, and a
/// named choice that names one of the tools.
pub fn validate(
    tools: &[Tool],
    choice: Option<&ToolChoice>,
    format: Option<&ResponseFormat>,
) -> DomainResult<()> {
    if tools.len() > MAX_TOOLS {
        return Err(DomainError::invalid(
            "tools",
            format!("at most {MAX_TOOLS} tools"),
        ));
    }
    for (i, tool) in tools.iter().enumerate() {
        if !is_function_name(&tool.function.name) {
            return Err(DomainError::invalid(
                format!("tools[{i}].function.name"),
                "1 to 64 characters: letters, digits, _ and -",
            ));
        }
        if tool
            .function
            .parameters
            .as_ref()
            .is_some_and(|p| !p.is_object())
        {
            return Err(DomainError::invalid(
                format!("tools[{i}].function.parameters"),
                "must be a JSON Schema object",
            ));
        }
        if tools[..i]
            .iter()
            .any(|other| other.function.name == tool.function.name)
        {
            return Err(DomainError::invalid(
                format!("tools[{i}].function.name"),
                "two tools have this name",
            ));
        }
    }
    if let Some(ToolChoice::Function { function, .. }) = choice
        && !tools.iter().any(|t| t.function.name == function.name)
    {
        return Err(DomainError::invalid(
            "tool_choice",
            "names a function that is not among the tools",
        ));
    }
    if let Some(ResponseFormat::JsonSchema { json_schema }) = format {
        if !is_function_name(&json_schema.name) {
            return Err(DomainError::invalid(
                "response_format.json_schema.name",
                "1 to 64 characters: letters, digits, _ and -",
            ));
        }
        if json_schema.schema.as_ref().is_some_and(|s| !s.is_object()) {
            return Err(DomainError::invalid(
                "response_format.json_schema.schema",
                "must be a JSON Schema object",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn tool(name: &str) -> Tool {
        serde_json::from_value(json!({"type": "function", "function": {"name": name}})).unwrap()
    }

    #[test]
    fn tool_choice_reads_modes_and_named_functions() {
        let auto: ToolChoice = serde_json::from_value(json!("auto")).unwrap();
        assert_eq!(auto, ToolChoice::Mode(ToolChoiceMode::Auto));
        let named: ToolChoice =
            serde_json::from_value(json!({"type": "function", "function": {"name": "f"}})).unwrap();
        assert!(matches!(named, ToolChoice::Function { .. }));
        assert!(serde_json::from_value::<ToolChoice>(json!("sometimes")).is_err());
    }

    #[test]
    fn validation_names_the_field_at_fault() {
        let field = |tools: &[Tool], choice: Option<ToolChoice>| match validate(
            tools,
            choice.as_ref(),
            None,
        ) {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(&[tool("ok"), tool("bad name")], None).as_deref(),
            Some("tools[1].function.name")
        );
        assert_eq!(
            field(&[tool("a"), tool("a")], None).as_deref(),
            Some("tools[1].function.name")
        );
        let other = ToolChoice::Function {
            kind: ToolKind::Function,
            function: NamedFunction { name: "b".into() },
        };
        assert_eq!(
            field(&[tool("a")], Some(other)).as_deref(),
            Some("tool_choice")
        );
        assert!(validate(&[tool("a")], None, None).is_ok());
    }

    #[test]
    fn response_formats_round_trip() {
        for value in [
            json!({"type": "text"}),
            json!({"type": "json_object"}),
            json!({"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}}),
        ] {
            let format: ResponseFormat = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(serde_json::to_value(&format).unwrap(), value);
        }
    }
}
