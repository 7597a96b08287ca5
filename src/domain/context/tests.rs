#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::domain::{
    message::{Message, Role},
    tools::{FunctionCall, ToolCall},
};

/// What a generated turn is, for building conversations.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    User,
    Answer,
    Calls,
    Result,
}

fn turn(index: usize, kind: Kind, tokens: u32) -> Turn {
    let mut message = match kind {
        Kind::User => Message::text(Role::User, ""),
        Kind::Answer | Kind::Calls => Message::text(Role::Assistant, ""),
        Kind::Result => Message::text(Role::Tool, ""),
    };
    if kind == Kind::Calls {
        message.tool_calls = vec![ToolCall {
            id: format!("call_{index}"),
            kind: "function".into(),
            function: FunctionCall::default(),
        }];
    }
    Turn::new(
        index.to_string(),
        message,
        DateTime::<Utc>::UNIX_EPOCH,
        tokens,
    )
}

fn turns(costs: &[u32]) -> Vec<Turn> {
    let kind = |i: usize| {
        if i.is_multiple_of(2) {
            Kind::User
        } else {
            Kind::Answer
        }
    };
    costs
        .iter()
        .enumerate()
        .map(|(i, &tokens)| turn(i, kind(i), tokens))
        .collect()
}

fn input(history: &[Turn], window: Option<usize>, budget: u32) -> ContextInput<'_> {
    ContextInput {
        prefix_tokens: 10,
        history,
        history_complete: true,
        pinned: 0,
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

#[test]
fn calls_and_their_results_are_dropped_together() {
    // user, assistant calling two tools, two results, final answer
    let kinds = [
        Kind::User,
        Kind::Calls,
        Kind::Result,
        Kind::Result,
        Kind::Answer,
    ];
    let history: Vec<Turn> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| turn(i, k, 5))
        .collect();
    // fixed 18; the answer fits (23), the results would too (33) but not with their call (38)
    let plan = build_context(&input(&history, None, 35)).unwrap();
    assert_eq!(plan.first_kept, 4);
    let plan = build_context(&input(&history, None, 38)).unwrap();
    assert_eq!(plan.first_kept, 1);
    // a window of 3 cannot hold the unit of three plus the answer
    let plan = build_context(&input(&history, Some(3), 1000)).unwrap();
    assert_eq!(plan.first_kept, 4);
}

#[test]
fn results_at_the_start_of_a_partial_history_ask_for_more() {
    let kinds = [Kind::Result, Kind::Result, Kind::User];
    let history: Vec<Turn> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| turn(i, k, 5))
        .collect();
    let partial = ContextInput {
        history_complete: false,
        ..input(&history, None, 1000)
    };
    let plan = build_context(&partial).unwrap();
    assert_eq!((plan.first_kept, plan.cut_unit), (2, true));
    assert!(plan.wants_more_history(&partial));
    // The same turns as the whole conversation: results with no calls are kept as they are.
    let plan = build_context(&input(&history, None, 1000)).unwrap();
    assert_eq!((plan.first_kept, plan.cut_unit), (0, false));
}

#[test]
fn pinned_calls_are_kept_whatever_the_window() {
    let kinds = [Kind::User, Kind::Answer, Kind::User, Kind::Calls];
    let history: Vec<Turn> = kinds
        .iter()
        .enumerate()
        .map(|(i, &k)| turn(i, k, 5))
        .collect();
    let pinned = ContextInput {
        pinned: 1,
        ..input(&history, Some(1), 1000)
    };
    let plan = build_context(&pinned).unwrap();
    assert_eq!((plan.first_kept, plan.tokens), (3, 18 + 5));
    let over = ContextInput {
        pinned: 1,
        ..input(&history, None, 22)
    };
    assert_eq!(build_context(&over).unwrap_err().current_tokens, 23);
}

/// A conversation of units (user, answer, calls with 1–3 results), and per turn a cost.
fn any_conversation() -> impl Strategy<Value = (Vec<Kind>, Vec<u32>)> {
    let unit = prop_oneof![
        Just(vec![Kind::User]),
        Just(vec![Kind::Answer]),
        (1usize..4).prop_map(|results| {
            let mut unit = vec![Kind::Calls];
            unit.extend(std::iter::repeat_n(Kind::Result, results));
            unit
        }),
    ];
    proptest::collection::vec(unit, 0..25).prop_flat_map(|units| {
        let kinds: Vec<Kind> = units.concat();
        let n = kinds.len();
        (Just(kinds), proptest::collection::vec(4u32..120, n))
    })
}

proptest! {
    #[test]
    fn plan_respects_every_rule(
        (kinds, costs) in any_conversation(),
        tail_from in any::<prop::sample::Index>(),
        pending in any::<bool>(),
        prefix in 0u32..200,
        new_message in 4u32..200,
        window in proptest::option::of(0usize..30),
        budget in 0u32..3000,
    ) {
        let mut all: Vec<Turn> = kinds
            .iter()
            .zip(&costs)
            .enumerate()
            .map(|(i, (&kind, &tokens))| turn(i, kind, tokens))
            .collect();
        if pending {
            all.push(turn(all.len(), Kind::Calls, 9));
        }
        // What the store handed over: a tail, possibly starting inside a unit.
        let start = if all.is_empty() { 0 } else { tail_from.index(all.len()) };
        let history = &all[start..];
        let pinned = usize::from(pending);
        let input = ContextInput {
            prefix_tokens: prefix,
            history,
            history_complete: start == 0,
            pinned,
            new_message_tokens: new_message,
            window,
            budget,
        };
        let fixed = prefix + new_message + REPLY_PRIMING_TOKENS + if pending { 9 } else { 0 };
        let plan = match build_context(&input) {
            Ok(plan) => plan,
            Err(err) => {
                prop_assert!(fixed > budget);
                prop_assert_eq!(err, ContextExceeded { max_tokens: budget, current_tokens: fixed });
                return Ok(());
            }
        };
        let kept_turns = plan.kept_turns(history);
        let kept_cost: u32 = kept_turns.iter().map(|turn| turn.tokens).sum();

        prop_assert!(plan.tokens <= budget);
        prop_assert_eq!(plan.tokens, prefix + new_message + REPLY_PRIMING_TOKENS + kept_cost);
        prop_assert_eq!(plan.kept + plan.dropped, history.len());
        prop_assert_eq!(plan.first_kept, plan.dropped);
        // a contiguous newest suffix, in original order, the pinned turn always in it
        prop_assert_eq!(kept_turns, &history[history.len() - plan.kept..]);
        prop_assert!(plan.kept >= pinned);
        prop_assert!(window.is_none_or(|window| plan.kept <= window.max(pinned)));
        // never a result without its call: the first kept turn starts a unit
        let first = start + plan.first_kept;
        if first < all.len() - pinned {
            prop_assert!(!all[first].message.role.is_call_result(), "kept a result without its call");
        }

        // Stopped early only for a reason: the next older unit did not fit, or its start
        // was not in the input.
        if plan.dropped > 0 && !plan.cut_unit {
            let older = unit_start(history, plan.first_kept, start == 0).unwrap();
            let unit_cost: u32 = history[older..plan.first_kept].iter().map(|t| t.tokens).sum();
            let too_many = window.is_some_and(|w| history.len() - older > w.max(pinned));
            prop_assert!(too_many || plan.tokens + unit_cost > budget);
        }
        if plan.cut_unit {
            prop_assert!(start > 0 && all[start].message.role.is_call_result());
        }
    }
}
