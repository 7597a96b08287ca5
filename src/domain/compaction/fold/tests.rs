#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::domain::tools::{FunctionCall, ToolCall};

/// 0 user, 1 answer, 2 calling answer (followed by results), 3 result.
fn conversation(kinds: &[u8], costs: &[u32]) -> Vec<Turn> {
    kinds
        .iter()
        .zip(costs)
        .enumerate()
        .map(|(i, (&kind, &tokens))| {
            let mut message = match kind {
                0 => Message::text(Role::User, format!("u{i}")),
                3 => Message::text(Role::Tool, format!("r{i}")),
                _ => Message::text(Role::Assistant, format!("a{i}")),
            };
            if kind == 2 {
                message.tool_calls = vec![ToolCall {
                    id: format!("call_{i}"),
                    kind: "function".into(),
                    function: FunctionCall::default(),
                }];
            }
            Turn::new(i.to_string(), message, DateTime::<Utc>::UNIX_EPOCH, tokens)
        })
        .collect()
}

/// A well-formed conversation: results only ever follow a calling answer or a result.
fn arb_conversation() -> impl Strategy<Value = Vec<Turn>> {
    prop::collection::vec((0u8..4, 1u32..50), 0..60).prop_map(|raw| {
        let mut kinds: Vec<u8> = Vec::new();
        for (kind, _) in &raw {
            let after_call = matches!(kinds.last(), Some(2 | 3));
            kinds.push(if *kind == 3 && !after_call { 0 } else { *kind });
        }
        let costs: Vec<u32> = raw.iter().map(|(_, c)| *c).collect();
        conversation(&kinds, &costs)
    })
}

fn is_boundary(turns: &[Turn], at: usize) -> bool {
    turns
        .get(at)
        .is_none_or(|t| !t.message.role.is_call_result())
}

proptest! {
    #[test]
    fn the_fold_cut_falls_between_units_and_keeps_the_newest(turns in arb_conversation(), keep in 0u64..400) {
        let cut = fold_len(&turns, keep);
        prop_assert!(cut <= turns.len());
        prop_assert!(is_boundary(&turns, cut));
        if !turns.is_empty() {
            prop_assert!(cut < turns.len(), "the newest unit stays unfolded");
            let kept: u64 = turns[cut..].iter().map(|t| u64::from(t.tokens)).sum();
            let newest_unit = unit_start(&turns, turns.len(), true).unwrap_or(0);
            prop_assert!(kept <= keep || cut == newest_unit);
        }
    }

    #[test]
    fn chunks_cover_every_turn_in_order_within_capacity(turns in arb_conversation(), capacity in 1u64..300) {
        let chunks = chunks(&turns, capacity);
        let mut next = 0;
        for chunk in &chunks {
            prop_assert_eq!(chunk.start, next);
            prop_assert!(chunk.end > chunk.start);
            prop_assert!(is_boundary(&turns, chunk.end));
            let cost: u64 = turns[chunk.clone()].iter().map(|t| u64::from(t.tokens)).sum();
            let one_unit = unit_start(&turns, chunk.end, true) == Some(chunk.start);
            prop_assert!(cost <= capacity || one_unit);
            next = chunk.end;
        }
        prop_assert_eq!(next, turns.len());
    }
}

#[test]
fn the_transcript_is_chronological_and_names_calls() {
    let turns = conversation(&[0, 2, 3, 1], &[1, 1, 1, 1]);
    let text = transcript(&turns, usize::MAX);
    let order: Vec<usize> = ["u0", "calls", "r2", "a3"]
        .iter()
        .map(|s| text.find(s).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
}

#[test]
fn empty_or_refused_output_is_not_a_summary() {
    assert!(!acceptable(&Message::text(Role::Assistant, "  \n")));
    let mut refused = Message::text(Role::Assistant, "I can't");
    refused.refusal = Some("no".into());
    assert!(!acceptable(&refused));
    assert!(acceptable(&Message::text(
        Role::Assistant,
        "the user is Ada"
    )));
}
