//! Context compression against a fake summarizer that echoes what it was sent: older
//! turns are folded into a summary in order, every raw turn stays readable, the summary
//! answers for the turns no longer sent, and an operator can clear it.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    helpers::{Backend, TestApp, spawn_with},
    import_export::{export_session, history, import},
    messages::{relay_settings, spawn_relay_on},
    redis_server::{RedisServer, free_port},
};

const FIRST_FACT: &str = "My name is Ada Lovelace and my order number is 4471.";
/// Every answer of the fake, the summarizer's included: the facts of the first turn.
const SUMMARY: &str = "The user is Ada Lovelace; order number 4471.";

async fn say(app: &TestApp, id: &str, content: &str) -> Value {
    let reply = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({ "content": content })),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn is_summarizer_call(request: &Value) -> bool {
    request["messages"][0]["content"]
        .as_str()
        .is_some_and(|s| s.contains("running summary"))
}

async fn compacting_session(app: &TestApp) -> String {
    let session = app
        .create_session(json!({
            "max_context_tokens": 400,
            "compaction": {"mode": "auto", "trigger_ratio": 0.8, "keep_ratio": 0.3}
        }))
        .await;
    session["session_id"].as_str().unwrap().to_string()
}

async fn wait_for_summary(app: &TestApp, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let session = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if !session.body["summary"].is_null() {
            return session.body;
        }
        assert!(Instant::now() < deadline, "no summary was written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first fact, then thirteen turns of filler: more than a 400-token budget holds.
fn long_conversation_texts() -> Vec<String> {
    let filler =
        |i| format!("Turn {i}: tell me more about the shipping options please, in detail.");
    std::iter::once(FIRST_FACT.to_string())
        .chain((1..14).map(filler))
        .collect()
}

async fn long_conversation(app: &TestApp, id: &str) {
    for text in long_conversation_texts() {
        say(app, id, &text).await;
    }
}

/// The last upstream prompt opens with the summary (which holds the first fact) and no
/// longer carries the folded first turn.
fn assert_the_prompt_carries_the_summary(fake: &FakeUpstream) {
    let sent = fake.last_messages();
    let summary_turn = &sent[0];
    assert_eq!(summary_turn["role"], "system");
    let text = summary_turn["content"].as_str().unwrap();
    assert!(
        text.contains("<conversation_summary>") && text.contains("4471"),
        "{text}"
    );
    let raw_first = (sent.as_array().unwrap().iter())
        .any(|m| m["role"] == "user" && m["content"].as_str() == Some(FIRST_FACT));
    assert!(!raw_first, "the folded turn is not sent again");
}

async fn folds_in_order_and_keeps_every_turn(backend: Backend) {
    let (app, fake): (TestApp, FakeUpstream) = spawn_relay_on(backend).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let id = compacting_session(&app).await;
    long_conversation(&app, &id).await;
    let session = wait_for_summary(&app, &id).await;
    assert!(
        session["summary"]["text"]
            .as_str()
            .unwrap()
            .contains("Ada Lovelace")
    );
    assert!(session["summary"]["tokens"].as_u64().unwrap() > 0);

    // The summarizer saw the turns oldest first.
    let first = fake
        .requests()
        .into_iter()
        .find(is_summarizer_call)
        .unwrap();
    let transcript = first["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_string();
    let positions: Vec<usize> = [FIRST_FACT, "Turn 1:", "Turn 2:"]
        .iter()
        .map(|needle| transcript.find(needle).expect(needle))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{transcript}");

    // Nothing raw is deleted.
    let page = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=100"),
            None,
        )
        .await;
    assert_eq!(page.body["data"].as_array().unwrap().len(), 28);

    // The next send carries the summary right after the system prompt, within budget,
    // so a question about the first turn has its answer in the prompt.
    let answer = say(&app, &id, "What was my order number?").await;
    assert!(answer["context"]["summary_tokens"].as_u64().unwrap() > 0);
    assert!(answer["context"]["tokens"].as_u64().unwrap() <= 400);
    assert_the_prompt_carries_the_summary(&fake);
}

#[tokio::test]
async fn folds_in_order_and_keeps_every_turn_on_redis() {
    folds_in_order_and_keeps_every_turn(Backend::Redis).await;
}

#[tokio::test]
async fn folds_in_order_and_keeps_every_turn_in_memory() {
    folds_in_order_and_keeps_every_turn(Backend::Memory).await;
}

#[tokio::test]
async fn an_operator_can_clear_or_replace_the_summary() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let id = compacting_session(&app).await;
    long_conversation(&app, &id).await;
    wait_for_summary(&app, &id).await;
    let path = format!("/v1/sessions/{id}");
    let cleared = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"summary": null, "compaction": {"mode": "off"}})),
        )
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert!(cleared.body["summary"].is_null());
    let context = app
        .call(Method::GET, &format!("{path}/context"), None)
        .await;
    assert!(context.body["summary"].is_null());
    assert_eq!(context.body["summary_tokens"], 0);

    let page = app
        .call(Method::GET, &format!("{path}/messages"), None)
        .await;
    let first_id = page.body["data"][1]["id"].as_str().unwrap().to_string();
    let set = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"summary": {"text": "The user is Ada.", "upto_message_id": first_id}})),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.body);
    assert_eq!(set.body["summary"]["upto_message_id"], first_id.as_str());
    let context = app
        .call(Method::GET, &format!("{path}/context"), None)
        .await;
    assert!(
        context.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("The user is Ada.")
    );

    let bad = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"summary": {"text": "x", "upto_message_id": "0_nope"}})),
        )
        .await;
    assert_eq!(bad.status, 400);
}

