//! The send flow of a conversation turn, shared by the session API and the OpenAI relay.
//!
//! `prepare` takes the session's lease and builds the prompt, `call_chain` asks the
//! models, `finish` stores the user and assistant turns in one atomic commit. Nothing is
//! stored unless the model answered in full.

pub mod answer;
pub mod append;
pub mod compaction;
pub mod context;
mod finish;
mod input;
pub mod lease;
pub mod outcome;
mod refit;
pub mod send;
pub mod stream;
pub mod upstream;
