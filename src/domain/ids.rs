//! Ids of the Responses and Conversations APIs, over the ids the sessions API shows.
//!
//! A conversation is a session: `conv_<session id>`. A response is the answer turn of a
//! send and the turns that asked for it: `resp_<session id>_<answer turn id>`. Items are
//! stored turns: `msg_<turn id>` (a message), `fc_<turn id>_<tag>` (a call of an assistant
//! turn, `tag` from its call id, so deleting a sibling call renames nothing),
//! `fco_<turn id>` (a tool turn, the call's output). So every record is found from its id
//! alone, with no index to keep, and a conversation made through one API is the same
//! record through the other.

use sha2::{Digest, Sha256};

use crate::domain::{message::message_index, session::is_session_id};

pub fn conversation_id(session: &str) -> String {
    format!("conv_{session}")
}

pub fn session_of_conversation(id: &str) -> Option<&str> {
    id.strip_prefix("conv_").filter(|s| is_session_id(s))
}

pub fn response_id(session: &str, answer: &str) -> String {
    format!("resp_{session}_{answer}")
}

/// The session and the answer turn a response id names. Turn ids are
/// `<hex position>_<32 hex digits>`, so the id splits from its end.
pub fn parse_response_id(id: &str) -> Option<(&str, &str)> {
    let rest = id.strip_prefix("resp_")?;
    let (head, random) = rest.rsplit_once('_')?;
    let (session, position) = head.rsplit_once('_')?;
    let turn = &rest[session.len() + 1..];
    let valid = is_session_id(session)
        && random.len() == 32
        && message_index(turn).is_some()
        && !position.is_empty();
    valid.then_some((session, turn))
}

/// Which part of a turn an item is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemPart {
    /// The turn's message (its text, parts or refusal).
    Message,
    /// A tool call of an assistant turn, by the tag of its call id ([`call_tag`]).
    Call(String),
    /// A tool turn: a call's output.
    Output,
}

/// Eight hex digits of a digest of a call id: a call id may hold any character.
pub fn call_tag(call_id: &str) -> String {
    hex::encode(&Sha256::digest(call_id.as_bytes())[..4])
}

pub fn item_id(turn: &str, part: &ItemPart) -> String {
    match part {
        ItemPart::Message => format!("msg_{turn}"),
        ItemPart::Call(tag) => format!("fc_{turn}_{tag}"),
        ItemPart::Output => format!("fco_{turn}"),
    }
}

pub fn call_item_id(turn: &str, call_id: &str) -> String {
    item_id(turn, &ItemPart::Call(call_tag(call_id)))
}

/// The turn (and its position) and the part an item id names.
pub fn parse_item_id(id: &str) -> Option<(u64, &str, ItemPart)> {
    let (turn, part) = if let Some(turn) = id.strip_prefix("msg_") {
        (turn, ItemPart::Message)
    } else if let Some(turn) = id.strip_prefix("fco_") {
        (turn, ItemPart::Output)
    } else {
        let rest = id.strip_prefix("fc_")?;
        let (turn, tag) = rest.rsplit_once('_')?;
        let tag_ok = tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit());
        (turn, ItemPart::Call(tag_ok.then(|| tag.to_string())?))
    };
    Some((message_index(turn)?, turn, part))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::domain::message::message_id;

    #[test]
    fn ids_round_trip_and_refuse_what_they_did_not_make() {
        let turn = message_id(0x1f);
        for session in ["0123456789abcdef0123456789abcdef", "legacy_42-a", "a_b_c"] {
            let id = response_id(session, &turn);
            assert_eq!(
                parse_response_id(&id),
                Some((session, turn.as_str())),
                "{id}"
            );
            assert_eq!(
                session_of_conversation(&conversation_id(session)),
                Some(session)
            );
        }
        assert_eq!(parse_response_id("resp_abc"), None);
        assert_eq!(parse_response_id("resp_x_1f_short"), None);
        assert_eq!(session_of_conversation("conv_{tag}"), None);
        for part in [
            ItemPart::Message,
            ItemPart::Call(call_tag("call_x")),
            ItemPart::Output,
        ] {
            assert_eq!(
                parse_item_id(&item_id(&turn, &part)),
                Some((0x1f, turn.as_str(), part))
            );
        }
        assert_ne!(call_tag("call_a"), call_tag("call_b"));
        assert_eq!(parse_item_id("fc_nope"), None);
        assert_eq!(parse_item_id("item_123"), None);
    }
}
