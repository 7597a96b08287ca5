//! The turns a send may add to a conversation.
//!
//! A send brings a user turn, or the tool results that answer the last assistant turn's
//! calls (then, optionally, a user turn). A stored conversation must stay one every
//! provider accepts, so when the last answer called tools, the next send must answer
//! every one of those calls before anything else, and a result must answer a call that
//! is still open. The assistant's own turns are written by the service, and the history
//! is the session's: a client that sends more (its whole history, say) is told so rather
//! than having it stored twice.

use crate::domain::{
    content::{Content, Part, data_url},
    error::{DomainError, DomainResult},
    message::{Message, Role, Turn},
    tools::ToolCall,
};

/// The most turns one send may add.
pub const MAX_NEW_TURNS: usize = 64;

/// The calls of the newest turn still waiting for their results.
pub fn pending_calls(history_tail: &[Turn]) -> &[ToolCall] {
    match history_tail.last() {
        Some(last) if last.message.role == Role::Assistant => &last.message.tool_calls,
        _ => &[],
    }
}

/// Names the field of the `index`-th new turn (`rest` is what follows, e.g. `.content`):
/// `messages[2].content` when the turns came as `messages`, `content` when as `content`.
pub type FieldName<'a> = &'a dyn Fn(usize, &str) -> String;

/// Field names of turns sent as `messages: [...]`.
pub fn field_in_messages(index: usize, rest: &str) -> String {
    format!("messages[{index}]{rest}")
}

/// Field names of the one user turn sent as `content`.
pub fn field_in_content(_: usize, rest: &str) -> String {
    format!("content{}", rest.strip_prefix(".content").unwrap_or(""))
}

/// What a batch of new turns may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batch {
    /// A send of the sessions API or the relay: results of the open calls, then at most
    /// one user turn.
    Delta,
    /// Conversation items (the Responses and Conversations APIs): any turns, assistant
    /// turns and their calls included, as long as every call is answered before the
    /// next turn that is not a result.
    Items,
}

