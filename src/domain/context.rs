//! Chooses which history goes into the next prompt. Pure: token costs in, a plan out.
//!
//! The prompt is: system prompt (and tool definitions), then the newest history turns
//! that fit both the message window and the token budget, then the new turns. History is
//! kept as a contiguous suffix: skipping one large turn to fit an older one would show the
//! model a conversation with a hole in it. And it is kept in *units*: an assistant turn
//! that calls tools and the tool turns that answer it are kept or dropped together,
//! because a call without its result (or a result without its call) is a conversation
//! every provider refuses.

use crate::domain::message::Turn;
use crate::domain::tokens::{REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE};

/// Everything the builder needs, already counted.
#[derive(Clone, Copy, Debug)]
pub struct ContextInput<'a> {
    /// What precedes the history: the system prompt and the tool definitions.
    pub prefix_tokens: u32,
    /// The available tail of the history, oldest first.
    pub history: &'a [Turn],
    /// Whether `history` starts at the conversation's first turn (else older turns exist).
    pub history_complete: bool,
    /// The newest history turns that must be kept whatever it costs: the assistant turn
    /// whose calls the new turns answer.
    pub pinned: usize,
    /// Cost of the new turns.
    pub new_message_tokens: u32,
    /// The most history messages allowed; `None` for no limit.
    pub window: Option<usize>,
    /// The most prompt tokens allowed.
    pub budget: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContextPlan {
    /// Index in `history` of the oldest kept turn (`history.len()` when none is kept).
    pub first_kept: usize,
    pub kept: usize,
    /// History turns of the input that were left out.
    pub dropped: usize,
    /// Prefix + kept history + new turns + reply priming.
    pub tokens: u32,
    /// The oldest turns given start in the middle of a unit whose beginning is older
    /// still: they cannot be judged without it.
    pub cut_unit: bool,
    /// Turns were left out because the budget could not hold them (not the window).
    pub over_budget: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the prompt needs {current_tokens} tokens even without history; the budget is {max_tokens}"
)]
pub struct ContextExceeded {
    pub max_tokens: u32,
    pub current_tokens: u32,
}

/// The cheapest any turn can be: framing plus a one-token role, empty content.
const MIN_TURN_TOKENS: u64 = TOKENS_PER_MESSAGE as u64 + 1;

pub fn build_context(input: &ContextInput<'_>) -> Result<ContextPlan, ContextExceeded> {
    let budget = u64::from(input.budget);
    let pinned = input.pinned.min(input.history.len());
    let selectable = input.history.len() - pinned;
    let mut tokens = fixed_cost(input) + cost(&input.history[selectable..]);
    if tokens > budget {
        return Err(ContextExceeded {
            max_tokens: input.budget,
            current_tokens: clamp(tokens),
        });
    }

    let max_turns = input
        .window
        .map_or(usize::MAX, |w| w.saturating_sub(pinned));
    let (mut first_kept, mut cut_unit, mut over_budget) = (selectable, false, false);
    while first_kept > 0 {
        let Some(start) = unit_start(input.history, first_kept, input.history_complete) else {
            cut_unit = true;
            break;
        };
        let with_unit = tokens + cost(&input.history[start..first_kept]);
        if selectable - start > max_turns {
            break;
        }
        if with_unit > budget {
            over_budget = true;
            break;
        }
        tokens = with_unit;
        first_kept = start;
    }

    let kept = input.history.len() - first_kept;
    Ok(ContextPlan {
        first_kept,
        kept,
        dropped: first_kept,
        tokens: clamp(tokens),
        cut_unit,
        over_budget,
    })
}

/// Where the unit that ends just before `end` begins: an assistant turn with calls and
/// the results after it, or a single turn. `None` when the results run back to the start
/// of an incomplete history, so their calls are not in it. Results with no calls before
/// them (history written before tool calls were kept) form a unit of their own.
pub(crate) fn unit_start(history: &[Turn], end: usize, complete: bool) -> Option<usize> {
    let mut start = end - 1;
    while history[start].message.role.is_call_result() {
        if start == 0 {
            return complete.then_some(0);
        }
        start -= 1;
    }
    let has_results = start + 1 < end;
    if has_results && !history[start].message.calls_tools() {
        return Some(start + 1);
    }
    Some(start)
}

impl ContextPlan {
    pub fn kept_turns<'a>(&self, history: &'a [Turn]) -> &'a [Turn] {
        history.get(self.first_kept..).unwrap_or_default()
    }

    /// Whether an older turn could still have been added, had the input held one.
    ///
    /// The caller reads history from the store in growing chunks from the tail, so a
    /// send costs what the context needs rather than what the whole history weighs.
    /// It fetches more only while this is true and the store has older turns.
    pub fn wants_more_history(&self, input: &ContextInput<'_>) -> bool {
        let all_kept = self.dropped == 0 || self.cut_unit;
        let window_open = input.window.is_none_or(|window| self.kept < window);
        let room_left =
            u64::from(input.budget).saturating_sub(u64::from(self.tokens)) >= MIN_TURN_TOKENS;
        all_kept && window_open && room_left
    }
}

/// What the prompt costs with no history at all.
fn fixed_cost(input: &ContextInput<'_>) -> u64 {
    u64::from(input.prefix_tokens)
        + u64::from(input.new_message_tokens)
        + u64::from(REPLY_PRIMING_TOKENS)
}

fn cost(turns: &[Turn]) -> u64 {
    turns.iter().map(|turn| u64::from(turn.tokens)).sum()
}

fn clamp(tokens: u64) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
