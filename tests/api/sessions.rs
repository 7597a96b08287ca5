//! The session lifecycle over HTTP: create, read, patch, touch, delete, TTL, tenants, users.

use std::time::Duration;

use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{BACKENDS, Backend, GLOBEX_KEY, spawn_app};

#[tokio::test]
async fn create_read_patch_delete_on_both_stores() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let created = app
            .create_session(json!({"system_prompt": "Be brief.", "user_id": "user-42", "metadata": {"plan": "pro", "x": 1}}))
            .await;
        let id = created["session_id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "128 random bits as hex");
        assert_eq!(created["object"], "session");
        assert_eq!(created["ttl_seconds"], 1800);
        assert_eq!(created["message_count"], 0);

        let read = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(read.status, StatusCode::OK);
        assert_eq!(read.body["system_prompt"], "Be brief.");

        let patched = app
            .call(
                Method::PATCH,
                &format!("/v1/sessions/{id}"),
                Some(json!({"metadata": {"x": null, "y": 2}, "temperature": 0.5, "system_prompt": null})),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
        assert_eq!(patched.body["metadata"], json!({"plan": "pro", "y": 2}));
        assert_eq!(patched.body["temperature"], 0.5);
        assert!(patched.body["system_prompt"].is_null());
        let reread = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(
            reread.body["metadata"], patched.body["metadata"],
            "{backend:?}: the patch was stored"
        );

        let user_change = app
            .call(
                Method::PATCH,
                &format!("/v1/sessions/{id}"),
                Some(json!({"user_id": "other"})),
            )
            .await;
        assert_eq!(user_change.status, StatusCode::BAD_REQUEST);
        assert_eq!(user_change.body["field"], "user_id");

        let deleted = app
            .call(Method::DELETE, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        let again = app
            .call(Method::DELETE, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(again.status, StatusCode::NOT_FOUND);
        assert_eq!(again.error_code(), "session_not_found");
        if backend == Backend::Redis {
            assert!(
                app.session_keys(id).await.is_empty(),
                "no key of a deleted session remains"
            );
        }
    }
}

#[tokio::test]
async fn sliding_ttl_refreshes_every_key_and_expiry_is_final() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let created = app
            .create_session(json!({"ttl_seconds": 2, "user_id": "ttl-user"}))
            .await;
        let id = created["session_id"].as_str().unwrap().to_string();
        if backend == Backend::Redis {
            // Give the session a stored turn and an idempotency record, so that all keys exist.
            let mut conn = app.redis().await;
            let _: () = conn
                .rpush(app.session_key(&id, "turns"), "{}")
                .await
                .unwrap();
            let _: () = conn
                .hset(app.session_key(&id, "idem"), "k", "{}")
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let touched = app
            .call(Method::POST, &format!("/v1/sessions/{id}/touch"), None)
            .await;
        assert_eq!(touched.status, StatusCode::OK);
        if backend == Backend::Redis {
            let mut conn = app.redis().await;
            let keys = app.session_keys(&id).await;
            assert_eq!(keys.len(), 3, "meta, turns and idem: {keys:?}");
            for key in keys {
                let pttl: i64 = conn.pttl(&key).await.unwrap();
                assert!(
                    pttl > 1900,
                    "{key} was refreshed to the full TTL, has {pttl} ms"
                );
            }
        }
        // A read does not refresh: after the TTL passes the session is gone everywhere.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let read = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(
            read.status,
            StatusCode::OK,
            "{backend:?}: 1.2 s after a touch with a 2 s TTL"
        );
        tokio::time::sleep(Duration::from_millis(1000)).await;
        for (method, path) in [
            (Method::GET, format!("/v1/sessions/{id}")),
            (Method::PATCH, format!("/v1/sessions/{id}")),
            (Method::POST, format!("/v1/sessions/{id}/touch")),
            (Method::GET, format!("/v1/sessions/{id}/messages")),
            (Method::DELETE, format!("/v1/sessions/{id}")),
        ] {
            let reply = app.call(method.clone(), &path, Some(json!({}))).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{backend:?} {method} {path}"
            );
            assert_eq!(reply.error_code(), "session_not_found");
        }
        let listed = app
            .call(Method::GET, "/v1/users/ttl-user/sessions", None)
            .await;
        assert_eq!(
            listed.body["data"],
            json!([]),
            "{backend:?}: the user listing drops it"
        );
        if backend == Backend::Redis {
            assert!(
                app.keys().await.iter().all(|k| !k.contains(&id)),
                "no key of the session is left"
            );
        }
    }
}

