//! One store test suite, run against both implementations through the `Store` trait:
//! every scenario is written once, as an async fn over `&dyn Store`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::json;
use session_relay::{
    config::{StoreMode, StoreSettings},
    domain::{
        message::{Message, Role, Turn, message_id},
        scope::SessionKey,
        session::{SessionConfig, UsageTotals, new_id},
    },
    store::{
        Admission, AdmitRequest, Commit, CommitOutcome, IdempotencyClaim, Store, WriteOutcome,
        memory::MemoryStore, redis::RedisStore,
    },
};

use crate::{redis_cluster::RedisCluster, redis_server::RedisServer};

const LEASE_MS: u64 = 10_000;

/// A Redis store on the shared test server, under `prefix`, not prepared yet: it serves
/// nothing before [`RedisStore::prepare`].
pub async fn unprepared_redis_store(prefix: &str) -> RedisStore {
    let settings = StoreSettings {
        redis_url: Some(RedisServer::shared().url()),
        key_prefix: prefix.to_string(),
        ..Default::default()
    };
    RedisStore::connect(&settings).await.expect("redis store")
}

/// A prepared store (scripts loaded, key layout migrated) under a prefix of its own.
async fn prepared(settings: StoreSettings) -> RedisStore {
    let settings = StoreSettings {
        key_prefix: format!("ss{}", &new_id()[..12]),
        ..settings
    };
    let store = RedisStore::connect(&settings).await.expect("redis store");
    store.prepare().await.expect("store prepared");
    store
}

/// A prepared store on the shared Redis Cluster.
pub async fn cluster_store() -> RedisStore {
    prepared(StoreSettings {
        redis_url: Some(RedisCluster::shared().seeds()),
        mode: StoreMode::Cluster,
        ..Default::default()
    })
    .await
}

/// A fresh store of each kind: memory, one Redis server, a Redis Cluster.
async fn stores() -> Vec<Box<dyn Store>> {
    let single = StoreSettings {
        redis_url: Some(RedisServer::shared().url()),
        ..Default::default()
    };
    vec![
        Box::new(MemoryStore::new()),
        Box::new(prepared(single).await),
        Box::new(cluster_store().await),
    ]
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn config(tenant: &str, user_id: Option<&str>) -> SessionConfig {
    SessionConfig {
        tenant: tenant.into(),
        user_id: user_id.map(str::to_string),
        model: "echo".into(),
        fallback_models: vec![],
        system_prompt: Some("Be brief.".into()),
        context_window: Some(10),
        max_context_tokens: None,
        max_tokens: Some(100),
        temperature: Some(0.7),
        ttl_seconds: 60,
        metadata: json!({"plan": "pro"})
            .as_object()
            .cloned()
            .unwrap_or_default(),
        max_cost_usd: None,
        tools: Vec::new(),
        response_format: None,
        compaction: Default::default(),
        created_at: Utc::now(),
    }
}

/// Session `id` of tenant `acme`.
fn acme(id: &str) -> SessionKey {
    SessionKey::new("acme", id)
}

/// A new session of tenant `acme` with no user; returns its id.
async fn new_session(store: &dyn Store) -> String {
    let id = new_id();
    assert!(
        store
            .create_session(&id, &config("acme", None), now_ms())
            .await
            .unwrap(),
        "{}: create",
        store.kind()
    );
    id
}

/// Asks to start a send on `id` as tenant `acme`, the tenant of `new_session`.
async fn admit(
    store: &dyn Store,
    id: &str,
    lease: &str,
    claim: Option<&IdempotencyClaim>,
) -> Admission {
    admit_as(store, "acme", id, lease, claim).await
}

async fn admit_as(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    lease: &str,
    claim: Option<&IdempotencyClaim>,
) -> Admission {
    let request = AdmitRequest {
        tenant,
        lease_token: lease,
        lease_ms: LEASE_MS,
        claim,
        now_ms: now_ms(),
        tail: 4,
        hold_ms: 0,
    };
    store
        .admit(&SessionKey::new(tenant, id), &request)
        .await
        .unwrap()
}

/// The history length an admission starts from; `None` when it did not admit.
fn admitted_len(admission: &Admission) -> Option<u64> {
    match admission {
        Admission::Admitted(admitted) => Some(admitted.session.message_count),
        _ => None,
    }
}

fn turn(index: u64, role: Role, content: &str) -> Turn {
    Turn::new(
        message_id(index),
        Message::text(role, content),
        Utc::now(),
        3 + content.len() as u32,
    )
}

fn commit(lease: &str, expected_len: u64, turns: Vec<Turn>, usage: UsageTotals) -> Commit {
    Commit {
        lease_token: lease.into(),
        expected_len,
        turns,
        usage,
        now_ms: now_ms(),
        idempotency: None,
    }
}

fn usage(prompt_tokens: u64, completion_tokens: u64, cost_nano_usd: u64) -> UsageTotals {
    UsageTotals {
        prompt_tokens,
        completion_tokens,
        cost_nano_usd,
    }
}

fn claim(key: &str, fingerprint: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        key: key.into(),
        fingerprint: fingerprint.into(),
        ttl_ms: 60_000,
    }
}