/// The OpenAI relay's session mode commits through the same path: its turns are folded,
/// and its next request carries the summary in place of them.
#[tokio::test]
async fn the_relay_session_mode_folds_and_sends_the_summary() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let id = compacting_session(&app).await;
    let relay = |content: String| {
        json!({"model": crate::messages::MODEL, "session_id": id,
               "messages": [{"role": "user", "content": content}]})
    };
    for content in long_conversation_texts() {
        let reply = app
            .call(Method::POST, "/v1/chat/completions", Some(relay(content)))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    wait_for_summary(&app, &id).await;
    let asked = relay("What was my order number?".into());
    let reply = app
        .call(Method::POST, "/v1/chat/completions", Some(asked))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_the_prompt_carries_the_summary(&fake);
}

/// Turns added as conversation items, without a send, start a job as a send's do.
#[tokio::test]
async fn conversation_items_that_outgrow_the_budget_are_folded_too() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let id = compacting_session(&app).await;
    let item = |i: usize| {
        let text = format!("Item {i}: tell me more about the shipping options please, in detail.");
        let role = if i.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        };
        let kind = if role == "user" {
            "input_text"
        } else {
            "output_text"
        };
        json!({"type": "message", "role": role, "content": [{"type": kind, "text": text}]})
    };
    let mut items = vec![item(0)];
    items[0]["content"][0]["text"] = json!(FIRST_FACT);
    items.extend((1..20).map(item));
    let path = format!("/v1/conversations/conv_{id}/items");
    let added = app
        .call(Method::POST, &path, Some(json!({ "items": items })))
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(fake.requests().len(), 0, "items ask no model");
    let session = wait_for_summary(&app, &id).await;
    assert_eq!(session["summary"]["text"], SUMMARY);
    let sent = fake.requests();
    assert!(
        sent.iter().all(is_summarizer_call),
        "only the summarizer was called"
    );
    assert!(
        sent[0].to_string().contains("4471"),
        "the first item was folded"
    );
}

#[tokio::test]
async fn the_compact_route_runs_now_and_a_second_run_folds_nothing_new() {
    let (app, fake) = spawn_relay_on(Backend::Memory).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let session = app.create_session(json!({"max_context_tokens": 400})).await;
    let id = session["session_id"].as_str().unwrap().to_string();
    long_conversation(&app, &id).await;
    let path = format!("/v1/sessions/{id}/compact");
    let first = app.call(Method::POST, &path, None).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["outcome"], "compacted");
    assert!(first.body["folded_messages"].as_u64().unwrap() > 0);
    let again = app.call(Method::POST, &path, None).await;
    assert_eq!(again.body["outcome"], "nothing_to_fold", "{}", again.body);
    assert_eq!(again.body["summary"], first.body["summary"]);
}

fn line_of(export: &str) -> Value {
    serde_json::from_str(export.trim_end()).unwrap()
}

