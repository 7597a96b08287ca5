//! The user index names sessions by id, and an id can change hands: a session expires, and an
//! import (which keeps ids) makes one of the same id for another tenant or user. Listing and
//! logout must reach only sessions of the index's own tenant and user; and a logout deletes
//! what it found, nothing created while it ran.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    helpers::{BACKENDS, GLOBEX_KEY, TestApp, spawn_app},
    import_export,
};

async fn import(app: &TestApp, item: Value) {
    let reply = import_export::import(app, "create", &[item]).await;
    assert_eq!(reply.body["imported"], 1, "{}", reply.body);
}

pub(crate) async fn listed(app: &TestApp, user: &str) -> Vec<String> {
    let reply = app
        .call(Method::GET, &format!("/v1/users/{user}/sessions"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session_id"].as_str().unwrap().to_string())
        .collect()
}

pub(crate) async fn logout(app: &TestApp, user: &str) -> u64 {
    let reply = app
        .call(Method::DELETE, &format!("/v1/users/{user}/sessions"), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["deleted"].as_u64().unwrap()
}

async fn exported(app: &TestApp, user: &str) -> String {
    let (status, text) = import_export::export(app, &format!("/v1/users/{user}/export")).await;
    assert_eq!(status, StatusCode::OK);
    text
}

/// `owner` imports `id` for `user` with a 1 s TTL; once it expired, `taker` imports the same
/// id for `taker_user`. Nothing the owner's user index offers may reach the new session.
async fn id_changes_hands(owner: &TestApp, user: &str, taker: &TestApp, taker_user: &str) {
    let id = "legacy-42";
    import(
        owner,
        json!({"session_id": id, "user_id": user, "ttl_seconds": 1, "messages": []}),
    )
    .await;
    assert_eq!(listed(owner, user).await, [id]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    import(
        taker,
        json!({"session_id": id, "user_id": taker_user, "ttl_seconds": 600,
               "system_prompt": "taker's secret", "metadata": {"owner": "taker"}, "messages": []}),
    )
    .await;

    assert_eq!(
        listed(owner, user).await,
        Vec::<String>::new(),
        "the old index must not list the new owner's session"
    );
    assert!(
        !exported(owner, user).await.contains("taker's secret"),
        "nor export it"
    );
    assert_eq!(logout(owner, user).await, 0, "nor delete it");
    let still = taker
        .call(Method::GET, &format!("/v1/sessions/{id}"), None)
        .await;
    assert_eq!(still.status, StatusCode::OK, "the new owner keeps it");
    assert_eq!(still.body["system_prompt"], "taker's secret");
    assert_eq!(listed(taker, taker_user).await, [id]);
    assert_eq!(
        logout(taker, taker_user).await,
        1,
        "its own index reaches it"
    );
}

#[tokio::test]
async fn an_expired_id_taken_by_another_tenant_is_not_listed_or_deleted() {
    for backend in BACKENDS {
        let acme = spawn_app(backend).await;
        let globex = acme.as_tenant(GLOBEX_KEY);
        id_changes_hands(&acme, "u", &globex, "v").await;
    }
}

#[tokio::test]
async fn an_expired_id_taken_by_another_user_is_not_listed_or_deleted() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        id_changes_hands(&app, "u1", &app, "u2").await;
    }
}

#[tokio::test]
async fn sessions_created_during_a_logout_stay_listed_and_the_next_logout_deletes_them() {
    for backend in BACKENDS {
        let app = spawn_app(backend).await;
        for _ in 0..150 {
            app.create_session(json!({"user_id": "busy"})).await;
        }
        let logging_out = {
            let app = app.as_tenant(&app.key);
            tokio::spawn(async move { logout(&app, "busy").await })
        };
        // Sessions keep being created, one at a time, for as long as the logout runs.
        let mut during = Vec::new();
        while !logging_out.is_finished() && during.len() < 500 {
            let created = app.create_session(json!({"user_id": "busy"})).await;
            during.push(created["session_id"].as_str().unwrap().to_string());
        }
        let first = logging_out.await.unwrap();
        assert!(first >= 150, "{backend:?}: the logout deleted {first}");
        let mut survivors = Vec::new();
        for id in &during {
            let reply = app
                .call(Method::GET, &format!("/v1/sessions/{id}"), None)
                .await;
            if reply.status == StatusCode::OK {
                survivors.push(id.clone());
            }
        }
        let mut listing = listed(&app, "busy").await;
        listing.sort();
        survivors.sort();
        assert_eq!(
            listing,
            survivors,
            "{backend:?}: every session that outlived the logout is in the index ({} created during it)",
            during.len()
        );
        assert_eq!(logout(&app, "busy").await, survivors.len() as u64);
        for id in &during {
            let reply = app
                .call(Method::GET, &format!("/v1/sessions/{id}"), None)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{backend:?}: the second logout left {id}"
            );
        }
    }
}