async fn create_get_and_duplicate(store: &dyn Store) {
    let kind = store.kind();
    let id = new_id();
    let original = config("acme", Some("dup-owner"));
    let created_ms = now_ms();
    assert!(
        store
            .create_session(&id, &original, created_ms)
            .await
            .unwrap()
    );

    assert!(
        !store
            .create_session(&id, &original, now_ms())
            .await
            .unwrap(),
        "{kind}: an id the tenant holds is refused"
    );
    // Ids are per tenant: another tenant's session of the same id is another session.
    let other = config("globex", Some("dup-other"));
    assert!(
        store.create_session(&id, &other, now_ms()).await.unwrap(),
        "{kind}: another tenant may hold the same id"
    );

    let read = store
        .get_session(&acme(&id))
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(read.id, id);
    assert_eq!(read.config, original, "{kind}: the first config is kept");
    assert_eq!(read.revision, 1);
    assert_eq!(read.last_activity_ms, created_ms);
    assert_eq!(read.message_count, 0);
    assert_eq!(read.usage, UsageTotals::default());
    assert!(store.get_session(&acme(&new_id())).await.unwrap().is_none());
    let theirs = SessionKey::new("globex", &id);
    let read = store.get_session(&theirs).await.unwrap().expect("theirs");
    assert_eq!(read.config, other, "{kind}: each tenant reads its own");

    assert_eq!(
        store
            .user_sessions("globex", "dup-other", now_ms())
            .await
            .unwrap(),
        vec![id.clone()],
        "{kind}: the other tenant's user lists its own session"
    );
    assert_eq!(
        store
            .delete_user_sessions("globex", "dup-other", now_ms())
            .await
            .unwrap(),
        1,
        "{kind}: the other tenant's logout deletes its own session"
    );
    assert!(
        store.get_session(&theirs).await.unwrap().is_none(),
        "{kind}"
    );
    assert!(
        store.get_session(&acme(&id)).await.unwrap().is_some(),
        "{kind}: the owner's session survives another tenant's logout"
    );
}

