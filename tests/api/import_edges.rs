//! Import edges: the JSON form, `Idempotency-Key` replays, and the import's own limits.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{BACKENDS, Backend, GLOBEX_KEY, spawn_app, spawn_with, test_settings},
    import_export::{import, import_raw, msg, ndjson, unique},
};

#[tokio::test]
async fn the_json_form_gives_the_same_results() {
    let app = spawn_app(Backend::Redis).await;
    let id = unique("json");
    let body = json!({"sessions": [
        {"session_id": id, "messages": [msg("user", "q"), msg("assistant", "a")]},
        {"messages": [{"role": "user", "content": "x", "created_at": "yesterday"}]},
    ]});
    let reply = app
        .call(Method::POST, "/v1/sessions/import", Some(body))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["imported"], 1);
    assert_eq!(reply.body["results"][1]["field"], "messages[0].created_at");
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions/import",
            Some(json!({"sessions": [], "tenant": "x"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.body["field"], "tenant");
}

#[tokio::test]
async fn a_retried_import_with_its_idempotency_key_is_harmless() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let body = ndjson(&[json!({"messages": [msg("user", "once")]})]);
        let key = unique("key");
        let first = import_raw(&app, "create", body.clone(), Some(&key)).await;
        let second = import_raw(&app, "create", body.clone(), Some(&key)).await;
        assert_eq!(second.status, StatusCode::OK);
        assert_eq!(
            first.body, second.body,
            "{backend:?}: replayed, not run again"
        );
        let other_mode = import_raw(&app, "replace", body.clone(), Some(&key)).await;
        assert_eq!(other_mode.status, StatusCode::UNPROCESSABLE_ENTITY);
        let mut changed = body.clone();
        changed.extend_from_slice(b"{}\n");
        let reused = import_raw(&app, "create", changed, Some(&key)).await;
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.error_code(), "idempotency_key_reused");
        let other_tenant = app.as_tenant(GLOBEX_KEY);
        let theirs = import_raw(&other_tenant, "create", body, Some(&key)).await;
        assert_ne!(
            theirs.body["results"][0]["session_id"],
            first.body["results"][0]["session_id"]
        );
    }
}

#[tokio::test]
async fn imports_have_their_own_body_limit() {
    let mut settings = test_settings(Backend::Redis, None);
    settings.server.max_body_bytes = 1024;
    settings.import.max_body_bytes = 64 * 1024;
    let app = spawn_with(settings).await;
    let items: Vec<Value> = (0..40)
        .map(|i| json!({"messages": [msg("user", &format!("{i} {}", "y".repeat(500)))]}))
        .collect();
    let reply = import(&app, "create", &items).await;
    assert_eq!(
        reply.body["imported"], 40,
        "the global 1 KiB limit does not apply"
    );
    let too_big: Vec<Value> = (0..200)
        .map(|_| json!({"messages": [msg("user", &"z".repeat(500))]}))
        .collect();
    let refused = import_raw(&app, "create", ndjson(&too_big), None).await;
    assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(refused.body["limit_bytes"], 64 * 1024);
    let bad_mode = import_raw(&app, "merge", ndjson(&items[..1]), None).await;
    assert_eq!(bad_mode.status, StatusCode::BAD_REQUEST);
}