pub fn check_new_turns(
    turns: &[Message],
    pending: &[ToolCall],
    max_bytes: usize,
    field: FieldName<'_>,
    batch: Batch,
) -> DomainResult<()> {
    if turns.is_empty() {
        return Err(DomainError::invalid(field(0, ""), "at least one turn"));
    }
    if turns.len() > MAX_NEW_TURNS {
        return Err(DomainError::invalid(
            "messages",
            format!("at most {MAX_NEW_TURNS} turns per send"),
        ));
    }
    if batch == Batch::Delta && turns.iter().filter(|t| t.role != Role::Tool).count() > 1 {
        return Err(DomainError::invalid(
            "messages",
            "send only the new turns (the results of the last answer's tool calls, then at most one user message): the session holds the history",
        ));
    }
    let mut open: Vec<&str> = pending.iter().map(|call| call.id.as_str()).collect();
    for (i, turn) in turns.iter().enumerate() {
        if turn.role != Role::Tool && !open.is_empty() {
            return Err(DomainError::invalid(
                field(i, ".role"),
                format!(
                    "the last answer called tools; send a `tool` turn with the result of each first ({})",
                    open.join(", ")
                ),
            ));
        }
        check_turn(turn, i, max_bytes, field, batch)?;
        open.extend(turn.tool_calls.iter().map(|call| call.id.as_str()));
        if turn.role == Role::Tool {
            let id = turn.tool_call_id.as_deref().unwrap_or("");
            let Some(at) = open.iter().position(|open_id| *open_id == id) else {
                return Err(DomainError::invalid(
                    field(i, ".tool_call_id"),
                    "answers no pending tool call",
                ));
            };
            open.remove(at);
        }
    }
    // Items may end with calls the client has not answered yet: they stay open, and the
    // next turn must answer them.
    let may_stay_open = batch == Batch::Items && turns.last().is_some_and(Message::calls_tools);
    if !open.is_empty() && !may_stay_open {
        return Err(DomainError::invalid(
            field(turns.len() - 1, ""),
            format!(
                "these tool calls still need their results: {}",
                open.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_turn(
    turn: &Message,
    i: usize,
    max_bytes: usize,
    field: FieldName<'_>,
    batch: Batch,
) -> DomainResult<()> {
    let items = batch == Batch::Items;
    let refused = match turn.role {
        Role::Assistant if !items => {
            Some("the session stores the assistant's turns itself; send user or tool turns")
        }
        Role::System | Role::Developer if !items => {
            Some("the session's system prompt instructs the model: change it with PATCH")
        }
        Role::Function => Some("sessions keep tool calls, not the deprecated function calls"),
        _ => None,
    };
    if let Some(message) = refused {
        return Err(DomainError::invalid(field(i, ".role"), message));
    }
    if matches!(turn.role, Role::User | Role::System | Role::Developer) {
        if turn.content.is_empty() {
            return Err(DomainError::invalid(
                field(i, ".content"),
                "must not be empty",
            ));
        }
        if turn.tool_call_id.is_some() {
            return Err(DomainError::invalid(
                field(i, ".tool_call_id"),
                "only a tool turn answers a call",
            ));
        }
    }
    let assistants = turn.role == Role::Assistant;
    if !assistants
        && (!turn.tool_calls.is_empty() || turn.function_call.is_some() || turn.refusal.is_some())
    {
        return Err(DomainError::invalid(
            field(i, ""),
            "tool calls and refusals are the assistant's",
        ));
    }
    let size = turn.content.byte_len();
    if size > max_bytes {
        return Err(DomainError::invalid(
            field(i, ".content"),
            format!("at most {max_bytes} bytes"),
        ));
    }
    check_parts(&turn.content, &|rest| field(i, &format!(".content{rest}")))
}

/// Images must be fetchable or inline; refusals belong to the assistant.
fn check_parts(content: &Content, field: &dyn Fn(&str) -> String) -> DomainResult<()> {
    let Content::Parts(parts) = content else {
        return Ok(());
    };
    for (j, part) in parts.iter().enumerate() {
        let bad = match part {
            Part::ImageUrl { image_url } => {
                let url = image_url.url.as_str();
                let inline = data_url(url).is_some_and(|(media, _)| media.starts_with("image/"));
                (!inline && !url.starts_with("https://") && !url.starts_with("http://"))
                    .then_some("an http(s) URL or a data:image/…;base64 URL")
            }
            Part::File { file } if file.file_data.is_none() && file.file_id.is_none() => {
                Some("needs `file_data` or `file_id`")
            }
            Part::Refusal { .. } => Some("refusals are the assistant's"),
            Part::Text { .. } | Part::InputAudio { .. } | Part::File { .. } => None,
        };
        if let Some(message) = bad {
            return Err(DomainError::invalid(field(&format!("[{j}]")), message));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;

    fn messages(value: serde_json::Value) -> Vec<Message> {
        serde_json::from_value(value).unwrap()
    }

    fn calls(ids: &[&str]) -> Vec<ToolCall> {
        ids.iter()
            .map(|id| serde_json::from_value(json!({"id": id, "type": "function", "function": {"name": "f", "arguments": "{}"}})).unwrap())
            .collect()
    }

    fn field_of(turns: &[Message], pending: &[ToolCall]) -> Option<String> {
        let name = |i: usize, rest: &str| format!("messages[{i}]{rest}");
        match check_new_turns(turns, pending, 1000, &name, Batch::Delta) {
            Err(DomainError::Invalid { field, .. }) => field,
            Ok(()) => None,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn results_must_answer_open_calls_and_all_of_them_first() {
        let pending = calls(&["call_a", "call_b"]);
        let both = messages(json!([
            {"role": "tool", "tool_call_id": "call_b", "content": "2"},
            {"role": "tool", "tool_call_id": "call_a", "content": ""},
            {"role": "user", "content": "and now?"}
        ]));
        assert_eq!(field_of(&both, &pending), None);
        let unknown = messages(json!([{"role": "tool", "tool_call_id": "call_x", "content": "1"}]));
        assert_eq!(
            field_of(&unknown, &pending).as_deref(),
            Some("messages[0].tool_call_id")
        );
        let twice = messages(json!([
            {"role": "tool", "tool_call_id": "call_a", "content": "1"},
            {"role": "tool", "tool_call_id": "call_a", "content": "1"}
        ]));
        assert_eq!(
            field_of(&twice, &pending).as_deref(),
            Some("messages[1].tool_call_id")
        );
        let skipped = messages(json!([{"role": "user", "content": "never mind"}]));
        assert_eq!(
            field_of(&skipped, &pending).as_deref(),
            Some("messages[0].role")
        );
        let partial = messages(json!([{"role": "tool", "tool_call_id": "call_a", "content": "1"}]));
        assert_eq!(field_of(&partial, &pending).as_deref(), Some("messages[0]"));
        assert_eq!(
            field_of(&unknown, &[]).as_deref(),
            Some("messages[0].tool_call_id")
        );
    }

    #[test]
    fn a_resent_history_is_refused_as_a_whole() {
        let history = messages(json!([
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"}
        ]));
        assert_eq!(field_of(&history, &[]).as_deref(), Some("messages"));
        let system = messages(json!([{"role": "system", "content": "new rules"}]));
        assert_eq!(field_of(&system, &[]).as_deref(), Some("messages[0].role"));
    }

    #[test]
    fn assistant_turns_empty_content_and_bad_images_are_refused() {
        let assistant = messages(json!([{"role": "assistant", "content": "hi"}]));
        assert_eq!(
            field_of(&assistant, &[]).as_deref(),
            Some("messages[0].role")
        );
        let empty = messages(json!([{"role": "user", "content": ""}]));
        assert_eq!(
            field_of(&empty, &[]).as_deref(),
            Some("messages[0].content")
        );
        let image = messages(json!([{"role": "user", "content": [
            {"type": "text", "text": "see"},
            {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
        ]}]));
        assert_eq!(
            field_of(&image, &[]).as_deref(),
            Some("messages[0].content[1]")
        );
        let ok = messages(json!([{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "high"}}
        ]}]));
        assert_eq!(field_of(&ok, &[]), None);
        assert_eq!(field_of(&[], &[]).as_deref(), Some("messages[0]"));
    }

    #[test]
    fn items_may_hold_assistant_turns_whose_calls_are_answered_in_order() {
        let name = |i: usize, rest: &str| format!("input[{i}]{rest}");
        let check = |value| check_new_turns(&messages(value), &[], 1000, &name, Batch::Items);
        let paired = json!([
            {"role": "developer", "content": "be brief"},
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."}
        ]);
        assert!(check(paired).is_ok());
        let open_at_the_end = json!([
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
        ]);
        assert!(check(open_at_the_end).is_ok(), "answered by the next turn");
        let skipped = json!([
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "user", "content": "never mind"}
        ]);
        assert!(
            matches!(check(skipped), Err(DomainError::Invalid { field: Some(f), .. }) if f == "input[1].role")
        );
    }

    #[test]
    fn only_an_assistant_turn_leaves_calls_pending() {
        let turn = |message: Message| {
            Turn::new(
                "0_x".into(),
                message,
                chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
                1,
            )
        };
        let mut answer = Message::text(Role::Assistant, "");
        answer.tool_calls = calls(&["call_1"]);
        assert_eq!(pending_calls(&[turn(answer.clone())]).len(), 1);
        assert!(pending_calls(&[turn(answer), turn(Message::text(Role::User, "x"))]).is_empty());
        assert!(pending_calls(&[]).is_empty());
    }
}