async fn update_config_compare_and_set(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let before = store.get_session(&acme(&id)).await.unwrap().unwrap();

    let mut changed = before.config.clone();
    changed.temperature = Some(1.5);
    changed.metadata.insert("tier".into(), json!(2));
    let later = before.last_activity_ms + 5_000;
    assert_eq!(
        store
            .update_config(&acme(&id), &changed, before.revision, later)
            .await
            .unwrap(),
        WriteOutcome::Written,
        "{kind}"
    );
    let after = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(after.config, changed);
    assert_eq!(after.revision, before.revision + 1);
    assert_eq!(after.last_activity_ms, later, "{kind}: a write refreshes");

    let mut stale = before.config.clone();
    stale.system_prompt = Some("stale".into());
    assert_eq!(
        store
            .update_config(&acme(&id), &stale, before.revision, later + 1)
            .await
            .unwrap(),
        WriteOutcome::Conflict,
        "{kind}: stale revision"
    );
    let unchanged = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(
        unchanged.config, changed,
        "{kind}: a conflict writes nothing"
    );
    assert_eq!(unchanged.revision, after.revision);
    assert_eq!(unchanged.last_activity_ms, later);

    assert_eq!(
        store
            .update_config(&acme(&new_id()), &changed, 1, later)
            .await
            .unwrap(),
        WriteOutcome::Missing,
        "{kind}"
    );
}

async fn touch_and_delete(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let before = store.get_session(&acme(&id)).await.unwrap().unwrap();
    let later = before.last_activity_ms + 7_000;
    assert!(store.touch(&acme(&id), later).await.unwrap(), "{kind}");
    let touched = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(touched.last_activity_ms, later);
    assert_eq!(touched.config, before.config);
    assert_eq!(touched.revision, before.revision, "a touch is not a change");
    assert!(
        !store.touch(&acme(&new_id()), later).await.unwrap(),
        "{kind}"
    );

    assert!(store.delete_session(&acme(&id)).await.unwrap(), "{kind}");
    assert!(store.get_session(&acme(&id)).await.unwrap().is_none());
    assert!(
        !store.delete_session(&acme(&id)).await.unwrap(),
        "{kind}: twice"
    );
    assert!(
        !store.touch(&acme(&id), later).await.unwrap(),
        "{kind}: deleted"
    );
    assert_eq!(admit(store, &id, "l", None).await, Admission::Missing);
}

async fn admit_busy_and_release(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    assert_eq!(
        admitted_len(&admit(store, &id, "a", None).await),
        Some(0),
        "{kind}"
    );
    match admit(store, &id, "b", None).await {
        Admission::Busy { retry_after_ms } => assert!(
            retry_after_ms > 0 && retry_after_ms <= LEASE_MS,
            "{kind}: retry after {retry_after_ms} ms"
        ),
        other => panic!("{kind}: second admit: {other:?}"),
    }
    // Only the holder can give the lease back.
    store
        .release(&acme(&id), "not-the-holder", None)
        .await
        .unwrap();
    assert!(
        matches!(admit(store, &id, "c", None).await, Admission::Busy { .. }),
        "{kind}: a foreign release frees nothing"
    );
    store.release(&acme(&id), "a", None).await.unwrap();
    assert_eq!(
        admitted_len(&admit(store, &id, "d", None).await),
        Some(0),
        "{kind}: released"
    );
    assert_eq!(admit(store, &new_id(), "e", None).await, Admission::Missing);
}

