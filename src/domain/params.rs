//! The documented Chat Completions parameters besides messages, model, length and
//! temperature: validated as OpenAI documents them, then forwarded as given.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::domain::{
    error::{DomainError, DomainResult},
    tools::{FunctionDefinition, MAX_TOOLS, is_function_name},
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    /// Token id (as a string) → bias between -100 and 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// An end-user id for the provider's abuse monitoring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<ReasoningEffort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    /// Predicted output: `{"type": "content", "content": …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Vec<Modality>>,
    /// Audio output settings: `{"voice", "format"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// The deprecated forerunner of `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<FunctionDefinition>>,
    /// The deprecated forerunner of `tool_choice`: `"none"`, `"auto"` or `{"name"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionChoice>,
}

/// `stop`: one sequence or up to four.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

impl Stop {
    pub fn sequences(&self) -> Vec<String> {
        match self {
            Stop::One(one) => vec![one.clone()],
            Stop::Many(many) => many.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningEffort {
    None,
    Minimal,
    Low,
    Medium,
    High,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceTier {
    Auto,
    Default,
    Flex,
    Scale,
    Priority,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    Text,
    Audio,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FunctionChoice {
    Mode(FunctionMode),
    Named { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionMode {
    None,
    Auto,
}

const MAX_STOP_SEQUENCES: usize = 4;
const MAX_METADATA_PAIRS: usize = 16;

impl Params {
    /// Ranges and shapes the types alone do not say, naming the first field at fault.
    pub fn validate(&self) -> DomainResult<()> {
        in_range("top_p", self.top_p, 0.0, 1.0)?;
        in_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        in_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        if let Some(Stop::Many(many)) = &self.stop
            && many.len() > MAX_STOP_SEQUENCES
        {
            return Err(DomainError::invalid(
                "stop",
                format!("at most {MAX_STOP_SEQUENCES} sequences"),
            ));
        }
        if let Some(bias) = &self.logit_bias {
            let bad = bias.iter().find(|(token, value)| {
                token.parse::<u32>().is_err() || value.as_f64().is_none_or(|v| v.abs() > 100.0)
            });
            if let Some((token, _)) = bad {
                return Err(DomainError::invalid(
                    format!("logit_bias.{token}"),
                    "token ids map to numbers between -100 and 100",
                ));
            }
        }
        if let Some(top) = self.top_logprobs {
            if top > 20 {
                return Err(DomainError::invalid(
                    "top_logprobs",
                    "must be between 0 and 20",
                ));
            }
            if self.logprobs != Some(true) {
                return Err(DomainError::invalid(
                    "top_logprobs",
                    "needs `logprobs: true`",
                ));
            }
        }
        if let Some(metadata) = &self.metadata {
            check_metadata(metadata)?;
        }
        if let Some(functions) = &self.functions {
            if functions.len() > MAX_TOOLS {
                return Err(DomainError::invalid(
                    "functions",
                    format!("at most {MAX_TOOLS} functions"),
                ));
            }
            if let Some(i) = functions.iter().position(|f| !is_function_name(&f.name)) {
                return Err(DomainError::invalid(
                    format!("functions[{i}].name"),
                    "1 to 64 characters: letters, digits, _ and -",
                ));
            }
        }
        Ok(())
    }

    /// The parameters set, by name (what a provider that cannot honour them must refuse).
    pub fn set_names(&self) -> Vec<String> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// OpenAI's rule for `metadata`: at most 16 string values of up to 512 characters, keys
/// up to 64.
pub fn check_metadata(metadata: &Map<String, Value>) -> DomainResult<()> {
    let bad = metadata.len() > MAX_METADATA_PAIRS
        || metadata
            .iter()
            .any(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|v| v.len() > 512));
    if bad {
        return Err(DomainError::invalid(
            "metadata",
            "at most 16 string values of up to 512 characters, keys up to 64",
        ));
    }
    Ok(())
}

fn in_range(field: &str, value: Option<f64>, min: f64, max: f64) -> DomainResult<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(DomainError::invalid(
            field,
            format!("must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn field_of(value: Value) -> Option<String> {
        let params: Params = serde_json::from_value(value).unwrap();
        match params.validate() {
            Err(DomainError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        assert_eq!(field_of(json!({"top_p": 1.5})).as_deref(), Some("top_p"));
        assert_eq!(
            field_of(json!({"presence_penalty": -3})).as_deref(),
            Some("presence_penalty")
        );
        assert_eq!(
            field_of(json!({"stop": ["a", "b", "c", "d", "e"]})).as_deref(),
            Some("stop")
        );
        assert_eq!(
            field_of(json!({"logit_bias": {"50256": 101}})).as_deref(),
            Some("logit_bias.50256")
        );
        assert_eq!(
            field_of(json!({"top_logprobs": 3})).as_deref(),
            Some("top_logprobs")
        );
    }

    #[test]
    fn valid_parameters_serialize_back_as_given() {
        let given = json!({
            "top_p": 0.9, "stop": "END", "seed": 7, "presence_penalty": 0.5,
            "frequency_penalty": -0.5, "logit_bias": {"50256": -100}, "logprobs": true,
            "top_logprobs": 2, "user": "u-1", "metadata": {"k": "v"}, "store": true,
            "reasoning_effort": "low", "service_tier": "auto", "parallel_tool_calls": false,
            "modalities": ["text"], "function_call": {"name": "f"}
        });
        let params: Params = serde_json::from_value(given.clone()).unwrap();
        params.validate().unwrap();
        assert_eq!(serde_json::to_value(&params).unwrap(), given);
        assert!(params.set_names().contains(&"seed".to_string()));
    }
}