async fn export_and_import_carry_the_summary(backend: Backend) {
    let (app, fake) = spawn_relay_on(backend).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let id = compacting_session(&app).await;
    long_conversation(&app, &id).await;
    let session = wait_for_summary(&app, &id).await;
    let upto_id = session["summary"]["upto_message_id"].as_str().unwrap();
    let index = history(&app, &id)
        .await
        .iter()
        .position(|m| m["id"] == upto_id)
        .unwrap();

    let (status, text) = export_session(&app, &id).await;
    assert_eq!(status, 200);
    let mut line = line_of(&text);
    assert_eq!(line["summary"]["text"], session["summary"]["text"]);
    assert_eq!(line["summary"]["upto_message_index"], index);
    assert_eq!(line["summary"]["tokens"], session["summary"]["tokens"]);

    line["session_id"] = json!("restored");
    let reply = import(&app, "create", std::slice::from_ref(&line)).await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );
    let restored = app.call(Method::GET, "/v1/sessions/restored", None).await;
    let summary = &restored.body["summary"];
    assert_eq!(summary["text"], session["summary"]["text"]);
    assert_eq!(summary["tokens"], session["summary"]["tokens"]);
    assert_eq!(summary["updated_at"], session["summary"]["updated_at"]);
    let turns = history(&app, "restored").await;
    assert_eq!(summary["upto_message_id"], turns[index]["id"]);
    // Exported again, the line is the same but for its id.
    let (_, again) = export_session(&app, "restored").await;
    assert_eq!(line_of(&again), line);

    // A line without a summary (an older export) imports with none.
    let mut old = line.clone();
    old.as_object_mut().unwrap().remove("summary");
    old["session_id"] = json!("older");
    let reply = import(&app, "create", &[old]).await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );
    let older = app.call(Method::GET, "/v1/sessions/older", None).await;
    assert!(older.body["summary"].is_null(), "{}", older.body);
}

#[tokio::test]
async fn export_and_import_carry_the_summary_on_redis() {
    export_and_import_carry_the_summary(Backend::Redis).await;
}

#[tokio::test]
async fn export_and_import_carry_the_summary_in_memory() {
    export_and_import_carry_the_summary(Backend::Memory).await;
}

fn tool_exchange() -> Vec<Value> {
    vec![
        json!({"role": "user", "content": "What is the weather?"}),
        json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": "{}"}
        }]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}),
        json!({"role": "assistant", "content": "It is sunny."}),
    ]
}

#[tokio::test]
async fn an_imported_summary_must_cover_whole_turns_of_its_history() {
    let (app, _fake) = spawn_relay_on(Backend::Memory).await;
    let item = |id: &str, upto: u64| {
        json!({
            "session_id": id,
            "messages": tool_exchange(),
            "summary": {"text": "Weather talk.", "upto_message_index": upto}
        })
    };
    let items = [item("between", 1), item("beyond", 4), item("whole", 2)];
    let reply = import(&app, "create", &items).await;
    let results = reply.body["results"].as_array().unwrap();
    for bad in &results[..2] {
        assert_eq!(bad["error"], "invalid_request", "{bad}");
        assert_eq!(bad["field"], "summary.upto_message_index", "{bad}");
    }
    assert_eq!(results[2]["status"], "created", "{}", results[2]);
    let whole = app.call(Method::GET, "/v1/sessions/whole", None).await;
    assert_eq!(
        whole.body["summary"]["upto_message_id"],
        history(&app, "whole").await[2]["id"]
    );

    // Append adds history only.
    let append = json!({
        "session_id": "whole",
        "messages": [{"role": "user", "content": "Thanks"}],
        "summary": {"text": "x", "upto_message_index": 0}
    });
    let reply = import(&app, "append", &[append]).await;
    assert_eq!(
        reply.body["results"][0]["field"], "summary",
        "{}",
        reply.body
    );
}

/// `exchanges` rounds of a question, an assistant turn calling three tools, their three
/// results and the answer: most turns sit inside a call-and-results unit.
fn tool_heavy_history(exchanges: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for e in 0..exchanges {
        out.push(json!({"role": "user", "content": format!("Question {e}: where is parcel {e}?")}));
        let ids: Vec<String> = (0..3).map(|c| format!("call_{e}_{c}")).collect();
        let calls: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"id": id, "type": "function",
                "function": {"name": "track", "arguments": format!("{{\"parcel\": {e}}}")}})
            })
            .collect();
        out.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
        for id in &ids {
            out.push(json!({"role": "tool", "tool_call_id": id, "content":
                format!("Tracking record {id}: the parcel left the depot, passed the sorting \
                         centre and is on a van for delivery later today.")}));
        }
        out.push(json!({"role": "assistant", "content": format!("Parcel {e} arrives today.")}));
    }
    out
}