async fn commit_appends_in_order(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    assert_eq!(admitted_len(&admit(store, &id, "a", None).await), Some(0));
    let first = vec![
        turn(0, Role::User, "What is 2+2?"),
        turn(1, Role::Assistant, "4."),
    ];
    let c = commit("a", 0, first.clone(), usage(10, 5, 1_234));
    assert_eq!(
        store.commit(&acme(&id), &c).await.unwrap(),
        CommitOutcome::Committed,
        "{kind}"
    );
    assert_eq!(
        store.turns(&acme(&id), 0, 10).await.unwrap(),
        first,
        "{kind}"
    );
    assert_eq!(
        store.recent_turns(&acme(&id), 1).await.unwrap(),
        first[1..].to_vec()
    );
    let session = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(session.message_count, 2);
    assert_eq!(session.usage, usage(10, 5, 1_234));
    assert_eq!(
        session.last_activity_ms, c.now_ms,
        "{kind}: a commit refreshes"
    );

    // The commit released the lease: the next send starts after the two turns.
    assert_eq!(
        admitted_len(&admit(store, &id, "b", None).await),
        Some(2),
        "{kind}"
    );
    let second = vec![
        turn(2, Role::User, "And 3+3?"),
        turn(3, Role::Assistant, "6."),
    ];
    assert_eq!(
        store
            .commit(
                &acme(&id),
                &commit("b", 2, second.clone(), usage(20, 7, 1_000))
            )
            .await
            .unwrap(),
        CommitOutcome::Committed
    );
    let all: Vec<Turn> = first.iter().chain(&second).cloned().collect();
    assert_eq!(
        store.turns(&acme(&id), 0, 100).await.unwrap(),
        all,
        "{kind}"
    );
    assert_eq!(
        store.turns(&acme(&id), 1, 2).await.unwrap(),
        all[1..3].to_vec()
    );
    assert_eq!(store.turns(&acme(&id), 4, 10).await.unwrap(), vec![]);
    assert_eq!(store.turns(&acme(&id), 0, 0).await.unwrap(), vec![]);
    assert_eq!(
        store.recent_turns(&acme(&id), 3).await.unwrap(),
        all[1..].to_vec()
    );
    assert_eq!(store.recent_turns(&acme(&id), 50).await.unwrap(), all);
    let session = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(session.message_count, 4, "{kind}");
    assert_eq!(session.usage, usage(30, 12, 2_234), "{kind}: totals add up");
}

async fn commit_with_wrong_lease_or_length_writes_nothing(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    admit(store, &id, "mine", None).await;
    let turns = vec![turn(0, Role::User, "hi"), turn(1, Role::Assistant, "hello")];

    let foreign = commit("someone-else", 0, turns.clone(), usage(9, 9, 9));
    assert_eq!(
        store.commit(&acme(&id), &foreign).await.unwrap(),
        CommitOutcome::LeaseLost,
        "{kind}: wrong lease token"
    );
    let wrong_len = commit("mine", 5, turns.clone(), usage(9, 9, 9));
    assert_eq!(
        store.commit(&acme(&id), &wrong_len).await.unwrap(),
        CommitOutcome::LeaseLost,
        "{kind}: wrong expected length"
    );
    assert_eq!(
        store.turns(&acme(&id), 0, 10).await.unwrap(),
        vec![],
        "{kind}"
    );
    let session = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(session.message_count, 0, "{kind}");
    assert_eq!(session.usage, UsageTotals::default(), "{kind}");

    // The lease is still ours: the right commit goes through.
    assert_eq!(
        store
            .commit(
                &acme(&id),
                &commit("mine", 0, turns.clone(), usage(1, 2, 3))
            )
            .await
            .unwrap(),
        CommitOutcome::Committed,
        "{kind}"
    );
    assert_eq!(store.turns(&acme(&id), 0, 10).await.unwrap(), turns);
}

async fn commit_after_delete_does_not_resurrect(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    admit(store, &id, "a", None).await;
    assert!(store.delete_session(&acme(&id)).await.unwrap());
    let c = Commit {
        idempotency: Some((claim("k", "fp"), "{\"ok\":true}".into())),
        ..commit(
            "a",
            0,
            vec![turn(0, Role::User, "hi"), turn(1, Role::Assistant, "yo")],
            usage(1, 1, 1),
        )
    };
    assert_eq!(
        store.commit(&acme(&id), &c).await.unwrap(),
        CommitOutcome::Missing,
        "{kind}"
    );
    assert!(
        store.get_session(&acme(&id)).await.unwrap().is_none(),
        "{kind}: not resurrected"
    );
    assert_eq!(
        store.turns(&acme(&id), 0, 10).await.unwrap(),
        vec![],
        "{kind}"
    );
    assert_eq!(store.recent_turns(&acme(&id), 10).await.unwrap(), vec![]);
    assert_eq!(admit(store, &id, "b", None).await, Admission::Missing);
    // Re-creating the id starts from nothing: no turn, lease or idempotency record was left.
    assert!(
        store
            .create_session(&id, &config("acme", None), now_ms())
            .await
            .unwrap()
    );
    assert_eq!(
        store.turns(&acme(&id), 0, 10).await.unwrap(),
        vec![],
        "{kind}"
    );
    assert_eq!(
        admitted_len(&admit(store, &id, "c", Some(&claim("k", "fp"))).await),
        Some(0),
        "{kind}: no stale lease or replay"
    );
}

