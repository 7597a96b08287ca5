//! Redis killed (`kill -9`) and started again on the same port and data (an append-only
//! file): what survives in the file must not lock a session for long, and connections the
//! restart broke must not fail requests.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use session_relay::config::Settings;

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    helpers::{Backend, Reply, TestApp, spawn_with, test_settings},
    limits::{send, with_upstream},
    redis_server::{RedisServer, free_port},
};

/// A Redis of its own that keeps its data in a temporary directory, to be killed and
/// started again there on the same port; and a fake upstream.
struct Durable {
    dir: tempfile::TempDir,
    port: u16,
    /// `None` between a crash and the restart.
    redis: Option<RedisServer>,
    fake: FakeUpstream,
}

impl Durable {
    async fn start() -> Durable {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let redis = Some(RedisServer::start_durable(port, dir.path()));
        let fake = FakeUpstream::start().await;
        Durable {
            dir,
            port,
            redis,
            fake,
        }
    }

    fn settings(&self) -> Settings {
        let url = format!("redis://127.0.0.1:{}", self.port);
        with_upstream(
            test_settings(Backend::Redis, Some(url)),
            &self.fake.base_url,
        )
    }

    /// `kill -9`: no shutdown, no last write.
    fn crash(&mut self) {
        if let Some(mut redis) = self.redis.take() {
            redis.kill9();
        }
    }

    /// The same server again, on the same port and data.
    fn restart(&mut self) {
        self.redis = Some(RedisServer::start_durable(self.port, self.dir.path()));
    }
}

async fn session(app: &TestApp) -> String {
    let created = app.create_session(json!({"model": "fake-gpt"})).await;
    created["session_id"].as_str().unwrap().to_string()
}

/// Waits until the fake upstream is answering a request: the send has its lease.
async fn until_upstream_called(fake: &FakeUpstream) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.in_flight() == 0 {
        assert!(
            Instant::now() < deadline,
            "the send never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn assert_ok(what: &str, reply: &Reply) {
    assert!(
        reply.status.is_success(),
        "{what}: {} {}",
        reply.status,
        reply.body
    );
}

#[test]
fn the_default_lease_is_short_and_renewed_well_before_it_lapses() {
    let sessions = Settings::default().sessions;
    assert!(sessions.lease_seconds <= 15, "{}", sessions.lease_seconds);
    assert!(sessions.lease_renew_seconds * 2 <= sessions.lease_seconds);
}

#[tokio::test]
async fn a_lease_that_survived_a_restart_is_given_back_within_a_renewal_period() {
    let mut redis = Durable::start().await;
    // The defaults, as an operator has them: the test must show what they cost.
    let settings = redis.settings();
    let renewal = Duration::from_secs(settings.sessions.lease_renew_seconds);
    let app = spawn_with(settings).await;
    let id = session(&app).await;

    redis
        .fake
        .set(Behaviour::slow_echo(Duration::from_millis(300)));
    let in_flight = {
        let (app, id) = (app.as_tenant(&app.key), id.clone());
        tokio::spawn(async move { send(&app, &id, json!({"content": "slow"})).await })
    };
    until_upstream_called(&redis.fake).await;
    redis.crash();
    let failed = in_flight.await.unwrap();
    assert_eq!(
        failed.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        failed.body
    );
    redis.restart();
    let back = Instant::now();

    // The lease was in the append-only file: the session is busy until it is given back
    // (and Redis may answer `LOADING` for a moment: 503).
    redis.fake.set(Behaviour::echo(5, 5));
    let bound = renewal + Duration::from_secs(1);
    let mut busy = 0;
    let last = loop {
        let reply = send(&app, &id, json!({"content": "again"})).await;
        let waiting = [StatusCode::CONFLICT, StatusCode::SERVICE_UNAVAILABLE];
        if !waiting.contains(&reply.status) || back.elapsed() > bound {
            break reply;
        }
        busy += usize::from(reply.status == StatusCode::CONFLICT);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ok(
        &format!(
            "a send {:?} after Redis came back ({busy} answered 409 before)",
            back.elapsed()
        ),
        &last,
    );
    let history = app
        .call(Method::GET, &format!("/v1/sessions/{id}/messages"), None)
        .await;
    assert_eq!(history.body["data"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn connections_broken_by_a_restart_fail_no_request() {
    let mut redis = Durable::start().await;
    redis.fake.set(Behaviour::echo(5, 5));
    let mut settings = redis.settings();
    settings.server.workers = 2;
    let app = spawn_with(settings).await;
    let id = session(&app).await;
    let path = format!("/v1/sessions/{id}");

    // Several pooled connections on each worker, all used just now.
    let warm = (0..16).map(|_| app.call(Method::GET, &path, None));
    for reply in futures_util::future::join_all(warm).await {
        assert_ok("warming the pool", &reply);
    }
    redis.crash();
    redis.restart();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One at a time, so that each takes the connection its worker used last.
    for round in 0..4 {
        let read = app.call(Method::GET, &path, None).await;
        assert_ok(&format!("round {round}: read"), &read);
        let sent = send(&app, &id, json!({"content": format!("turn {round}")})).await;
        assert_ok(&format!("round {round}: send"), &sent);
        let history = app
            .call(Method::GET, &format!("{path}/messages"), None)
            .await;
        assert_ok(&format!("round {round}: history"), &history);
    }
    let created = app
        .call(Method::POST, "/v1/sessions", Some(json!({})))
        .await;
    assert_ok("create", &created);
}

#[tokio::test]
async fn a_send_that_outlasts_its_lease_keeps_it_by_renewing() {
    for backend in crate::helpers::BACKENDS {
        let fake = FakeUpstream::start().await;
        fake.set(Behaviour::slow_echo(Duration::from_millis(3500)));
        let mut settings = with_upstream(test_settings(backend, None), &fake.base_url);
        settings.sessions.lease_seconds = 2;
        settings.sessions.lease_renew_seconds = 1;
        let app = spawn_with(settings).await;
        let id = session(&app).await;
        let slow = {
            let (app, id) = (app.as_tenant(&app.key), id.clone());
            tokio::spawn(async move { send(&app, &id, json!({"content": "slow"})).await })
        };
        // Past the lease: still held, so another send is refused, not let in.
        until_upstream_called(&fake).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let other = send(&app, &id, json!({"content": "meanwhile"})).await;
        assert_eq!(
            other.status,
            StatusCode::CONFLICT,
            "{backend:?}: {}",
            other.body
        );
        let slow = slow.await.unwrap();
        assert_ok(
            &format!("{backend:?}: the send longer than its lease"),
            &slow,
        );
    }
}