#[tokio::test]
async fn a_summary_never_ends_between_tool_calls_and_their_results() {
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let exchanges = tool_heavy_history(12);
    let mut cuts = std::collections::HashSet::new();
    // Budgets 25 tokens apart: the kept tail ends up at every kind of turn, tool results
    // included, so a cut by turn count alone would land inside a unit for some of them.
    for (n, budget) in (300..=1200).step_by(25).enumerate() {
        let id = format!("tools-{n}");
        let item = json!({"session_id": id, "max_context_tokens": budget, "messages": exchanges});
        let reply = import(&app, "create", &[item]).await;
        assert_eq!(
            reply.body["results"][0]["status"], "created",
            "{}",
            reply.body
        );
        let compact = app
            .call(Method::POST, &format!("/v1/sessions/{id}/compact"), None)
            .await;
        assert_eq!(compact.body["outcome"], "compacted", "{}", compact.body);
        let turns = history(&app, &id).await;
        let upto = compact.body["summary"]["upto_message_id"].clone();
        let at = turns.iter().position(|t| t["id"] == upto).unwrap();
        let next = &turns[at + 1];
        assert_ne!(
            next["role"], "tool",
            "budget {budget}: the cut splits a unit at {at}"
        );
        assert!(
            turns[at]["tool_calls"].as_array().is_none_or(Vec::is_empty),
            "budget {budget}: the cut leaves calls without their results at {at}"
        );
        cuts.insert(at);
    }
    assert!(cuts.len() > 3, "the budgets tried too few cuts: {cuts:?}");
}

/// The numbered marker of a generated turn, found in a transcript.
fn marker(i: usize) -> String {
    format!("<t{i:05}>")
}

#[tokio::test]
async fn a_large_imported_session_is_folded_in_chunks_oldest_first_and_whole() {
    const TURNS: usize = 10_000;
    let (app, fake) = spawn_relay_on(Backend::Redis).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let messages: Vec<Value> = (0..TURNS)
        .map(|i| {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            json!({"role": role, "content":
                format!("{} the parcel is still in transit to the depot.", marker(i))})
        })
        .collect();
    let item = json!({"session_id": "large", "max_context_tokens": 1000, "messages": messages});
    let reply = import(&app, "create", &[item]).await;
    assert_eq!(
        reply.body["results"][0]["status"], "created",
        "{}",
        reply.body
    );

    let compact = app
        .call(Method::POST, "/v1/sessions/large/compact", None)
        .await;
    assert_eq!(compact.body["outcome"], "compacted", "{}", compact.body);
    let folded = usize::try_from(compact.body["folded_messages"].as_u64().unwrap()).unwrap();
    assert!(folded > TURNS - 100, "{}", compact.body);

    let calls: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| is_summarizer_call(r))
        .map(|r| r["messages"][1]["content"].as_str().unwrap().to_string())
        .collect();
    assert!(calls.len() > 3, "{} chunks", calls.len());
    assert_eq!(compact.body["summarizer_calls"], calls.len());
    // Each chunk is folded on top of the summary the previous one left.
    assert!(
        calls[0].starts_with("Current summary:\n(none yet)"),
        "{}",
        calls[0]
    );
    for call in &calls[1..] {
        assert!(
            call.starts_with(&format!("Current summary:\n{SUMMARY}")),
            "{call}"
        );
    }
    // Every folded turn is sent exactly once, in order: chunk after chunk, oldest first.
    let mut next = 0;
    for call in &calls {
        let mut rest = call.as_str();
        while let Some(at) = rest.find("<t") {
            assert!(
                rest[at..].starts_with(&marker(next)),
                "turn {next} expected: {}",
                &rest[at..at + 10]
            );
            rest = &rest[at + marker(next).len()..];
            next += 1;
        }
    }
    assert_eq!(
        next, folded,
        "every folded turn sent once, none of the kept ones"
    );
    // The watermark sits right after the last turn sent: the next one is the first kept.
    let upto = compact.body["summary"]["upto_message_id"].as_str().unwrap();
    let page = app
        .call(
            Method::GET,
            &format!("/v1/sessions/large/messages?limit=1&after={upto}"),
            None,
        )
        .await;
    let first_kept = page.body["data"][0]["content"].as_str().unwrap();
    assert!(first_kept.starts_with(&marker(folded)), "{}", page.body);
}