async fn idempotency_claims(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let k1 = claim("key-1", "fp-a");
    let k1_other_body = claim("key-1", "fp-b");

    assert_eq!(
        admitted_len(&admit(store, &id, "a", Some(&k1)).await),
        Some(0),
        "{kind}"
    );
    assert_eq!(
        admit(store, &id, "b", Some(&k1)).await,
        Admission::KeyInUse,
        "{kind}: same key, same body, in flight"
    );
    assert_eq!(
        admit(store, &id, "b", Some(&k1_other_body)).await,
        Admission::KeyReused,
        "{kind}: same key, other body, in flight"
    );

    let response = r#"{"assistant_message":"4."}"#.to_string();
    let c = Commit {
        idempotency: Some((k1.clone(), response.clone())),
        ..commit(
            "a",
            0,
            vec![turn(0, Role::User, "2+2?"), turn(1, Role::Assistant, "4.")],
            usage(1, 1, 0),
        )
    };
    assert_eq!(
        store.commit(&acme(&id), &c).await.unwrap(),
        CommitOutcome::Committed
    );
    assert_eq!(
        admit(store, &id, "c", Some(&k1)).await,
        Admission::Replay(response),
        "{kind}: completed key replays"
    );
    assert_eq!(
        admit(store, &id, "c", Some(&k1_other_body)).await,
        Admission::KeyReused,
        "{kind}: completed key, other body"
    );
    // Neither answer took the lease.
    assert_eq!(
        admitted_len(&admit(store, &id, "d", None).await),
        Some(2),
        "{kind}"
    );
    store.release(&acme(&id), "d", None).await.unwrap();

    // A failed send gives its key back: the retry is admitted, not refused or replayed.
    let k2 = claim("key-2", "fp-a");
    assert_eq!(
        admitted_len(&admit(store, &id, "e", Some(&k2)).await),
        Some(2)
    );
    store.release(&acme(&id), "e", Some("key-2")).await.unwrap();
    assert_eq!(
        admitted_len(&admit(store, &id, "f", Some(&k2)).await),
        Some(2),
        "{kind}: released claim is forgotten"
    );
    store.release(&acme(&id), "f", Some("key-2")).await.unwrap();
    assert_eq!(
        admitted_len(&admit(store, &id, "g", Some(&claim("key-2", "fp-z"))).await),
        Some(2),
        "{kind}: a released claim does not pin its body either"
    );
}

