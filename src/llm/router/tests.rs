#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::VecDeque,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;

use super::*;
use crate::{
    domain::tokens::Tokenizer,
    llm::{Provider, StatusKind, registry::Model, timing::Overrides},
};

/// Answers from a script, then forever with its last entry; `None` hangs.
struct Scripted {
    script: Mutex<VecDeque<Option<Result<ChatResponse, ProviderError>>>>,
    calls: AtomicUsize,
}

impl Scripted {
    fn new(script: Vec<Option<Result<ChatResponse, ProviderError>>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            script: Mutex::new(script.into()),
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Provider for Scripted {
    async fn complete(&self, _: &ChatRequest) -> Result<ChatResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = {
            let mut script = self.script.lock().unwrap();
            if script.len() > 1 {
                script.pop_front().unwrap()
            } else {
                script.front().cloned().unwrap()
            }
        };
        match next {
            Some(outcome) => outcome,
            None => std::future::pending().await,
        }
    }

    async fn stream(&self, _: &ChatRequest) -> Result<EventStream, ProviderError> {
        unreachable!("not used here")
    }
}

fn ok(text: &str) -> Option<Result<ChatResponse, ProviderError>> {
    Some(Ok(ChatResponse {
        message: crate::domain::message::Message::text(
            crate::domain::message::Role::Assistant,
            text,
        ),
        usage: None,
        finish_reason: Some("stop".into()),
        logprobs: None,
        system_fingerprint: None,
    }))
}

fn status(
    code: u16,
    kind: StatusKind,
    retry_after: Option<u64>,
) -> Option<Result<ChatResponse, ProviderError>> {
    Some(Err(ProviderError::Status {
        status: code,
        retry_after: retry_after.map(Duration::from_secs),
        kind,
        message: "x".into(),
    }))
}

fn model(name: &str, provider: Arc<Scripted>) -> Arc<Model> {
    Arc::new(Model {
        name: name.into(),
        upstream_name: name.into(),
        provider,
        context_tokens: 8192,
        input_usd_per_mtok: 0.0,
        output_usd_per_mtok: 0.0,
        tokenizer: Tokenizer::O200kBase,
        fallbacks: Vec::new(),
        overrides: Overrides::default(),
    })
}

fn settings() -> RoutingSettings {
    RoutingSettings {
        attempt_timeout_ms: 1_000,
        max_retries: 2,
        backoff_base_ms: 100,
        backoff_max_ms: 400,
        breaker_min_requests: 3,
        breaker_cooldown_ms: 5_000,
        ..RoutingSettings::default()
    }
}

fn request(model: &Model) -> ChatRequest {
    ChatRequest {
        model: model.upstream_name.clone(),
        messages: Vec::new(),
        max_tokens: None,
        temperature: None,
        options: Default::default(),
        first_byte_timeout: None,
    }
}

fn deadline(seconds: u64) -> Instant {
    Instant::now() + Duration::from_secs(seconds)
}

async fn route(
    router: &Router,
    chain: &[Arc<Model>],
    seconds: u64,
) -> Result<Routed<ChatResponse>, RouteError> {
    router.complete(chain, request, deadline(seconds)).await
}

fn router(names: &[&str], settings: RoutingSettings) -> Router {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    Router::new(&settings, &names)
}

#[tokio::test(start_paused = true)]
async fn server_error_once_is_retried_on_the_same_model() {
    let a = Scripted::new(vec![status(500, StatusKind::Other, None), ok("hi")]);
    let chain = [model("a", a.clone())];
    let routed = route(&router(&["a"], settings()), &chain, 10)
        .await
        .unwrap();
    assert_eq!((routed.index, a.calls()), (0, 2));
    assert_eq!(routed.failed.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn persistent_server_errors_use_the_retries_then_the_next_model() {
    let a = Scripted::new(vec![status(503, StatusKind::Other, None)]);
    let b = Scripted::new(vec![ok("from b")]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let started = Instant::now();
    let routed = route(&router(&["a", "b"], settings()), &chain, 10)
        .await
        .unwrap();
    assert_eq!((routed.index, a.calls(), b.calls()), (1, 3, 1));
    assert!(
        started.elapsed() <= Duration::from_millis(300),
        "backoff is capped: 100 + 200 at most"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured_when_it_fits_the_deadline() {
    let a = Scripted::new(vec![status(429, StatusKind::Other, Some(2)), ok("hi")]);
    let chain = [model("a", a.clone())];
    let started = Instant::now();
    let routed = route(&router(&["a"], settings()), &chain, 10)
        .await
        .unwrap();
    assert_eq!((routed.index, a.calls()), (0, 2));
    assert_eq!(started.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn retry_after_past_the_deadline_and_plain_429_move_on_at_once() {
    for retry_after in [Some(30), None] {
        let a = Scripted::new(vec![status(429, StatusKind::Other, retry_after)]);
        let b = Scripted::new(vec![ok("from b")]);
        let chain = [model("a", a.clone()), model("b", b.clone())];
        let started = Instant::now();
        let routed = route(&router(&["a", "b"], settings()), &chain, 10)
            .await
            .unwrap();
        assert_eq!((routed.index, a.calls()), (1, 1));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn our_faults_end_the_chain_except_context_length() {
    for (kind, code, expected_b_calls) in [
        (StatusKind::Other, 400, 0),
        (StatusKind::Other, 422, 0),
        (StatusKind::ContentFilter, 400, 0),
        (StatusKind::ContextLength, 400, 1),
    ] {
        let a = Scripted::new(vec![status(code, kind, None)]);
        let b = Scripted::new(vec![ok("from b")]);
        let chain = [model("a", a.clone()), model("b", b.clone())];
        let result = route(&router(&["a", "b"], settings()), &chain, 10).await;
        assert_eq!(
            (a.calls(), b.calls()),
            (1, expected_b_calls),
            "{kind:?} {code}"
        );
        assert_eq!(result.is_ok(), expected_b_calls == 1);
    }
}

#[tokio::test(start_paused = true)]
async fn bad_provider_key_opens_the_breaker_at_once() {
    let a = Scripted::new(vec![status(401, StatusKind::Other, None)]);
    let b = Scripted::new(vec![ok("from b")]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let router = router(&["a", "b"], settings());
    route(&router, &chain, 10).await.unwrap();
    assert_eq!(router.states()["a"], BreakerState::Open);
    route(&router, &chain, 10).await.unwrap();
    assert_eq!(a.calls(), 1, "skipped while open");
}

#[tokio::test(start_paused = true)]
async fn all_breakers_open_fails_fast_without_calls() {
    let a = Scripted::new(vec![status(403, StatusKind::Other, None)]);
    let b = Scripted::new(vec![status(403, StatusKind::Other, None)]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let router = router(&["a", "b"], settings());
    assert!(route(&router, &chain, 10).await.is_err());
    let started = Instant::now();
    let Err(RouteError::Exhausted(attempts)) = route(&router, &chain, 10).await else {
        panic!("expected exhausted");
    };
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!((a.calls(), b.calls()), (1, 1));
    assert!(attempts.iter().all(|a| a.reason() == "circuit_open"));
}

#[tokio::test(start_paused = true)]
async fn deadline_ends_a_hung_attempt_on_time() {
    let a = Scripted::new(vec![None]);
    let chain = [model("a", a.clone())];
    let settings = RoutingSettings {
        attempt_timeout_ms: 60_000,
        ..settings()
    };
    let started = Instant::now();
    let result = route(&router(&["a"], settings), &chain, 3).await;
    assert!(matches!(result, Err(RouteError::Deadline(_))));
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeout_moves_on_to_the_fallback_at_once() {
    let a = Scripted::new(vec![None]);
    let b = Scripted::new(vec![ok("from b")]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let started = Instant::now();
    let routed = route(&router(&["a", "b"], settings()), &chain, 10)
        .await
        .unwrap();
    assert_eq!((routed.index, a.calls()), (1, 1), "no second wait on a");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(routed.failed.iter().all(|f| f.reason() == "timeout"));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_on_the_last_model_is_retried() {
    let a = Scripted::new(vec![None, ok("hi")]);
    let chain = [model("a", a.clone())];
    let routed = route(&router(&["a"], settings()), &chain, 10)
        .await
        .unwrap();
    assert_eq!((routed.index, a.calls()), (0, 2));
}

#[tokio::test(start_paused = true)]
async fn an_attempt_gets_its_share_of_the_deadline_so_the_fallback_has_time() {
    let a = Scripted::new(vec![None]);
    let b = Scripted::new(vec![ok("from b")]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let settings = RoutingSettings {
        attempt_timeout_ms: 60_000,
        ..settings()
    };
    let started = Instant::now();
    let routed = route(&router(&["a", "b"], settings), &chain, 10)
        .await
        .unwrap();
    assert_eq!(routed.index, 1);
    assert_eq!(started.elapsed(), Duration::from_secs(5), "half of 10 s");
}

#[tokio::test(start_paused = true)]
async fn a_model_s_own_settings_override_the_routing_ones() {
    let a = Scripted::new(vec![status(503, StatusKind::Other, None)]);
    let b = Scripted::new(vec![None]);
    let own = Overrides {
        max_retries: Some(0),
        ..Overrides::default()
    };
    let mut a_model = model("a", a.clone());
    Arc::get_mut(&mut a_model).unwrap().overrides = own;
    let mut b_model = model("b", b.clone());
    Arc::get_mut(&mut b_model).unwrap().overrides = Overrides {
        attempt: Some(Duration::from_millis(300)),
        ..Overrides::default()
    };
    let chain = [a_model, b_model];
    let started = Instant::now();
    let result = route(&router(&["a", "b"], settings()), &chain, 10).await;
    assert!(matches!(result, Err(RouteError::Exhausted(_))));
    assert_eq!(a.calls(), 1, "no retry for a");
    assert_eq!(b.calls(), 3, "b's own 300 ms, retried as routing says");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1_300),
        "3 × 300 ms and backoffs: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn exhausted_retry_budget_means_no_retries() {
    let a = Scripted::new(vec![status(500, StatusKind::Other, None)]);
    let b = Scripted::new(vec![ok("from b")]);
    let chain = [model("a", a.clone()), model("b", b.clone())];
    let settings = RoutingSettings {
        retry_budget_min: 1,
        retry_budget_ratio: 0.0,
        breaker_min_requests: 100,
        ..settings()
    };
    let router = router(&["a", "b"], settings);
    route(&router, &chain, 10).await.unwrap();
    assert_eq!(a.calls(), 2, "the one retry the budget holds");
    route(&router, &chain, 10).await.unwrap();
    assert_eq!(a.calls(), 3, "no retry left");
}
