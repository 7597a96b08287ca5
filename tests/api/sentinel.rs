//! The service behind Redis Sentinel (`store.mode = "sentinel"`): a primary, its replica
//! and three sentinels of the test's own, and the service following a failover, manual
//! (`SENTINEL FAILOVER`: the old primary is demoted and answers `READONLY`) and forced
//! (`kill -9` of the primary).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::json;
use session_relay::config::StoreMode;

use crate::{
    helpers::{Backend, TestApp, spawn_with, test_settings},
    limits::send,
    redis_server::{RedisServer, free_port},
};

/// The name the sentinels monitor the primary by.
const MASTER: &str = "relay";

struct Sentinels {
    /// The two data nodes; which one is the primary changes with a failover.
    nodes: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl Sentinels {
    fn start() -> Sentinels {
        let dir = tempfile::tempdir().unwrap();
        let primary = RedisServer::start_with(free_port(), "--repl-diskless-sync-delay 0");
        let replica = RedisServer::start_with(
            free_port(),
            &format!(
                "--replicaof 127.0.0.1 {} --repl-diskless-sync-delay 0",
                primary.port
            ),
        );
        let sentinels = (0..3)
            .map(|_| {
                let port = free_port();
                let config = dir.path().join(format!("sentinel-{port}.conf"));
                std::fs::write(
                    &config,
                    format!(
                        "sentinel monitor {MASTER} 127.0.0.1 {} 2\n\
                         sentinel down-after-milliseconds {MASTER} 1000\n\
                         sentinel failover-timeout {MASTER} 5000\n",
                        primary.port
                    ),
                )
                .unwrap();
                RedisServer::start_sentinel(port, &config)
            })
            .collect();
        let sentinels = Sentinels {
            nodes: vec![primary, replica],
            sentinels,
            _dir: dir,
        };
        sentinels.wait_until_watching();
        sentinels
    }

    fn seeds(&self) -> String {
        let urls: Vec<String> = self.sentinels.iter().map(RedisServer::url).collect();
        urls.join(",")
    }

    fn ask<T: redis::FromRedisValue>(
        &self,
        sentinel: usize,
        args: &[&str],
    ) -> redis::RedisResult<T> {
        let mut conn = self.sentinels[sentinel].client().get_connection()?;
        redis::cmd("SENTINEL").arg(args).query(&mut conn)
    }

    /// The port of the primary as the first sentinel names it.
    fn primary_port(&self) -> Option<u16> {
        let address: Vec<String> = self.ask(0, &["get-master-addr-by-name", MASTER]).ok()?;
        address.get(1)?.parse().ok()
    }

    /// Until the replica has the primary's data and every sentinel knows the replica and
    /// the two other sentinels: before that, a failover cannot happen.
    fn wait_until_watching(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let synced = role_info(&self.nodes[1]).contains("master_link_status:up");
            let ready = (0..3).all(|s| {
                let replicas: Vec<redis::Value> =
                    self.ask(s, &["replicas", MASTER]).unwrap_or_default();
                let others: Vec<redis::Value> =
                    self.ask(s, &["sentinels", MASTER]).unwrap_or_default();
                replicas.len() == 1 && others.len() == 2
            });
            if synced && ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels are not watching yet"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Until the sentinels name `port` as the primary and it says so itself.
    fn wait_until_primary(&self, port: u16, within: Duration) {
        let deadline = Instant::now() + within;
        let node = self.nodes.iter().find(|n| n.port == port).unwrap();
        while self.primary_port() != Some(port) || !role_info(node).contains("role:master") {
            assert!(
                Instant::now() < deadline,
                "{port} did not become the primary"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn role_info(node: &RedisServer) -> String {
    let Ok(mut conn) = node.client().get_connection() else {
        return String::new();
    };
    redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn)
        .unwrap_or_default()
}

async fn service(seeds: String) -> TestApp {
    let mut settings = test_settings(Backend::Memory, None);
    settings.store.redis_url = Some(seeds);
    settings.store.mode = StoreMode::Sentinel;
    settings.store.sentinel_master = MASTER.into();
    spawn_with(settings).await
}

/// Sends on one session, one after another, until `stop` is set (or a minute has
/// passed); every answer with when.
async fn sends_until(
    app: Arc<TestApp>,
    id: String,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> Vec<(Duration, String, StatusCode)> {
    let mut answers = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(60) {
        let content = format!("m{i}");
        let reply = send(&app, &id, json!({"content": content})).await;
        assert!(
            [
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::CONFLICT
            ]
            .contains(&reply.status),
            "{content}: {} {}",
            reply.status,
            reply.body
        );
        answers.push((start.elapsed(), content, reply.status));
        i += 1;
        // About 12 sends a second: the history stays within one page of 1,000 turns.
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    answers
}

/// How long after the sentinels have switched the primary the service may still fail: a
/// send the kill cut short may leave its lease on the new primary (it was replicated), so
/// the session may answer 409 until that lease is given back or lapses (15 s by default),
/// and the service gets a second more.
const RECOVERY: Duration = Duration::from_secs(16);

/// How long after the sentinels name the new primary the service may still write to the
/// old one: its next look at the sentinels, and a send under way.
const SWITCH_HEARD: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn a_service_behind_sentinel_follows_a_manual_and_a_forced_failover() {
    let sentinels = Arc::new(Mutex::new(Sentinels::start()));
    let seeds = sentinels.lock().unwrap().seeds();
    let app = Arc::new(service(seeds).await);
    let id = app.new_session_id().await;
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(sends_until(app.clone(), id.clone(), start, stop.clone()));

    tokio::time::sleep(Duration::from_secs(2)).await;
    // A manual failover: the old primary becomes a replica and refuses writes. Until the
    // sentinels demote it, it still takes writes, which are lost when it resyncs.
    let manual_began = start.elapsed();
    let watched = sentinels.clone();
    let (switched, named_at) = tokio::task::spawn_blocking(move || {
        let sentinels = watched.lock().unwrap();
        let old = sentinels.primary_port().unwrap();
        let new = sentinels
            .nodes
            .iter()
            .map(|n| n.port)
            .find(|p| *p != old)
            .unwrap();
        let () = sentinels.ask(0, &["failover", MASTER]).unwrap();
        sentinels.wait_until_primary(new, Duration::from_secs(15));
        let named_at = start.elapsed();
        sentinels.wait_until_watching_again(old);
        (old, named_at)
    })
    .await
    .unwrap();
    let manual_over = start.elapsed();

    // A forced one: the new primary dies; the old one, now its replica, takes over.
    let watched = sentinels.clone();
    let killed_at = start.elapsed();
    tokio::task::spawn_blocking(move || {
        let mut sentinels = watched.lock().unwrap();
        let primary = sentinels.primary_port().unwrap();
        let node = sentinels
            .nodes
            .iter()
            .position(|n| n.port == primary)
            .unwrap();
        sentinels.nodes[node].kill9();
        sentinels.wait_until_primary(switched, Duration::from_secs(20));
    })
    .await
    .unwrap();
    let forced_over = start.elapsed();
    tokio::time::sleep(RECOVERY + Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = load.await.unwrap();
    let failed: Vec<_> = answers.iter().filter(|a| a.2 != StatusCode::OK).collect();
    println!(
        "{} sends, {} failed: {:?}; manual failover from {manual_began:?}, new primary named \
         at {named_at:?}, old one resynced at {manual_over:?}; primary killed at {killed_at:?}, \
         replaced at {forced_over:?}",
        answers.len(),
        failed.len(),
        failed.iter().map(|a| (a.0, a.2)).collect::<Vec<_>>()
    );
    for (at, content, status) in &failed {
        let in_manual = *at >= manual_began && *at <= manual_over + RECOVERY;
        let in_forced = *at >= killed_at && *at <= forced_over + RECOVERY;
        assert!(
            in_manual || in_forced,
            "{content} failed ({status}) at {at:?}"
        );
    }
    let after = answers.iter().filter(|a| a.0 > forced_over + RECOVERY);
    assert!(
        after.clone().count() > 20,
        "too few sends after the failovers"
    );
    assert!(after.clone().all(|a| a.2 == StatusCode::OK), "{answers:?}");

    // Every acknowledged turn is there but those the old primary took in the moment before
    // the service heard of the switch, or the killed one had not yet sent on.
    let read = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=1000"),
            None,
        )
        .await;
    let history = read.body["data"].as_array().unwrap();
    let missing: Vec<_> = answers
        .iter()
        .filter(|(_, content, status)| {
            *status == StatusCode::OK
                && !history
                    .iter()
                    .any(|t| t["role"] == "user" && t["content"] == content.as_str())
        })
        .collect();
    println!(
        "{} acknowledged turns missing afterwards: {missing:?}",
        missing.len()
    );
    for (at, content, _) in &missing {
        let switching = *at >= manual_began && *at <= named_at + SWITCH_HEARD;
        let dying = *at + Duration::from_millis(500) >= killed_at && *at <= killed_at;
        assert!(
            switching || dying,
            "{content}, acknowledged at {at:?}, is lost"
        );
    }
}

impl Sentinels {
    /// After a manual failover, until the demoted node replicates from the new primary
    /// and the sentinels list it as the replica: the next failover needs it synced.
    fn wait_until_watching_again(&self, demoted: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let node = self.nodes.iter().find(|n| n.port == demoted).unwrap();
        while !role_info(node).contains("master_link_status:up") {
            assert!(
                Instant::now() < deadline,
                "the demoted primary never synced"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
