//! Bulk import and export over HTTP, on both stores: per-item results, all-or-nothing
//! items, append / replace (expired sessions included), idempotency, limits, round trips.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    BACKENDS, Backend, GLOBEX_KEY, Reply, TestApp, send, spawn_app, spawn_with, test_settings,
};

pub fn ndjson(items: &[Value]) -> Vec<u8> {
    items
        .iter()
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

pub async fn import_raw(app: &TestApp, mode: &str, body: Vec<u8>, key: Option<&str>) -> Reply {
    let mut request = app
        .http
        .post(format!("{}/v1/sessions/import?mode={mode}", app.address))
        .bearer_auth(&app.key)
        .header("content-type", "application/x-ndjson")
        .body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    send(request).await
}

pub async fn import(app: &TestApp, mode: &str, items: &[Value]) -> Reply {
    let reply = import_raw(app, mode, ndjson(items), None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply
}

pub async fn export_session(app: &TestApp, id: &str) -> (StatusCode, String) {
    export(app, &format!("/v1/sessions/{id}/export")).await
}

/// An NDJSON export (`path` of a session's or a user's), read whole.
pub async fn export(app: &TestApp, path: &str) -> (StatusCode, String) {
    let response = app
        .http
        .get(format!("{}{path}", app.address))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Every stored turn of a session (up to 1000), oldest first.
pub async fn history(app: &TestApp, id: &str) -> Vec<Value> {
    let reply = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=1000"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"].as_array().unwrap().clone()
}

pub fn unique(name: &str) -> String {
    format!("{name}-{}", &session_relay::domain::session::new_id()[..10])
}

pub fn msg(role: &str, content: &str) -> Value {
    json!({"role": role, "content": content, "created_at": "2024-03-01T12:00:00Z"})
}

#[tokio::test]
async fn a_mixed_batch_gets_per_item_results_and_bad_items_leave_nothing() {
    for backend in BACKENDS {
        let mut settings = test_settings(backend, None);
        settings.import.max_session_bytes = 4096;
        let app = spawn_with(settings).await;
        let (good, bad_role, dup) = (unique("good"), unique("badrole"), unique("dup"));
        let taken = app.new_session_id().await;
        let items = vec![
            json!({"session_id": good, "user_id": "u-1", "system_prompt": "Be brief.",
                   "metadata": {"src": "legacy"}, "ttl_seconds": 600,
                   "messages": [msg("user", "Hi ünïcødé 👋"), msg("assistant", "Hello!"), msg("tool", "")]}),
            json!({"messages": [msg("user", "no id given")]}),
            json!({"session_id": bad_role, "messages": [msg("user", "a"), msg("robot", "b")]}),
            json!({"session_id": dup, "messages": [msg("user", "first")]}),
            json!({"session_id": dup, "messages": [msg("user", "second")]}),
            json!({"session_id": taken, "messages": []}),
            json!({"session_id": unique("big"), "messages": [msg("user", &"x".repeat(5000))]}),
        ];
        let reply = import(&app, "create", &items).await;
        let body = &reply.body;
        assert_eq!(body["imported"], 3, "{backend:?}: {body}");
        assert_eq!(body["failed"], 4, "{body}");
        let results = body["results"].as_array().unwrap();
        let statuses: Vec<&str> = results
            .iter()
            .map(|r| r["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            statuses,
            [
                "created", "created", "error", "created", "error", "error", "error"
            ]
        );
        assert!(results.iter().enumerate().all(|(i, r)| r["index"] == i));
        assert_eq!(results[0]["session_id"], good.as_str());
        assert_eq!(results[0]["messages"], 3);
        let bad = &results[2];
        assert_eq!(bad["error"], "invalid_request");
        assert!(
            bad["message"]
                .as_str()
                .unwrap()
                .starts_with("messages[1].role: "),
            "{bad}"
        );
        assert_eq!(bad["field"], "messages[1].role");
        assert_eq!(results[4]["error"], "session_exists");
        assert_eq!(results[5]["error"], "session_exists");
        assert_eq!(results[6]["error"], "payload_too_large");

        let session = app
            .call(Method::GET, &format!("/v1/sessions/{good}"), None)
            .await;
        assert_eq!(session.status, StatusCode::OK);
        assert_eq!(session.body["message_count"], 3);
        assert_eq!(session.body["user_id"], "u-1");
        assert_eq!(session.body["ttl_seconds"], 600);
        let turns = history(&app, &good).await;
        assert_eq!(turns[0]["content"], "Hi ünïcødé 👋");
        assert_eq!(turns[0]["created_at"], "2024-03-01T12:00:00Z");
        assert_eq!(turns[2]["role"], "tool");
        assert!(turns[0]["tokens"].as_u64().unwrap() > 3);
        assert!(turns[1]["id"].as_str().unwrap().starts_with("1_"));
        let listed = app.call(Method::GET, "/v1/users/u-1/sessions", None).await;
        assert_eq!(listed.body["data"][0]["session_id"], good.as_str());
        let generated = results[1]["session_id"].as_str().unwrap();
        assert_eq!(history(&app, generated).await[0]["content"], "no id given");
        assert_eq!(history(&app, &dup).await[0]["content"], "first");

        if backend == Backend::Redis {
            assert!(app.session_keys(&bad_role).await.is_empty());
            let sessions = app
                .keys()
                .await
                .into_iter()
                .filter(|k| k.ends_with(":meta"))
                .count();
            assert_eq!(sessions, 4, "three imported and the one made first");
        }
        let missing = app
            .call(Method::GET, &format!("/v1/sessions/{bad_role}"), None)
            .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn append_and_replace_change_only_live_sessions_of_the_caller() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let id = unique("ar");
        let original = json!({"session_id": id, "user_id": "ann", "messages": [msg("user", "1"), msg("assistant", "2")]});
        import(&app, "create", &[original]).await;

        let more = json!({"session_id": id, "messages": [msg("user", "3"), msg("assistant", "4")]});
        let appended = import(&app, "append", std::slice::from_ref(&more)).await;
        assert_eq!(
            appended.body["results"][0]["status"], "appended",
            "{backend:?}"
        );
        assert_eq!(appended.body["results"][0]["messages"], 2);
        let turns = history(&app, &id).await;
        let contents: Vec<&str> = turns
            .iter()
            .map(|t| t["content"].as_str().unwrap())
            .collect();
        assert_eq!(contents, ["1", "2", "3", "4"]);
        assert!(
            turns[3]["id"].as_str().unwrap().starts_with("3_"),
            "ids follow positions"
        );

        let twice = [
            json!({"session_id": id, "messages": [msg("user", "5")]}),
            json!({"session_id": id, "messages": [msg("assistant", "6")]}),
        ];
        let in_order = import(&app, "append", &twice).await;
        assert_eq!(
            in_order.body["imported"], 2,
            "{backend:?}: {}",
            in_order.body
        );
        assert_eq!(history(&app, &id).await[5]["content"], "6");

        let with_settings = json!({"session_id": id, "model": "echo", "messages": []});
        let refused = import(&app, "append", &[with_settings]).await;
        assert_eq!(refused.body["results"][0]["field"], "model");

        let other = app.as_tenant(GLOBEX_KEY);
        for mode in ["append", "replace"] {
            let foreign = import(&other, mode, std::slice::from_ref(&more)).await;
            assert_eq!(
                foreign.body["results"][0]["error"], "session_not_found",
                "{mode}"
            );
            let unknown = json!({"session_id": unique("nope"), "messages": []});
            let missing = import(&app, mode, &[unknown]).await;
            assert_eq!(
                missing.body["results"][0]["error"], "session_not_found",
                "{mode}"
            );
        }
        assert_eq!(
            history(&app, &id).await.len(),
            6,
            "foreign writes changed nothing"
        );

        let replacement = json!({"session_id": id, "user_id": "bob", "system_prompt": "New.", "messages": [msg("user", "fresh")]});
        let replaced = import(&app, "replace", &[replacement]).await;
        assert_eq!(replaced.body["results"][0]["status"], "replaced");
        let turns = history(&app, &id).await;
        assert_eq!(turns.len(), 1);
        assert_eq!(turns[0]["content"], "fresh");
        let session = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(session.body["system_prompt"], "New.");
        assert_eq!(session.body["message_count"], 1);
        let ann = app.call(Method::GET, "/v1/users/ann/sessions", None).await;
        assert_eq!(
            ann.body["data"],
            json!([]),
            "{backend:?}: left the old user's index"
        );
        let bob = app.call(Method::GET, "/v1/users/bob/sessions", None).await;
        assert_eq!(bob.body["data"][0]["session_id"], id.as_str());
    }
}

#[tokio::test]
async fn an_expired_session_is_gone_for_append_and_replace_and_free_for_create() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let id = unique("exp");
        let short = json!({"session_id": id, "ttl_seconds": 1, "messages": [msg("user", "old")]});
        import(&app, "create", &[short]).await;
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let again = json!({"session_id": id, "messages": [msg("user", "new")]});
        for mode in ["append", "replace"] {
            let reply = import(&app, mode, std::slice::from_ref(&again)).await;
            assert_eq!(
                reply.body["results"][0]["error"], "session_not_found",
                "{backend:?} {mode}"
            );
        }
        let created = import(&app, "create", &[again]).await;
        assert_eq!(created.body["results"][0]["status"], "created");
        let turns = history(&app, &id).await;
        assert_eq!(
            turns.len(),
            1,
            "{backend:?}: nothing of the old session leaked in"
        );
        assert_eq!(turns[0]["content"], "new");
    }
}

#[tokio::test]
async fn exports_stream_the_import_format_and_respect_tenants() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let user = unique("user");
        let ids = [unique("e1"), unique("e2")];
        let items: Vec<Value> = ids
            .iter()
            .map(|id| {
                json!({"session_id": id, "user_id": user, "created_at": "2024-01-01T00:00:00Z",
                             "messages": [msg("user", "q"), msg("assistant", "a")]})
            })
            .collect();
        import(&app, "create", &items).await;
        let (status, text) = export_session(&app, &ids[0]).await;
        assert_eq!(status, StatusCode::OK);
        let expected = format!(
            "{{\"session_id\":\"{}\",\"user_id\":\"{user}\",\"model\":\"echo\",\"ttl_seconds\":1800,\"metadata\":{{}},\"created_at\":\"2024-01-01T00:00:00Z\",\"messages\":[{m}\"user\",\"content\":\"q\",{t}}},{m}\"assistant\",\"content\":\"a\",{t}}}]}}\n",
            ids[0],
            m = "{\"role\":",
            t = "\"created_at\":\"2024-03-01T12:00:00Z\""
        );
        assert_eq!(text, expected, "{backend:?}");
        let response = app
            .http
            .get(format!("{}/v1/users/{user}/export", app.address))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["content-type"], "application/x-ndjson");
        let lines = response.text().await.unwrap();
        assert_eq!(lines.lines().count(), 2);
        let (status, _) = export_session(&app.as_tenant(GLOBEX_KEY), &ids[0]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}
