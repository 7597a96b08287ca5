//! Session ids are per tenant: caller-chosen ids, get-or-create, and the same id held by
//! two tenants as two unrelated sessions, through every route that finds a session by id.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::domain::session::new_id;

use crate::helpers::{Backend, GLOBEX_KEY, TestApp, spawn_app};

async fn both() -> Vec<TestApp> {
    vec![
        spawn_app(Backend::Redis).await,
        spawn_app(Backend::Memory).await,
    ]
}

fn without_ids(mut body: Value) -> Value {
    for field in ["session_id", "created_at", "last_activity_at", "expires_at"] {
        body.as_object_mut().map(|o| o.remove(field));
    }
    body
}

#[tokio::test]
async fn a_caller_chosen_id_is_unique_within_its_tenant_only() {
    for acme in both().await {
        let globex = acme.as_tenant(GLOBEX_KEY);
        let id = format!("customer-{}", new_id());
        let mine = acme
            .create_session(json!({"session_id": id, "system_prompt": "acme's", "user_id": "u"}))
            .await;
        assert_eq!(mine["session_id"], id.as_str());
        let again = acme
            .call(
                Method::POST,
                "/v1/sessions",
                Some(json!({"session_id": id})),
            )
            .await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
        assert_eq!(again.error_code(), "session_exists");

        let theirs = globex
            .create_session(json!({"session_id": id, "system_prompt": "globex's", "user_id": "u"}))
            .await;
        assert_eq!(theirs["system_prompt"], "globex's");
        let read = acme
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(read.body["system_prompt"], "acme's", "{}", read.body);

        // Sends land in each tenant's own session.
        let path = format!("/v1/sessions/{id}/messages");
        let sent = globex
            .call(
                Method::POST,
                &path,
                Some(json!({"content": "hi from globex"})),
            )
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
        let history = acme.call(Method::GET, &path, None).await;
        assert_eq!(
            history.body["data"].as_array().unwrap().len(),
            0,
            "{}",
            history.body
        );

        // Exports, user listings and deletes see the caller's own session only.
        let export = acme
            .call(Method::GET, &format!("/v1/sessions/{id}/export"), None)
            .await;
        assert_eq!(export.body["system_prompt"], "acme's", "{}", export.body);
        let listed = globex.call(Method::GET, "/v1/users/u/sessions", None).await;
        let data = listed.body["data"].as_array().unwrap().clone();
        assert_eq!(data.len(), 1, "{}", listed.body);
        assert_eq!(data[0]["system_prompt"], "globex's");
        let deleted = globex
            .call(Method::DELETE, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let read = acme
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(read.status, StatusCode::OK, "acme's session survives");
        let logout = globex
            .call(Method::DELETE, "/v1/users/u/sessions", None)
            .await;
        assert_eq!(logout.body["deleted"], 0, "{}", logout.body);
        let listed = acme.call(Method::GET, "/v1/users/u/sessions", None).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

        let bad = acme
            .call(
                Method::POST,
                "/v1/sessions",
                Some(json!({"session_id": "has space"})),
            )
            .await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["field"], "session_id", "{}", bad.body);
    }
}

#[tokio::test]
async fn put_gets_or_creates_and_never_overwrites() {
    for acme in both().await {
        let globex = acme.as_tenant(GLOBEX_KEY);
        let id = format!("conv-{}", new_id());
        let path = format!("/v1/sessions/{id}");
        let made = acme
            .call(Method::PUT, &path, Some(json!({"system_prompt": "first"})))
            .await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
        let kept = acme
            .call(Method::PUT, &path, Some(json!({"system_prompt": "second"})))
            .await;
        assert_eq!(kept.status, StatusCode::OK, "{}", kept.body);
        assert_eq!(
            kept.body["system_prompt"], "first",
            "settings are not overwritten"
        );
        // Another tenant's PUT of the same id makes its own session.
        let theirs = globex
            .call(Method::PUT, &path, Some(json!({"system_prompt": "globex"})))
            .await;
        assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);
        let read = acme.call(Method::GET, &path, None).await;
        assert_eq!(read.body["system_prompt"], "first");
        let mismatch = acme
            .call(Method::PUT, &path, Some(json!({"session_id": "other"})))
            .await;
        assert_eq!(mismatch.status, StatusCode::BAD_REQUEST);
    }
}

/// Before ids were per tenant, importing an id another tenant held answered
/// `session_exists`: an oracle, and a way to squat the other tenant's ids.
#[tokio::test]
async fn importing_a_foreign_id_is_neither_an_oracle_nor_a_squat() {
    for acme in both().await {
        let globex = acme.as_tenant(GLOBEX_KEY);
        let id = acme.new_session_id().await;
        let import = json!({"sessions": [{"session_id": id, "system_prompt": "globex's",
            "messages": [{"role": "user", "content": "hello"}]}]});
        let theirs = globex
            .call(Method::POST, "/v1/sessions/import", Some(import))
            .await;
        assert_eq!(theirs.body["imported"], 1, "{}", theirs.body);
        let export = globex
            .call(Method::GET, &format!("/v1/sessions/{id}/export"), None)
            .await;
        assert_eq!(export.body["system_prompt"], "globex's", "{}", export.body);
        let mine = acme
            .call(Method::GET, &format!("/v1/sessions/{id}/messages"), None)
            .await;
        assert_eq!(
            mine.body["data"].as_array().unwrap().len(),
            0,
            "{}",
            mine.body
        );
    }
}

/// Every route answers an id only another tenant holds exactly like one nobody holds.
#[tokio::test]
async fn a_foreign_id_answers_like_an_unknown_one() {
    for acme in both().await {
        let globex = acme.as_tenant(GLOBEX_KEY);
        let foreign = globex.new_session_id().await;
        let unknown = new_id();
        let calls: [(Method, &str, Option<Value>); 7] = [
            (Method::GET, "", None),
            (Method::PATCH, "", Some(json!({"temperature": 0.5}))),
            (Method::POST, "/touch", None),
            (Method::GET, "/messages", None),
            (Method::POST, "/messages", Some(json!({"content": "hi"}))),
            (Method::GET, "/export", None),
            (Method::DELETE, "", None),
        ];
        for (method, tail, body) in calls {
            let a = acme
                .call(
                    method.clone(),
                    &format!("/v1/sessions/{foreign}{tail}"),
                    body.clone(),
                )
                .await;
            let b = acme
                .call(
                    method.clone(),
                    &format!("/v1/sessions/{unknown}{tail}"),
                    body,
                )
                .await;
            assert_eq!((a.status, &a.body), (b.status, &b.body), "{method} {tail}");
        }
        let mut modes = Vec::new();
        for mode in ["append", "replace"] {
            let item = |id: &str| json!({"sessions": [{"session_id": id, "messages": []}]});
            let path = format!("/v1/sessions/import?mode={mode}");
            let a = acme.call(Method::POST, &path, Some(item(&foreign))).await;
            let b = acme.call(Method::POST, &path, Some(item(&unknown))).await;
            let strip = |body: &Value| without_ids(body["results"][0].clone());
            modes.push((strip(&a.body), strip(&b.body)));
        }
        for (a, b) in modes {
            assert_eq!(a, b);
        }
        let still = globex
            .call(Method::GET, &format!("/v1/sessions/{foreign}"), None)
            .await;
        assert_eq!(
            still.status,
            StatusCode::OK,
            "nothing touched the owner's session"
        );
    }
}