/// Admission reads the session and its newest turns with the lease, and only for the
/// session's own tenant.
async fn admit_reads_the_session_and_its_tail(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let stored = store.get_session(&acme(&id)).await.unwrap().unwrap();
    assert_eq!(
        admit_as(store, "globex", &id, "foreign", None).await,
        Admission::Missing,
        "{kind}: another tenant's session is unknown"
    );
    // The foreign attempt took no lease: the owner is admitted at once.
    let Admission::Admitted(first) = admit(store, &id, "a", None).await else {
        panic!("{kind}: owner not admitted");
    };
    assert_eq!(first.session, stored, "{kind}: the session as stored");
    assert_eq!(first.tail, vec![], "{kind}: no turns yet");
    let turns: Vec<Turn> = (0..12)
        .map(|i| turn(i, Role::User, &format!("turn {i} – 第{i}回 🙂")))
        .collect();
    let c = commit("a", 0, turns.clone(), usage(7, 3, 99));
    assert_eq!(
        store.commit(&acme(&id), &c).await.unwrap(),
        CommitOutcome::Committed
    );
    // `config` sets a context_window of 10: that many newest turns, oldest first.
    let Admission::Admitted(second) = admit(store, &id, "b", None).await else {
        panic!("{kind}: not admitted after the commit");
    };
    assert_eq!(
        second.tail,
        turns[2..].to_vec(),
        "{kind}: the window's turns"
    );
    assert_eq!(second.session.message_count, 12);
    assert_eq!(
        second.session.usage,
        usage(7, 3, 99),
        "{kind}: current spend"
    );
    store.release(&acme(&id), "b", None).await.unwrap();

    // Without a window, the request's `tail` (4) decides.
    let windowless = new_id();
    let config = SessionConfig {
        context_window: None,
        ..config("acme", None)
    };
    assert!(
        store
            .create_session(&windowless, &config, now_ms())
            .await
            .unwrap()
    );
    assert!(admitted_len(&admit(store, &windowless, "a", None).await).is_some());
    let c = commit("a", 0, turns.clone(), usage(1, 1, 1));
    assert_eq!(
        store.commit(&acme(&windowless), &c).await.unwrap(),
        CommitOutcome::Committed
    );
    let Admission::Admitted(third) = admit(store, &windowless, "b", None).await else {
        panic!("{kind}: windowless session not admitted");
    };
    assert_eq!(
        third.tail,
        turns[8..].to_vec(),
        "{kind}: the requested tail"
    );
}

async fn renewing_keeps_only_the_holders_lease(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let short = AdmitRequest {
        tenant: "acme",
        lease_token: "holder",
        lease_ms: 300,
        claim: None,
        now_ms: now_ms(),
        tail: 4,
        hold_ms: 0,
    };
    assert_eq!(
        admitted_len(&store.admit(&acme(&id), &short).await.unwrap()),
        Some(0)
    );
    assert!(
        !store
            .renew(&acme(&id), "not-the-holder", 60_000)
            .await
            .unwrap(),
        "{kind}: only the holder renews"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store.renew(&acme(&id), "holder", 300).await.unwrap(),
        "{kind}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        matches!(admit(store, &id, "b", None).await, Admission::Busy { .. }),
        "{kind}: 400 ms after admission, the renewed lease still holds"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !store.renew(&acme(&id), "holder", 300).await.unwrap(),
        "{kind}: a lapsed lease is not renewed"
    );
    assert_eq!(admitted_len(&admit(store, &id, "b", None).await), Some(0));
    assert!(!store.renew(&acme(&new_id()), "holder", 300).await.unwrap());
}

/// An admission sent again (its connection broke: the first may or may not have run)
/// answers as the first did, with or without an idempotency key.
async fn admission_repeated_with_its_token_is_admitted_again(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let claim = claim("k", "f");
    for attempt in 0..2 {
        assert_eq!(
            admitted_len(&admit(store, &id, "a", Some(&claim)).await),
            Some(0),
            "{kind}: attempt {attempt}"
        );
    }
    assert_eq!(
        admit(store, &id, "b", Some(&claim)).await,
        Admission::KeyInUse,
        "{kind}: another request with the key"
    );
    assert!(
        matches!(admit(store, &id, "c", None).await, Admission::Busy { .. }),
        "{kind}"
    );
}

