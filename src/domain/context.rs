//! Chooses which history goes into the next prompt. Pure: token costs in, a plan out.
//!
//! The prompt is: system prompt, then the newest history turns that fit both the
//! message window and the token budget, then the new message. History is kept as a
//! contiguous suffix: skipping one large turn to fit an older one would show the model
//! a conversation with a hole in it.

use crate::domain::message::Turn;
use crate::domain::tokens::{REPLY_PRIMING_TOKENS, TOKENS_PER_MESSAGE};

/// Everything the builder needs, already counted.
#[derive(Clone, Copy, Debug)]
pub struct ContextInput<'a> {
    /// Cost of the system prompt as a chat message, if there is one.
    pub system_tokens: Option<u32>,
    /// The available tail of the history, oldest first.
    pub history: &'a [Turn],
    /// Cost of the new message as a chat message.
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
    /// System prompt + kept history + new message + reply priming.
    pub tokens: u32,
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
    let mut tokens = fixed_cost(input);
    if tokens > budget {
        return Err(ContextExceeded {
            max_tokens: input.budget,
            current_tokens: clamp(tokens),
        });
    }

    let max_turns = input.window.unwrap_or(usize::MAX);
    let mut kept = 0;
    for turn in input.history.iter().rev() {
        let with_turn = tokens + u64::from(turn.tokens);
        if kept == max_turns || with_turn > budget {
            break;
        }
        tokens = with_turn;
        kept += 1;
    }

    let first_kept = input.history.len() - kept;
    Ok(ContextPlan {
        first_kept,
        kept,
        dropped: first_kept,
        tokens: clamp(tokens),
    })
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
        let all_kept = self.dropped == 0;
        let window_open = input.window.is_none_or(|window| self.kept < window);
        let room_left =
            u64::from(input.budget).saturating_sub(u64::from(self.tokens)) >= MIN_TURN_TOKENS;
        all_kept && window_open && room_left
    }
}

/// What the prompt costs with no history at all.
fn fixed_cost(input: &ContextInput<'_>) -> u64 {
    u64::from(input.system_tokens.unwrap_or(0))
        + u64::from(input.new_message_tokens)
        + u64::from(REPLY_PRIMING_TOKENS)
}

fn clamp(tokens: u64) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::domain::message::Role;

    fn turns(costs: &[u32]) -> Vec<Turn> {
        costs
            .iter()
            .enumerate()
            .map(|(index, &tokens)| Turn {
                id: index.to_string(),
                role: if index % 2 == 0 {
                    Role::User
                } else {
                    Role::Assistant
                },
                content: String::new(),
                created_at: DateTime::<Utc>::UNIX_EPOCH,
                tokens,
            })
            .collect()
    }

    fn input(history: &[Turn], window: Option<usize>, budget: u32) -> ContextInput<'_> {
        ContextInput {
            system_tokens: Some(10),
            history,
            new_message_tokens: 5,
            window,
            budget,
        }
    }

    #[test]
    fn keeps_newest_turns_that_fit() {
        let history = turns(&[7, 7, 7, 7]);
        // fixed: 10 + 5 + 3 = 18; room for two turns of 7 within 35
        let plan = build_context(&input(&history, None, 35)).unwrap();
        assert_eq!(
            (plan.first_kept, plan.kept, plan.dropped, plan.tokens),
            (2, 2, 2, 32)
        );
        assert_eq!(plan.kept_turns(&history), &history[2..]);
    }

    #[test]
    fn stops_at_a_turn_too_big_instead_of_skipping_it() {
        let history = turns(&[1, 100, 1]);
        let plan = build_context(&input(&history, None, 50)).unwrap();
        assert_eq!(plan.kept, 1);
        assert_eq!(plan.first_kept, 2);
    }

    #[test]
    fn window_limits_history_messages() {
        let history = turns(&[1, 1, 1, 1]);
        let plan = build_context(&input(&history, Some(3), 1000)).unwrap();
        assert_eq!((plan.kept, plan.dropped), (3, 1));
        assert!(!plan.wants_more_history(&input(&history, Some(3), 1000)));
    }

    #[test]
    fn refuses_when_system_and_new_message_alone_are_over_budget() {
        let err = build_context(&input(&[], None, 17)).unwrap_err();
        assert_eq!(
            err,
            ContextExceeded {
                max_tokens: 17,
                current_tokens: 18
            }
        );
    }

    #[test]
    fn wants_more_only_while_everything_fit_and_room_remains() {
        let history = turns(&[4, 4]);
        let roomy = input(&history, Some(5), 100);
        assert!(build_context(&roomy).unwrap().wants_more_history(&roomy));
        let tight = input(&history, Some(5), 18 + 8 + 3);
        assert!(!build_context(&tight).unwrap().wants_more_history(&tight));
        let cut = input(&history, Some(5), 18 + 4);
        assert!(!build_context(&cut).unwrap().wants_more_history(&cut));
    }

    fn any_input() -> impl Strategy<Value = (Option<u32>, Vec<u32>, u32, Option<usize>, u32)> {
        (
            proptest::option::of(0u32..200),
            proptest::collection::vec(4u32..120, 0..40),
            4u32..200,
            proptest::option::of(0usize..30),
            0u32..2000,
        )
    }

    proptest! {
        #[test]
        fn plan_respects_every_rule((system, costs, new_message, window, budget) in any_input()) {
            let history = turns(&costs);
            let input = ContextInput {
                system_tokens: system,
                history: &history,
                new_message_tokens: new_message,
                window,
                budget,
            };
            let fixed = system.unwrap_or(0) + new_message + REPLY_PRIMING_TOKENS;
            let plan = match build_context(&input) {
                Ok(plan) => plan,
                Err(err) => {
                    prop_assert!(fixed > budget);
                    prop_assert_eq!(err, ContextExceeded { max_tokens: budget, current_tokens: fixed });
                    return Ok(());
                }
            };
            let kept_turns = plan.kept_turns(&history);
            let kept_cost: u32 = kept_turns.iter().map(|turn| turn.tokens).sum();

            prop_assert!(plan.tokens <= budget);
            prop_assert_eq!(plan.tokens, fixed + kept_cost);
            prop_assert_eq!(plan.kept + plan.dropped, history.len());
            prop_assert_eq!(kept_turns.len(), plan.kept);
            prop_assert_eq!(plan.first_kept, plan.dropped);
            // a contiguous newest suffix, in original order
            prop_assert_eq!(kept_turns, &history[history.len() - plan.kept..]);
            prop_assert!(window.is_none_or(|window| plan.kept <= window));

            if plan.dropped > 0 {
                let next_older = &history[plan.first_kept - 1];
                let window_full = window == Some(plan.kept);
                prop_assert!(window_full || plan.tokens + next_older.tokens > budget);
            }
        }
    }
}
