//! The domain's own failures. The pure layer knows nothing of HTTP: [`crate::error`]
//! maps these, once, into the contract's error bodies.

/// What went wrong in a domain rule or decoding step.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// A value breaks a rule; `field` names it when one field is at fault.
    #[error("invalid request")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// Something we produced could not be serialized: a bug, never the caller's fault.
    #[error("encoding failed: {0}")]
    Encoding(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An invalid value no single field is to blame for (malformed JSON, say).
    pub fn malformed(message: impl Into<String>) -> Self {
        DomainError::Invalid {
            message: message.into(),
            field: None,
        }
    }

    /// Item errors are read without their HTTP envelope: the message starts with the field.
    pub fn prefixed(self) -> Self {
        match self {
            DomainError::Invalid {
                message,
                field: Some(field),
            } if !message.starts_with(&field) => DomainError::Invalid {
                message: format!("{field}: {message}"),
                field: Some(field),
            },
            other => other,
        }
    }
}

/// Turns a serde error into [`DomainError::Invalid`], naming the field at fault when serde
/// knows it. Messages keep the kind of what was wrong, never the value sent (see
/// [`without_value`]), and speak JSON, not Rust (see [`crate::domain::json`]).
pub fn from_json_error(err: serde_path_to_error::Error<serde_json::Error>) -> DomainError {
    use serde_json::error::Category;
    let path = err.path().to_string();
    let inner = err.into_inner();
    let message = inner.to_string();
    let message = message
        .rsplit_once(" at line ")
        .map_or(message.as_str(), |(head, _)| head);
    match inner.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            DomainError::malformed(format!("malformed JSON: {inner}"))
        }
        Category::Data => invalid_at(&path, message),
    }
}

/// A decoder's complaint about the value at `path` (`.` or `?`: the whole document).
pub fn invalid_at(path: &str, message: &str) -> DomainError {
    let parent = (path != "." && path != "?").then(|| path.to_string());
    // A missing field is reported at the object that lacks it: name the field itself.
    if let Some(name) = quoted_after(message, "missing field `") {
        let field = match parent {
            Some(parent) => format!("{parent}.{name}"),
            None => name.to_string(),
        };
        return DomainError::invalid(field, "this field is required");
    }
    match quoted_after(message, "unknown field `") {
        // A name that is not a plain identifier is request content: not quoted back.
        Some(name) if !is_plain_name(name) => DomainError::Invalid {
            message: "unknown field".into(),
            field: None,
        },
        _ => DomainError::Invalid {
            message: in_json_words(&without_value(message)),
            field: parent,
        },
    }
}

/// The text between `prefix` and the next backquote.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// Field names that may be echoed: short, and letters, digits, `_`, `-` and `.` only.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

/// serde quotes the offending value ("invalid type: string \"…\", expected u64"); the
/// message keeps only its kind, so no request content ends up in an error body.
fn without_value(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let kind = found.split_whitespace().next().unwrap_or("value");
            return format!("{prefix}{kind}, expected {expected}");
        }
    }
    if let Some(rest) = message.strip_prefix("unknown variant `")
        && let Some((_, expected)) = rest.split_once("`, expected ")
    {
        return format!("unknown variant, expected {expected}");
    }
    message.to_string()
}

/// Rust's number types, as a JSON client knows them.
fn in_json_words(message: &str) -> String {
    let Some((head, expected)) = message.rsplit_once("expected ") else {
        return message.to_string();
    };
    let words = match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "char" => "a one-character string",
        other => other,
    };
    format!("{head}expected {words}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn serde_messages_lose_the_offending_value() {
        let cases = [
            (
                r#"{"a": "secret text"}"#,
                "invalid type: string, expected a non-negative integer",
            ),
            (
                r#"{"a": -7}"#,
                "invalid value: integer, expected a non-negative integer",
            ),
        ];
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Body {
            a: u64,
        }
        for (json, expected) in cases {
            let mut de = serde_json::Deserializer::from_str(json);
            let err = serde_path_to_error::deserialize::<_, Body>(&mut de).unwrap_err();
            let DomainError::Invalid { message, field } = from_json_error(err) else {
                panic!("not an invalid-request error");
            };
            assert!(message.starts_with(expected), "{message}");
            assert!(!message.contains("u64"), "{message}");
            assert_eq!(field.as_deref(), Some("a"));
            assert!(!message.contains("secret") && !message.contains("-7"));
        }
    }
}
