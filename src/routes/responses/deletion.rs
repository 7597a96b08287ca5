//! What deleting a conversation item does to the stored turns. Turns are never removed
//! (positions, and so every id, stay put): a deleted turn becomes an empty tombstone. A
//! call and its output go together — a call without its output, or an output without its
//! call, is a conversation no provider accepts — and an assistant turn left with nothing
//! is a tombstone too.

use crate::domain::ids::{ItemPart, call_tag};
use crate::domain::{
    message::{Role, Turn},
    tools::ToolCall,
};

/// `turns` are the stored turns from position `first`; the item is `part` of the turn at
/// `index`. The replacements to make, `(position, as read, replacement)`; `None` when the
/// turn holds no such item.
pub fn changes(
    turns: &[Turn],
    first: u64,
    index: u64,
    part: &ItemPart,
) -> Option<Vec<(u64, Turn, Turn)>> {
    let at = |position: u64| turns.get(usize::try_from(position.checked_sub(first)?).ok()?);
    let turn = at(index).filter(|t| !t.deleted)?;
    let m = &turn.message;
    let change = |position: u64, old: &Turn, new: Turn| (position, old.clone(), new);
    match (part, m.role) {
        (ItemPart::Message, Role::Assistant) => {
            let mut emptied = turn.clone();
            emptied.message.content = Default::default();
            emptied.message.refusal = None;
            Some(vec![change(index, turn, settle(emptied))])
        }
        (ItemPart::Message, Role::User | Role::System | Role::Developer) => {
            Some(vec![change(index, turn, turn.tombstone())])
        }
        (ItemPart::Call(tag), Role::Assistant) => {
            let call = m.tool_calls.iter().find(|c| call_tag(&c.id) == *tag)?;
            let mut out = vec![change(index, turn, without_call(turn, call))];
            let answer = (index + 1..first + turns.len() as u64).find(|p| answers(at(*p), call));
            out.extend(answer.and_then(|p| Some(change(p, at(p)?, at(p)?.tombstone()))));
            Some(out)
        }
        (ItemPart::Output, Role::Tool) => {
            let mut out = vec![change(index, turn, turn.tombstone())];
            let id = m.tool_call_id.as_deref().unwrap_or_default();
            let asked = (first..index).rev().find_map(|p| {
                let t = at(p)?;
                let call = t.message.tool_calls.iter().find(|c| c.id == id)?;
                Some(change(p, t, without_call(t, call)))
            });
            out.extend(asked);
            Some(out)
        }
        _ => None,
    }
}

fn answers(turn: Option<&Turn>, call: &ToolCall) -> bool {
    turn.is_some_and(|t| {
        !t.deleted
            && t.message.role == Role::Tool
            && t.message.tool_call_id.as_deref() == Some(&call.id)
    })
}

fn without_call(turn: &Turn, call: &ToolCall) -> Turn {
    let mut kept = turn.clone();
    kept.message.tool_calls.retain(|c| c.id != call.id);
    settle(kept)
}

/// An assistant turn with nothing left is deleted whole.
fn settle(turn: Turn) -> Turn {
    let m = &turn.message;
    if m.content.is_empty() && m.refusal.is_none() && m.tool_calls.is_empty() {
        turn.tombstone()
    } else {
        turn
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use serde_json::json;

    use super::*;
    use crate::domain::message::{Message, message_id};

    fn conversation() -> Vec<Turn> {
        let messages: Vec<Message> = serde_json::from_value(json!([
            {"role": "user", "content": "weather in two cities?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "sun"},
            {"role": "tool", "tool_call_id": "c2", "content": "rain"},
            {"role": "assistant", "content": "Sun and rain."}
        ]))
        .unwrap();
        let t0 = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| Turn::new(message_id(i as u64), m, t0, 9))
            .collect()
    }

    #[test]
    fn a_call_goes_with_its_output_and_its_sibling_stays() {
        let turns = conversation();
        let changes = changes(&turns, 0, 1, &ItemPart::Call(call_tag("c1"))).unwrap();
        assert_eq!(changes.len(), 2);
        let (_, _, assistant) = &changes[0];
        assert_eq!(assistant.message.tool_calls.len(), 1);
        assert_eq!(assistant.message.tool_calls[0].id, "c2");
        let (position, _, output) = &changes[1];
        assert_eq!((*position, output.deleted, output.tokens), (2, true, 0));
        // The same pair, deleted from the output's side.
        let from_output = super::changes(&turns, 0, 3, &ItemPart::Output).unwrap();
        assert_eq!(from_output[1].0, 1);
        assert_eq!(from_output[1].2.message.tool_calls[0].id, "c1");
    }

    #[test]
    fn messages_become_tombstones_and_unknown_items_are_none() {
        let turns = conversation();
        let user = changes(&turns, 0, 0, &ItemPart::Message).unwrap();
        assert!(user[0].2.deleted && user[0].2.message.content.is_empty());
        let answer = changes(&turns[2..], 2, 4, &ItemPart::Message).unwrap();
        assert!(answer[0].2.deleted, "an assistant turn with nothing left");
        assert!(changes(&turns, 0, 0, &ItemPart::Output).is_none());
        assert!(changes(&turns, 0, 1, &ItemPart::Call(call_tag("c9"))).is_none());
        assert!(changes(&turns, 0, 9, &ItemPart::Message).is_none());
    }
}