async fn lease_expires_by_itself(store: &dyn Store) {
    let kind = store.kind();
    let id = new_session(store).await;
    let short = AdmitRequest {
        tenant: "acme",
        lease_token: "short",
        lease_ms: 200,
        claim: None,
        now_ms: now_ms(),
        tail: 4,
        hold_ms: 0,
    };
    let admitted = store.admit(&acme(&id), &short).await.unwrap();
    assert_eq!(admitted_len(&admitted), Some(0), "{kind}");
    assert!(
        matches!(
            admit(store, &id, "b", None).await,
            Admission::Busy { retry_after_ms } if retry_after_ms <= 200
        ),
        "{kind}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        admitted_len(&admit(store, &id, "b", None).await),
        Some(0),
        "{kind}: the lapsed lease freed the session"
    );
    // The holder of the lapsed lease is fenced off.
    let late = commit(
        "short",
        0,
        vec![turn(0, Role::User, "late")],
        usage(1, 1, 1),
    );
    assert_eq!(
        store.commit(&acme(&id), &late).await.unwrap(),
        CommitOutcome::LeaseLost,
        "{kind}"
    );
    assert_eq!(store.turns(&acme(&id), 0, 10).await.unwrap(), vec![]);
}

async fn user_index(store: &dyn Store) {
    let kind = store.kind();
    let base = Utc.with_ymd_and_hms(2025, 1, 1, 12, 0, 0).unwrap();
    // Ids in reverse alphabetical order: the listing must follow creation time.
    let ids: Vec<String> = ["zz", "mm", "aa"]
        .iter()
        .map(|p| format!("{p}{}", new_id()))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut cfg = config("acme", Some("user-1"));
        cfg.created_at = base + chrono::Duration::seconds(i as i64);
        assert!(store.create_session(id, &cfg, now_ms()).await.unwrap());
    }
    let other_user = new_id();
    store
        .create_session(&other_user, &config("acme", Some("user-2")), now_ms())
        .await
        .unwrap();
    let other_tenant = new_id();
    store
        .create_session(&other_tenant, &config("globex", Some("user-1")), now_ms())
        .await
        .unwrap();

    assert_eq!(
        store
            .user_sessions("acme", "user-1", now_ms())
            .await
            .unwrap(),
        ids,
        "{kind}: creation order"
    );
    assert_eq!(
        store
            .user_sessions("globex", "user-1", now_ms())
            .await
            .unwrap(),
        vec![other_tenant.clone()],
        "{kind}: tenants are apart"
    );
    assert_eq!(
        store
            .user_sessions("acme", "nobody", now_ms())
            .await
            .unwrap(),
        Vec::<String>::new()
    );

    assert!(store.delete_session(&acme(&ids[1])).await.unwrap());
    assert_eq!(
        store
            .user_sessions("acme", "user-1", now_ms())
            .await
            .unwrap(),
        vec![ids[0].clone(), ids[2].clone()],
        "{kind}: deleted sessions drop out"
    );

    assert_eq!(
        store
            .delete_user_sessions("acme", "user-1", now_ms())
            .await
            .unwrap(),
        2,
        "{kind}"
    );
    for id in &ids {
        assert!(
            store.get_session(&acme(id)).await.unwrap().is_none(),
            "{kind}"
        );
    }
    assert_eq!(
        store
            .user_sessions("acme", "user-1", now_ms())
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        store
            .delete_user_sessions("acme", "user-1", now_ms())
            .await
            .unwrap(),
        0,
        "{kind}: nothing left"
    );
    assert!(
        store
            .get_session(&acme(&other_user))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        store
            .get_session(&SessionKey::new("globex", &other_tenant))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store
            .user_sessions("globex", "user-1", now_ms())
            .await
            .unwrap(),
        vec![other_tenant]
    );
}

