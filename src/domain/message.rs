//! One stored turn of a conversation.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A turn as stored: its token count is computed once, when it is written, so that
/// building a context never re-tokenizes history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    pub id: String,
    pub role: Role,
    pub content: String,
    pub created_at: DateTime<Utc>,
    /// Tokens this turn costs inside a chat prompt, per-message overhead included.
    pub tokens: u32,
}

/// Message ids carry their position so `?after=<id>` finds its place in one read:
/// `<index in hex>_<32 hex digits of randomness>`. Clients treat them as opaque.
pub fn message_id(index: u64) -> String {
    format!("{index:x}_{}", crate::domain::session::new_id())
}

/// The position a message id claims; the caller checks the id really sits there.
pub fn message_index(id: &str) -> Option<u64> {
    let (index, random) = id.split_once('_')?;
    if random.len() != 32 || !random.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(index, 16).ok()
}