#[tokio::test]
async fn foreign_tenant_sees_not_found_and_changes_nothing() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let original = app
            .create_session(json!({"user_id": "shared-user", "metadata": {"k": "v"}}))
            .await;
        let id = original["session_id"].as_str().unwrap();
        let globex = app.as_tenant(GLOBEX_KEY);
        for (method, path, body) in [
            (Method::GET, format!("/v1/sessions/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/sessions/{id}"),
                Some(json!({"metadata": {"k": "stolen"}})),
            ),
            (Method::POST, format!("/v1/sessions/{id}/touch"), None),
            (Method::GET, format!("/v1/sessions/{id}/messages"), None),
            (Method::DELETE, format!("/v1/sessions/{id}"), None),
        ] {
            let reply = globex.call(method.clone(), &path, body).await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{backend:?} {method} {path}"
            );
            assert_eq!(reply.error_code(), "session_not_found");
        }
        let their_list = globex
            .call(Method::GET, "/v1/users/shared-user/sessions", None)
            .await;
        assert_eq!(their_list.body["data"], json!([]));
        let their_logout = globex
            .call(Method::DELETE, "/v1/users/shared-user/sessions", None)
            .await;
        assert_eq!(their_logout.body, json!({"deleted": 0}));

        let after = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(after.status, StatusCode::OK);
        assert_eq!(after.body["metadata"], json!({"k": "v"}));
        assert_eq!(
            after.body["last_activity_at"], original["last_activity_at"],
            "nothing refreshed it"
        );
    }
}

#[tokio::test]
async fn logout_deletes_every_session_of_the_user() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(
                app.create_session(json!({"user_id": "leaving@example.com"}))
                    .await["session_id"]
                    .clone(),
            );
        }
        let bystander = app.create_session(json!({"user_id": "staying"})).await;

        let first = app
            .call(
                Method::GET,
                "/v1/users/leaving@example.com/sessions?limit=2",
                None,
            )
            .await;
        assert_eq!(first.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(first.body["has_more"], true);
        let cursor = first.body["next_cursor"].as_str().unwrap();
        let second = app
            .call(
                Method::GET,
                &format!("/v1/users/leaving@example.com/sessions?limit=2&after={cursor}"),
                None,
            )
            .await;
        let mut listed: Vec<_> = first.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].clone())
            .collect();
        listed.extend(
            second.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["session_id"].clone()),
        );
        assert_eq!(listed, ids, "oldest first, every session once");
        assert_eq!(second.body["has_more"], false);

        let logout = app
            .call(
                Method::DELETE,
                "/v1/users/leaving@example.com/sessions",
                None,
            )
            .await;
        assert_eq!(logout.body, json!({"deleted": 3}), "{backend:?}");
        for id in &ids {
            let reply = app
                .call(
                    Method::GET,
                    &format!("/v1/sessions/{}", id.as_str().unwrap()),
                    None,
                )
                .await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND);
        }
        let bystander_id = bystander["session_id"].as_str().unwrap();
        let kept = app
            .call(Method::GET, &format!("/v1/sessions/{bystander_id}"), None)
            .await;
        assert_eq!(kept.status, StatusCode::OK);
        if backend == Backend::Redis {
            let keys = app.keys().await;
            for id in &ids {
                assert!(
                    keys.iter().all(|k| !k.contains(id.as_str().unwrap())),
                    "{keys:?}"
                );
            }
            let user_indexes = keys.iter().filter(|k| k.contains(":user:")).count();
            assert_eq!(
                user_indexes, 1,
                "only the bystander's index is left: {keys:?}"
            );
        }
    }
}

/// After every kind of write (PATCH, send, touch), all keys of the session expire
/// together, at the session's full TTL.
#[tokio::test]
async fn every_write_leaves_all_keys_of_a_session_on_one_expiry() {
    let app = spawn_app(Backend::Redis).await;
    let created = app
        .create_session(json!({"ttl_seconds": 60, "user_id": "ttl-writer"}))
        .await;
    let id = created["session_id"].as_str().unwrap().to_string();
    let send = |content: &'static str| {
        let request = app
            .http
            .post(format!("{}/v1/sessions/{id}/messages", app.address))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", content)
            .json(&json!({"content": content}));
        crate::helpers::send(request)
    };
    assert_eq!(send("first").await.status, StatusCode::OK);
    let mut conn = app.redis().await;
    let writes = [
        (
            Method::PATCH,
            format!("/v1/sessions/{id}"),
            Some(json!({"metadata": {"k": 1}})),
        ),
        (Method::POST, format!("/v1/sessions/{id}/touch"), None),
    ];
    for step in 0..3 {
        // Let the keys drift apart if a write missed one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let what = match writes.get(step) {
            Some((method, path, body)) => {
                let reply = app.call(method.clone(), path, body.clone()).await;
                assert_eq!(
                    reply.status,
                    StatusCode::OK,
                    "{method} {path}: {}",
                    reply.body
                );
                format!("{method} {path}")
            }
            None => {
                assert_eq!(send("second").await.status, StatusCode::OK);
                "send".to_string()
            }
        };
        let keys = app.session_keys(&id).await;
        assert_eq!(keys.len(), 3, "meta, turns and idem after {what}: {keys:?}");
        let mut left = Vec::new();
        for key in &keys {
            left.push(conn.pttl::<_, i64>(key).await.unwrap());
        }
        let (min, max) = (left.iter().min().unwrap(), left.iter().max().unwrap());
        assert!(
            *min > 59_000 && max - min < 100,
            "after {what}: {keys:?} have {left:?} ms left"
        );
    }
}
