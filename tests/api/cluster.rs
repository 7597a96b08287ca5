//! The service on a Redis Cluster: where its keys go, several instances on one cluster,
//! and a failover or a dead primary under load. The store suite and the API suites run on
//! the shared cluster too (`Backend::Cluster`); the tests here that break a cluster start
//! one of their own.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use session_relay::{config::Settings, startup::Application};

use crate::{
    fake_upstream::{Behaviour, FakeUpstream},
    helpers::{Backend, TestApp, acme_session_key, spawn_app, spawn_with, test_settings},
    limits::{send, with_upstream},
    redis_cluster::RedisCluster,
    user_index::{listed, logout},
};

#[tokio::test]
async fn a_service_in_single_mode_pointed_at_a_cluster_node_refuses_to_start_and_names_the_setting()
{
    let node = RedisCluster::shared().urls()[0].clone();
    let settings = test_settings(Backend::Redis, Some(node));
    let refused = Application::build(settings)
        .await
        .err()
        .expect("it must not start");
    let message = refused.to_string();
    assert!(message.contains("store.mode = \"cluster\""), "{message}");
}

#[tokio::test]
async fn a_users_sessions_on_every_primary_are_listed_and_logged_out_together() {
    let app = spawn_app(Backend::Cluster).await;
    let cluster = RedisCluster::shared();
    let mut ids = Vec::new();
    for _ in 0..24 {
        let created = app
            .create_session(json!({"model": "echo", "user_id": "spread"}))
            .await;
        ids.push(created["session_id"].as_str().unwrap().to_string());
    }
    let holders: HashSet<usize> = ids
        .iter()
        .map(|id| cluster.primary_of(&acme_session_key(&app.prefix, id, "meta"), 0))
        .collect();
    assert_eq!(holders.len(), 3, "24 sessions land on every primary");

    let mut names = listed(&app, "spread").await;
    names.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(names, expected);
    assert_eq!(logout(&app, "spread").await, 24);
    assert!(listed(&app, "spread").await.is_empty());
    for id in &ids {
        let read = app
            .call(Method::GET, &format!("/v1/sessions/{id}"), None)
            .await;
        assert_eq!(read.status, StatusCode::NOT_FOUND, "{id}");
    }
}

/// Three instances on one cluster, one session, sends from every instance at once: the
/// lease lets one in at a time, so the history alternates and holds each accepted send's
/// two turns, no more.
#[tokio::test]
async fn three_instances_on_one_cluster_accept_one_send_at_a_time() {
    let fake = FakeUpstream::start().await;
    fake.set(Behaviour::slow_echo(Duration::from_millis(40)));
    let settings = with_upstream(test_settings(Backend::Cluster, None), &fake.base_url);
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(spawn_with(settings.clone()).await);
    }
    let id = instances[0]
        .create_session(json!({"model": "fake-gpt"}))
        .await["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    let mut sends = Vec::new();
    for round in 0..8 {
        for (n, app) in instances.iter().enumerate() {
            let (app, id) = (app.as_tenant(&app.key), id.clone());
            sends.push(tokio::spawn(async move {
                let content = format!("instance {n} round {round}");
                send(&app, &id, json!({"content": content})).await.status
            }));
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let mut accepted = 0;
    for sent in sends {
        match sent.await.unwrap() {
            StatusCode::OK => accepted += 1,
            StatusCode::CONFLICT => {}
            other => panic!("a send answered {other}"),
        }
    }
    assert!(accepted >= 2, "only {accepted} sends were accepted");

    let history = messages(&instances[2], &id).await;
    assert_eq!(history.len(), 2 * accepted, "{history:?}");
    for (i, turn) in history.iter().enumerate() {
        let role = ["user", "assistant"][i % 2];
        assert_eq!(turn["role"], role, "turn {i}: {history:?}");
    }
    assert!(
        fake.max_in_flight() <= 1,
        "{} upstream calls for one session at once",
        fake.max_in_flight()
    );
}

async fn messages(app: &TestApp, id: &str) -> Vec<Value> {
    let read = app
        .call(
            Method::GET,
            &format!("/v1/sessions/{id}/messages?limit=1000"),
            None,
        )
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    read.body["data"].as_array().unwrap().clone()
}

/// What the load saw: every answer, and when.
#[derive(Default)]
struct Seen {
    /// `(since the start, session, content sent, status, body)`.
    answers: Vec<(Duration, usize, String, StatusCode, Value)>,
}

impl Seen {
    /// From the first failed answer to the last one, if any failed.
    fn error_window(&self) -> Option<(Duration, Duration)> {
        let failed = self.answers.iter().filter(|a| a.3 != StatusCode::OK);
        let times: Vec<Duration> = failed.map(|a| a.0).collect();
        Some((*times.iter().min()?, *times.iter().max()?))
    }
}

/// When the fault began and when the cluster was whole again (a replica promoted).
struct Fault {
    began: Duration,
    over: Duration,
}

/// A private cluster (it is broken on purpose), a service on it, and sessions of which
/// the first, the hot one, gets a send every 20 ms and the others one every 50 ms: about
/// 130 requests a second in all, for `for_how_long`. `fault` runs once, `fault_after` in,
/// on the primary of the hot session, and returns once the cluster has a primary for
/// every slot again. Returns what the load saw and each session's history afterwards.
async fn under_load(
    fault_after: Duration,
    for_how_long: Duration,
    fault: impl FnOnce(&mut RedisCluster, usize) + Send + 'static,
) -> (Seen, Vec<Vec<Value>>, Fault) {
    let mut cluster = RedisCluster::start();
    let mut settings: Settings = test_settings(Backend::Cluster, Some(cluster.seeds()));
    settings.server.workers = 2;
    let app = Arc::new(spawn_with(settings).await);
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(app.new_session_id().await);
    }
    let hot = cluster.primary_of(&acme_session_key(&app.prefix, &ids[0], "meta"), 0);

    let seen = Arc::new(Mutex::new(Seen::default()));
    let start = Instant::now();
    let mut load = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let (app, id, seen) = (app.clone(), id.clone(), seen.clone());
        let pause = Duration::from_millis(if n == 0 { 20 } else { 50 });
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while start.elapsed() < for_how_long {
                let content = format!("s{n} m{i}");
                let reply = send(&app, &id, json!({"content": content})).await;
                let answer = (start.elapsed(), n, content, reply.status, reply.body);
                seen.lock().unwrap().answers.push(answer);
                i += 1;
                tokio::time::sleep(pause).await;
            }
        }));
    }
    tokio::time::sleep(fault_after).await;
    let began = start.elapsed();
    let cluster = tokio::task::spawn_blocking(move || {
        fault(&mut cluster, hot);
        cluster
    })
    .await
    .unwrap();
    let fault = Fault {
        began,
        over: start.elapsed(),
    };
    for task in load {
        task.await.unwrap();
    }
    let mut histories = Vec::new();
    for id in &ids {
        histories.push(messages(&app, id).await);
    }
    drop(cluster);
    let seen = Arc::try_unwrap(seen).ok().unwrap().into_inner().unwrap();
    (seen, histories, fault)
}

