//! Which turns a compaction folds, in which chunks, and the summarizer's prompt. Pure.
//!
//! Cuts fall only between units (an assistant turn that calls tools and the results that
//! answer it are one unit, see [`crate::domain::context`]): a summary boundary inside a
//! unit would leave a call or a result alone on one side of it.

use std::ops::Range;

use crate::domain::{
    context::unit_start,
    message::{Message, Role, Turn},
};

/// How many of `turns` (the turns after the watermark, oldest first) to fold so that
/// the newest units costing at most `keep_tokens` stay unfolded. The newest unit always
/// stays: it is what the next send continues.
pub fn fold_len(turns: &[Turn], keep_tokens: u64) -> usize {
    let (mut first_kept, mut kept) = (turns.len(), 0u64);
    while first_kept > 0 {
        let Some(start) = unit_start(turns, first_kept, true) else {
            break;
        };
        let cost: u64 = turns[start..first_kept]
            .iter()
            .map(|t| u64::from(t.tokens))
            .sum();
        if first_kept < turns.len() && kept + cost > keep_tokens {
            break;
        }
        kept += cost;
        first_kept = start;
    }
    first_kept
}

/// `turns` split into consecutive chunks of at most `capacity` tokens each, oldest first,
/// cut between units only. A unit larger than `capacity` is a chunk of its own (its
/// transcript is shortened to fit, see [`transcript`]): nothing is ever skipped.
pub fn chunks(turns: &[Turn], capacity: u64) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut end = turns.len();
    while end > 0 {
        let start = unit_start(turns, end, true).unwrap_or(0);
        units.push(start..end);
        end = start;
    }
    units.reverse();
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut tokens = 0u64;
    for unit in units {
        let cost: u64 = turns[unit.clone()]
            .iter()
            .map(|t| u64::from(t.tokens))
            .sum();
        match out.last_mut() {
            Some(last) if tokens + cost <= capacity => {
                last.end = unit.end;
                tokens += cost;
            }
            _ => {
                out.push(unit);
                tokens = cost;
            }
        }
    }
    out
}

pub const DEFAULT_INSTRUCTIONS: &str = "You maintain the running summary of a conversation \
between a user and an assistant. You receive the current summary (possibly empty) and the \
next turns, oldest first. Answer with the updated summary only: keep every fact, name, \
number, decision, open question and tool result that may matter later, in chronological \
order; drop pleasantries. Write plain prose or terse bullet points.";

/// The summarizer's messages: instructions, then the previous summary and the turns to
/// fold on top of it, as one user turn. `max_chars` bounds the transcript (for a single
/// unit larger than the summarizer's window).
pub fn summarizer_prompt(
    instructions: Option<&str>,
    previous: Option<&str>,
    turns: &[Turn],
    max_summary_tokens: u32,
    max_chars: usize,
) -> Vec<Message> {
    let mut user = String::new();
    user.push_str("Current summary:\n");
    user.push_str(previous.unwrap_or("(none yet)"));
    user.push_str("\n\nNext turns, oldest first:\n");
    user.push_str(&transcript(turns, max_chars));
    user.push_str(&format!(
        "\nAnswer with the updated summary, at most {max_summary_tokens} tokens."
    ));
    vec![
        Message::text(Role::System, instructions.unwrap_or(DEFAULT_INSTRUCTIONS)),
        Message::text(Role::User, user),
    ]
}

/// The turns as plain text, one block per turn, oldest first; deleted turns left out.
pub fn transcript(turns: &[Turn], max_chars: usize) -> String {
    let mut out = String::new();
    for turn in turns.iter().filter(|t| !t.deleted) {
        let m = &turn.message;
        out.push_str(m.role.as_str());
        if let Some(id) = &m.tool_call_id {
            out.push_str(&format!(" (result of {id})"));
        }
        out.push_str(": ");
        out.push_str(&m.content.text());
        for call in &m.tool_calls {
            out.push_str(&format!(
                "\n  calls {} [{}]: {}",
                call.function.name, call.id, call.function.arguments
            ));
        }
        out.push('\n');
    }
    if out.len() > max_chars {
        let mut cut = max_chars;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("\n[…shortened to fit the summarizer]\n");
    }
    out
}

/// Output that must not become a summary: nothing, or a refusal.
pub fn acceptable(answer: &Message) -> bool {
    answer.refusal.is_none() && !answer.content.text().trim().is_empty()
}

#[cfg(test)]
mod tests;
