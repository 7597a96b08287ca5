//! export(import(x)) == x, byte for byte, over generated histories (Unicode, control
//! characters, empty strings, long content); and export → import into a fresh prefix (the
//! other store) → export changes nothing.

use chrono::{DateTime, SecondsFormat, Utc};
use proptest::{collection, option, prelude::*, test_runner::TestRunner};
use reqwest::StatusCode;
use serde_json::{Map, Value};

use crate::{
    helpers::{Backend, spawn_app},
    import_export::{export_session, import_raw},
};

fn timestamp(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(?s).{0,40}",
        "\\PC{1,30}",
        "[a-zé€😀 ]{1,8}".prop_map(|s| s.repeat(2000)),
    ]
}

fn js(value: &str) -> String {
    serde_json::to_string(value).unwrap()
}

/// One session as an export line, fields in the export's order.
fn session() -> impl Strategy<Value = (String, Vec<String>)> {
    let message = (
        prop_oneof![
            Just("user"),
            Just("assistant"),
            Just("system"),
            Just("tool")
        ],
        text(),
        0i64..4_102_444_800_000,
    )
        .prop_map(|(role, content, ms)| {
            format!(
                "{{\"role\":\"{role}\",\"content\":{},\"created_at\":\"{}\"}}",
                js(&content),
                timestamp(ms)
            )
        });
    let metadata = collection::btree_map(
        "[a-z_]{1,8}",
        prop_oneof![
            "\\PC{0,10}".prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
        ],
        0..4,
    );
    (
        "[A-Za-z0-9_-]{1,20}",
        option::of("\\PC{1,20}"),
        option::of(text()),
        option::of(1u32..100),
        60u64..1_000_000,
        metadata,
        0i64..4_102_444_800_000,
        collection::vec(message, 0..6),
    )
        .prop_map(|(id, user, prompt, window, ttl, metadata, created, messages)| {
            let id = format!("{id}-{}", &session_relay::domain::session::new_id()[..8]);
            let mut line = format!("{{\"session_id\":\"{id}\"");
            if let Some(user) = user {
                line += &format!(",\"user_id\":{}", js(&user));
            }
            line += ",\"model\":\"echo\"";
            if let Some(prompt) = prompt {
                line += &format!(",\"system_prompt\":{}", js(&prompt));
            }
            if let Some(window) = window {
                line += &format!(",\"context_window\":{window}");
            }
            let metadata: Map<String, Value> = metadata.into_iter().collect();
            line += &format!(
                ",\"ttl_seconds\":{ttl},\"metadata\":{},\"created_at\":\"{}\",\"messages\":[{}]}}\n",
                Value::Object(metadata),
                timestamp(created),
                messages.join(",")
            );
            (id, vec![line])
        })
}

#[test]
fn export_of_import_is_the_input_byte_for_byte() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (first, second) = runtime.block_on(async {
        (
            spawn_app(Backend::Redis).await,
            spawn_app(Backend::Memory).await,
        )
    });
    let config = ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let strategy = collection::vec(session(), 1..4);
    let result = runner.run(&strategy, |sessions| {
        runtime.block_on(async {
            let input: String = sessions.iter().flat_map(|(_, l)| l.clone()).collect();
            let reply = import_raw(&first, "create", input.clone().into_bytes(), None).await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.body["imported"], sessions.len(), "{}", reply.body);
            let mut exported = String::new();
            for (id, _) in &sessions {
                let (status, text) = export_session(&first, id).await;
                assert_eq!(status, StatusCode::OK);
                exported += &text;
            }
            prop_assert_eq!(&exported, &input);
            let again = import_raw(&second, "create", exported.clone().into_bytes(), None).await;
            assert_eq!(again.body["imported"], sessions.len(), "{}", again.body);
            let mut re_exported = String::new();
            for (id, _) in &sessions {
                re_exported += &export_session(&second, id).await.1;
            }
            prop_assert_eq!(re_exported, exported);
            Ok(())
        })
    });
    if let Err(err) = result {
        panic!("{err}");
    }
}