/// A slow summarizer: jobs started together overlap.
fn slow_summary() -> Behaviour {
    Behaviour::Reply {
        content: Some(SUMMARY.into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        delay: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn two_instances_racing_on_one_session_fold_it_once() {
    let (settings, fake) = relay_settings(Backend::Redis, None).await;
    let (one, two) = (
        spawn_with(settings.clone()).await,
        spawn_with(settings).await,
    );
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let session = one.create_session(json!({"max_context_tokens": 400})).await;
    let id = session["session_id"].as_str().unwrap().to_string();
    long_conversation(&one, &id).await;
    fake.set(slow_summary());
    let before = fake.requests().len();

    let path = format!("/v1/sessions/{id}/compact");
    let (a, b) = tokio::join!(
        one.call(Method::POST, &path, None),
        two.call(Method::POST, &path, None)
    );
    let mut outcomes = [a.body["outcome"].clone(), b.body["outcome"].clone()];
    outcomes.sort_by_key(|o| o != "compacted");
    assert_eq!(outcomes[0], "compacted", "{} / {}", a.body, b.body);
    assert!(
        outcomes[1] == "busy" || outcomes[1] == "nothing_to_fold",
        "{} / {}",
        a.body,
        b.body
    );
    let winner = if a.body["outcome"] == "compacted" {
        &a
    } else {
        &b
    };
    let calls = winner.body["summarizer_calls"].as_u64().unwrap();
    // Only the winner's chunks reached the summarizer.
    let sent = fake.requests()[before..]
        .iter()
        .filter(|r| is_summarizer_call(r))
        .count();
    assert_eq!(sent as u64, calls);

    // Both instances read the same summary, covering the turns the winner folded.
    let folded = winner.body["folded_messages"].as_u64().unwrap() as usize;
    let turns = history(&two, &id).await;
    assert_eq!(turns.len(), 28);
    for app in [&one, &two] {
        let now = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(now.body["summary"], winner.body["summary"], "{}", now.body);
        assert_eq!(
            now.body["summary"]["upto_message_id"],
            turns[folded - 1]["id"]
        );
    }
    let again = two.call(Method::POST, &path, None).await;
    assert_eq!(again.body["outcome"], "nothing_to_fold", "{}", again.body);
}

#[tokio::test]
async fn redis_down_mid_job_loses_no_turn_and_a_later_job_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut redis = RedisServer::start_durable(port, dir.path());
    let (mut settings, fake) = relay_settings(Backend::Redis, Some(redis.url())).await;
    // A lease left behind by the failed job lapses soon.
    settings.compaction.lease_seconds = 1;
    let app = spawn_with(settings).await;
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let session = app.create_session(json!({"max_context_tokens": 400})).await;
    let id = session["session_id"].as_str().unwrap().to_string();
    long_conversation(&app, &id).await;
    let turns = history(&app, &id).await;
    fake.set(Behaviour::Reply {
        content: Some(SUMMARY.into()),
        prompt_tokens: 10,
        completion_tokens: 5,
        delay: Duration::from_millis(800),
    });

    let path = format!("/v1/sessions/{id}/compact");
    let job = {
        let (app, path) = (app.as_tenant(&app.key), path.clone());
        tokio::spawn(async move { app.call(Method::POST, &path, None).await })
    };
    // The job has read the session and waits on the summarizer: Redis goes away.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !fake.requests().iter().any(is_summarizer_call) {
        assert!(
            Instant::now() < deadline,
            "the job never called the summarizer"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.stop();
    let failed = job.await.unwrap();
    assert_eq!(failed.status, 503, "{}", failed.body);
    assert_eq!(failed.body["error"], "store_unavailable", "{}", failed.body);

    let _redis = RedisServer::start_durable(port, dir.path());
    fake.set(Behaviour::reply(SUMMARY, 10, 5));
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        let reply = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        if reply.status == 200 {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never came back: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        back.body["summary"].is_null(),
        "the failed job wrote: {}",
        back.body
    );
    let done = loop {
        let reply = app.call(Method::POST, &path, None).await;
        if reply.status == 200 && reply.body["outcome"] == "compacted" {
            break reply;
        }
        assert!(
            Instant::now() < deadline,
            "no later job folded: {}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(done.body["folded_messages"].as_u64().unwrap() > 0);
    // Every turn is still there, as it was.
    assert_eq!(history(&app, &id).await, turns);
}