/// An id changes hands once its session expired: the old index must neither list nor
/// delete the session now under that id, and an id made again for the same user is
/// listed once.
async fn user_index_follows_the_session_not_the_id(store: &dyn Store) {
    let kind = store.kind();
    let (taken, again) = (
        format!("legacy-{}", new_id()),
        format!("again-{}", new_id()),
    );
    let remade = [
        (&taken, ("acme", "u1"), config("globex", Some("u1"))),
        (&again, ("acme", "u2"), config("acme", Some("u2"))),
    ];
    for (id, (tenant, user), _) in &remade {
        let short = SessionConfig {
            ttl_seconds: 1,
            ..config(tenant, Some(user))
        };
        assert!(store.create_session(id, &short, now_ms()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for (id, _, then) in &remade {
        let created = store.create_session(id, then, now_ms()).await.unwrap();
        assert!(created, "{kind}: the expired id is free");
    }
    let list = |tenant: &'static str, user: &'static str| store.user_sessions(tenant, user, 0);

    assert_eq!(
        list("acme", "u1").await.unwrap(),
        Vec::<String>::new(),
        "{kind}"
    );
    let deleted = store.delete_user_sessions("acme", "u1", 0).await.unwrap();
    assert_eq!(deleted, 0, "{kind}");
    let kept = store
        .get_session(&SessionKey::new("globex", &taken))
        .await
        .unwrap();
    assert!(kept.is_some(), "{kind}: not deleted");
    assert_eq!(
        list("globex", "u1").await.unwrap(),
        vec![taken.clone()],
        "{kind}"
    );

    // Made again for the very same user: one entry, not two.
    assert_eq!(
        list("acme", "u2").await.unwrap(),
        vec![again.clone()],
        "{kind}"
    );
    let deleted = store.delete_user_sessions("acme", "u2", 0).await.unwrap();
    assert_eq!(deleted, 1, "{kind}");
    assert!(
        store.get_session(&acme(&again)).await.unwrap().is_none(),
        "{kind}"
    );
    assert_eq!(
        list("acme", "u2").await.unwrap(),
        Vec::<String>::new(),
        "{kind}"
    );
}

/// A send may take longer than its session's remaining TTL: admission keeps the session
/// (every key of it) for `hold_ms`, and the commit brings back the session's own TTL.
async fn admission_holds_the_session_for_the_send(store: &dyn Store) {
    let kind = store.kind();
    let id = new_id();
    let short = SessionConfig {
        ttl_seconds: 1,
        ..config("acme", None)
    };
    assert!(store.create_session(&id, &short, now_ms()).await.unwrap());
    let request = AdmitRequest {
        tenant: "acme",
        lease_token: "slow",
        lease_ms: LEASE_MS,
        claim: None,
        now_ms: now_ms(),
        tail: 4,
        hold_ms: 3000,
    };
    assert_eq!(
        admitted_len(&store.admit(&acme(&id), &request).await.unwrap()),
        Some(0)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let turns = vec![turn(0, Role::User, "q"), turn(1, Role::Assistant, "a")];
    assert_eq!(
        store
            .commit(&acme(&id), &commit("slow", 0, turns, usage(1, 1, 0)))
            .await
            .unwrap(),
        CommitOutcome::Committed,
        "{kind}: the session outlived its TTL while the send held it"
    );
    assert_eq!(
        store.turns(&acme(&id), 0, 10).await.unwrap().len(),
        2,
        "{kind}"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        store.get_session(&acme(&id)).await.unwrap().is_none(),
        "{kind}: the commit restored the session's own 1 s TTL"
    );
}

/// One `#[tokio::test]` per scenario, each running it on every store.
macro_rules! on_both_stores {
    ($($scenario:ident),* $(,)?) => {
        mod on_both_stores {
            $(
                #[tokio::test]
                async fn $scenario() {
                    for store in super::stores().await {
                        super::$scenario(store.as_ref()).await;
                    }
                }
            )*
        }
    };
}

on_both_stores!(
    create_get_and_duplicate,
    update_config_compare_and_set,
    touch_and_delete,
    admit_busy_and_release,
    admit_reads_the_session_and_its_tail,
    commit_appends_in_order,
    commit_with_wrong_lease_or_length_writes_nothing,
    commit_after_delete_does_not_resurrect,
    idempotency_claims,
    lease_expires_by_itself,
    renewing_keeps_only_the_holders_lease,
    admission_repeated_with_its_token_is_admitted_again,
    user_index,
    user_index_follows_the_session_not_the_id,
    admission_holds_the_session_for_the_send,
);