/// What every fault must keep: no 500, no cross-slot error, only 503 (and 409 while a
/// lease the fault orphaned is given back) as failures, none before the fault and none
/// later than [`RECOVERY`] after the cluster was whole again. Returns the acknowledged
/// turns missing afterwards, with when they were acknowledged.
fn check(seen: &Seen, histories: &[Vec<Value>], fault: &Fault) -> Vec<(Duration, String)> {
    for (at, _, content, status, body) in &seen.answers {
        assert!(
            [
                StatusCode::OK,
                StatusCode::SERVICE_UNAVAILABLE,
                StatusCode::CONFLICT
            ]
            .contains(status),
            "{content} at {at:?}: {status} {body}"
        );
        assert!(!body.to_string().contains("CROSSSLOT"), "{content}: {body}");
    }
    let failed = seen
        .answers
        .iter()
        .filter(|a| a.3 != StatusCode::OK)
        .count();
    let window_seen = seen.error_window();
    println!(
        "{} answers, {failed} failed, failures between {window_seen:?}; the fault began at \
         {:?}, the cluster was whole at {:?}",
        seen.answers.len(),
        fault.began,
        fault.over
    );
    if let Some((first, last)) = window_seen {
        assert!(first >= fault.began, "a failure before the fault");
        assert!(
            last <= fault.over + RECOVERY,
            "failures until {last:?}, the cluster was whole at {:?}",
            fault.over
        );
    }
    let mut missing = Vec::new();
    for (at, n, content, status, _) in &seen.answers {
        let stored = histories[*n]
            .iter()
            .any(|turn| turn["role"] == "user" && turn["content"] == content.as_str());
        if *status == StatusCode::OK && !stored {
            missing.push((*at, content.clone()));
        }
    }
    println!("acknowledged turns missing afterwards: {missing:?}");
    missing
}

/// The cluster's own failure detection time, as the harness sets it.
const NODE_TIMEOUT: Duration = Duration::from_millis(2000);

/// How long after the cluster has a primary for every slot again the service may still
/// fail requests: it learns the new primary from the cluster and retries within a
/// command's deadline.
const RECOVERY: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_manual_failover_of_the_hot_sessions_primary_loses_nothing() {
    let (seen, histories, fault) = under_load(
        Duration::from_secs(2),
        Duration::from_secs(7),
        |cluster, hot| {
            let replica = cluster.replica_of(hot, hot);
            cluster.failover(replica);
        },
    )
    .await;
    let missing = check(&seen, &histories, &fault);
    assert!(
        missing.is_empty(),
        "a coordinated failover lost {missing:?}"
    );
    assert_serves_after(&seen, fault.over + RECOVERY);
}

#[tokio::test]
async fn a_killed_primary_is_replaced_by_its_replica_and_the_service_recovers() {
    let (seen, histories, fault) = under_load(
        Duration::from_secs(2),
        Duration::from_secs(11),
        |cluster, hot| {
            let replica = cluster.replica_of(hot, hot);
            cluster.nodes[hot].kill9();
            cluster.wait_until_primary(replica, Duration::from_secs(15));
        },
    )
    .await;
    println!(
        "the cluster took {:?} to replace the primary (node timeout {NODE_TIMEOUT:?})",
        fault.over - fault.began
    );
    let missing = check(&seen, &histories, &fault);
    // Only what the dead primary had acknowledged and not yet sent to its replica can be
    // lost: turns stored in the moment before the kill.
    for (at, content) in &missing {
        assert!(
            *at + Duration::from_millis(500) >= fault.began && *at <= fault.began,
            "{content}, acknowledged at {at:?}, is lost (the primary died at {:?})",
            fault.began
        );
    }
    assert_serves_after(&seen, fault.over + RECOVERY);
}

/// Every answer after `from` is a success, and there were enough of them to tell.
fn assert_serves_after(seen: &Seen, from: Duration) {
    let after: Vec<_> = seen.answers.iter().filter(|a| a.0 > from).collect();
    let failed: Vec<_> = after.iter().filter(|a| a.3 != StatusCode::OK).collect();
    assert!(
        after.len() > 50,
        "only {} answers after {from:?}",
        after.len()
    );
    assert!(failed.is_empty(), "failures after {from:?}: {failed:?}");
}
