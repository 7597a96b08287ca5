//! Context compression on a long support conversation: the same 300-turn conversation
//! (150 user messages, each answered) replayed on sessions with compaction `off` and
//! `auto` (default ratios, and a lower `keep_ratio`) at the same budget, send by send in
//! turn so that drift hits all alike. Prints the prompt tokens per send, what the
//! summarizer was asked, and send overhead.

use serde_json::{Value, json};

use crate::{
    client::Client,
    load::Latencies,
    report,
    upstream::{self, summarizer_counts},
};

/// How a replay is run.
pub struct Replay {
    /// Conversations replayed per policy (more samples for the latency rows).
    pub conversations: usize,
    /// User messages per conversation; each is answered, so twice as many turns.
    pub exchanges: usize,
    /// `max_context_tokens` of every session.
    pub budget: u32,
}

/// What a user of a support desk writes, a sentence or three at a time.
const SENTENCES: [&str; 12] = [
    "Hi, I ordered a pair of trail shoes last week, order 44719, and the sizes are mixed up.",
    "The left shoe is a 42 and the right one is a 43, which is obviously not what I paid for.",
    "Can I exchange them, or would a refund be quicker? I need them for a race on the 20th.",
    "I paid by card, the one ending 4417, if that matters for the refund.",
    "Also, I moved last month: the new address is 14 Harbour Lane, Leith, EH6 6JJ.",
    "Could you send the invoice there, and correct the address on my account as well?",
    "How long does a refund usually take to show up on the card statement?",
    "What happens to the loyalty points I got for this order when it is refunded?",
    "Is the same model back in stock in size 43? I would order it again right away.",
    "Please just email me when it is; I would rather not get phone calls about it.",
    "Thanks, that helps. One more thing: the confirmation email never arrived.",
    "Sorry for all the questions, the last order went smoothly so this surprised me.",
];

fn message(i: usize) -> String {
    let count = 1 + i % 3;
    (0..count)
        .map(|k| SENTENCES[(i * 5 + k * 7) % SENTENCES.len()])
        .collect::<Vec<_>>()
        .join(" ")
}

/// One policy's sessions and what their sends reported.
struct Policy {
    label: &'static str,
    sessions: Vec<String>,
    /// Prompt tokens of send `i`, summed over the conversations.
    prompt_tokens: Vec<u64>,
    latencies: Latencies,
}

pub async fn run(client: &Client, replay: &Replay, baseline: &Latencies) {
    let mut policies = Vec::new();
    let policies_asked: [(&str, Value); 3] = [
        ("off", json!({"mode": "off"})),
        ("auto", json!({"mode": "auto"})),
        ("auto, keep 0.3", json!({"mode": "auto", "keep_ratio": 0.3})),
    ];
    for (label, compaction) in policies_asked {
        let mut sessions = Vec::new();
        for _ in 0..replay.conversations {
            let id = client.create_compacting(replay.budget, compaction.clone());
            sessions.push(id.await);
        }
        policies.push(Policy {
            label,
            sessions,
            prompt_tokens: vec![0; replay.exchanges],
            latencies: Latencies {
                samples: Vec::new(),
                elapsed: Default::default(),
            },
        });
    }
    let (calls_before, tokens_before) = summarizer_counts();
    for i in 0..replay.exchanges {
        let text = message(i);
        for conversation in 0..replay.conversations {
            for policy in &mut policies {
                let started = std::time::Instant::now();
                let tokens = client.say(&policy.sessions[conversation], &text).await;
                let took = started.elapsed();
                policy.prompt_tokens[i] += tokens.unwrap();
                policy.latencies.samples.push(took.as_secs_f64() * 1000.0);
                policy.latencies.elapsed += took;
            }
        }
    }
    let (calls_after, tokens_after) = summarizer_counts();

    report::section(&format!(
        "context compression: a {}-turn support conversation ({} user messages, each \
         answered) replayed {} times per policy, budget {} tokens; `auto` with the default \
         ratios (trigger 0.8, keep 0.5), then with keep_ratio 0.3",
        2 * replay.exchanges,
        replay.exchanges,
        replay.conversations,
        replay.budget
    ));
    let per_send = |policy: &Policy, last: usize| {
        let last = last.min(replay.exchanges);
        let sum: u64 = policy.prompt_tokens[replay.exchanges - last..].iter().sum();
        sum as f64 / (last * replay.conversations).max(1) as f64
    };
    for policy in &policies {
        report::figure(
            &format!(
                "compaction {}: prompt tokens per send, mean / last 100 / last 50",
                policy.label
            ),
            format!(
                "{:.0} / {:.0} / {:.0}",
                per_send(policy, replay.exchanges),
                per_send(policy, 100),
                per_send(policy, 50)
            ),
        );
    }
    let off = per_send(&policies[0], 100);
    for policy in &policies[1..] {
        report::figure(
            &format!(
                "{} against off: fewer prompt tokens over the last 100 sends",
                policy.label
            ),
            format!(
                "{:.1} %",
                100.0 * (1.0 - per_send(policy, 100) / off.max(1.0))
            ),
        );
    }
    let calls = calls_after - calls_before;
    report::figure(
        "summarizer calls per conversation (both auto policies), and prompt tokens per call",
        format!(
            "{:.1}, {:.0} (answers of {} bytes)",
            calls as f64 / (2 * replay.conversations) as f64,
            (tokens_after - tokens_before) as f64 / calls.max(1) as f64,
            upstream::SUMMARY.len()
        ),
    );
    report::latency_header();
    for policy in &policies {
        let row = format!("send, replay, compaction {}", policy.label);
        report::row(&row, 1, &policy.latencies, Some(baseline));
    }
}
