//! The domain: sessions, turns, token counting and the context builder. No I/O here.

pub mod compaction;
pub mod content;
pub mod context;
pub mod error;
pub mod export;
pub mod ids;
pub mod json;
pub mod message;
pub mod params;
pub mod scope;
pub mod session;
pub mod tokens;
pub mod tools;
pub mod transfer;
pub mod turns;
