//! Prometheus metrics and the per-request timing behind `Server-Timing`.
//!
//! Every label comes from a closed set, so no request can add a value: route patterns
//! (`/v1/sessions/{id}`, and `unmatched` for any other path), the registered methods (any
//! other token is `other`), model names, status codes — never a session id, user id or key.

use std::{
    net::TcpListener,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use actix_web::{
    App, Error, HttpResponse, HttpServer,
    body::MessageBody,
    dev::{Server, ServiceRequest, ServiceResponse},
    http::{
        Method,
        header::{HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{domain::message::Role, error::ApiError, store::Store};

/// Installs the recorder once per process (a second install would fail; tests build many
/// apps in one process) and keeps its histograms trimmed.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .ok()?
                .install_recorder()
                .map_err(|err| tracing::warn!(%err, "metrics recorder not installed"))
                .ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// The Prometheus text of `GET /metrics`. A scrape also starts a recount of the live
/// sessions when the last one is older than [`LIVE_SESSIONS_EVERY`]: the next scrape shows it.
pub fn exposition(store: &Arc<dyn Store>) -> HttpResponse {
    recount_live_sessions(store);
    let body = handle().map(|h| h.render()).unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}

/// How stale `sessions_live` may get while someone scrapes. Counting scans the store
/// (Redis: one `SCAN` round trip per thousand keys), so it runs only when scraped, in the
/// background, one count at a time.
pub const LIVE_SESSIONS_EVERY: Duration = Duration::from_secs(15);

fn recount_live_sessions(store: &Arc<dyn Store>) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let Ok(mut last) = LAST.lock() else {
        return;
    };
    if last.is_some_and(|at| at.elapsed() < LIVE_SESSIONS_EVERY) {
        return;
    }
    *last = Some(Instant::now());
    let store = store.clone();
    tokio::spawn(async move {
        match store.count_sessions().await {
            Ok(live) => gauge!("sessions_live").set(live as f64),
            Err(err) => tracing::debug!(%err, "live sessions not counted"),
        }
    });
}

/// The turns a send stored: `messages_total` by role (imports count theirs in
/// `messages_imported_total`).
pub fn record_turns_stored(roles: impl Iterator<Item = Role>) {
    for role in roles {
        counter!("messages_total", "role" => role.as_str()).increment(1);
    }
}

/// The server of `server.metrics_listen`: `GET /metrics` and nothing else, on one worker,
/// so the scrape address can sit on a private interface apart from the API.
pub fn serve(listener: TcpListener, store: Arc<dyn Store>) -> std::io::Result<Server> {
    let server = HttpServer::new(move || {
        let store = store.clone();
        App::new()
            .route(
                "/metrics",
                web::get().to(move || std::future::ready(exposition(&store))),
            )
            .default_service(web::to(async || {
                Err::<HttpResponse, _>(ApiError::RouteNotFound)
            }))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// Seconds; fine at the low end, where the service's own overhead lives.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
    60.0,
];

/// Time a request spent waiting on the store and on upstream models.
#[derive(Default)]
pub struct Timings {
    store_ns: AtomicU64,
    upstream_ns: AtomicU64,
}

tokio::task_local! {
    static TIMINGS: Arc<Timings>;
}

/// Adds store time to the current request (no-op outside a request).
pub fn record_store(elapsed: Duration, failed: bool) {
    histogram!("redis_command_duration_seconds").record(elapsed.as_secs_f64());
    if failed {
        counter!("redis_command_errors_total").increment(1);
    }
    add(elapsed, |t| &t.store_ns);
}

/// Adds upstream waiting time to the current request.
/// One upstream attempt. For streams the attempt ends at the first content, so its
/// duration is the time to first token and is recorded under that name.
pub fn record_upstream(model: &str, elapsed: Duration, outcome: &'static str, streaming: bool) {
    let name = if streaming {
        "upstream_time_to_first_token_seconds"
    } else {
        "upstream_duration_seconds"
    };
    histogram!(name, "model" => model.to_string(), "outcome" => outcome)
        .record(elapsed.as_secs_f64());
    counter!("upstream_attempts_total", "model" => model.to_string(), "outcome" => outcome)
        .increment(1);
    add(elapsed, |t| &t.upstream_ns);
}

/// Why a chain moved past a model: `caller` (our request's fault), `policy` (breaker
/// open, retry budget or count spent) or `provider` (the upstream failed).
pub fn record_fallback(model: &str, fault: &'static str) {
    counter!("upstream_fallbacks_total", "model" => model.to_string(), "fault" => fault)
        .increment(1);
}

/// Sessions dropped by their TTL (see `store::redis::expiry`, and the memory store's sweep).
pub fn record_sessions_expired(count: u64) {
    counter!("sessions_expired_total").increment(count);
}

/// `reason` is the fault retried: `rate_limited`, `server_error`, `timeout`, `connection`…
pub fn record_retry(model: &str, reason: &'static str) {
    counter!("upstream_retries_total", "model" => model.to_string(), "reason" => reason)
        .increment(1);
}

fn add(elapsed: Duration, field: fn(&Timings) -> &AtomicU64) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let _ = TIMINGS.try_with(|t| field(t).fetch_add(nanos, Ordering::Relaxed));
}

/// Counts and times every request by route pattern, and adds `Server-Timing`.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let route = req.match_pattern().unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let timings = Arc::new(Timings::default());
    let started = Instant::now();
    let mut response = TIMINGS.scope(timings.clone(), next.call(req)).await?;
    let total = started.elapsed();
    let status = response.status().as_u16().to_string();
    counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!("http_request_duration_seconds", "route" => route, "method" => method)
        .record(total.as_secs_f64());
    let store = Duration::from_nanos(timings.store_ns.load(Ordering::Relaxed));
    let upstream = Duration::from_nanos(timings.upstream_ns.load(Ordering::Relaxed));
    if !upstream.is_zero() {
        histogram!("request_overhead_seconds").record(total.saturating_sub(upstream).as_secs_f64());
    }
    let header = format!(
        "store;dur={:.3}, upstream;dur={:.3}, total;dur={:.3}",
        millis(store),
        millis(upstream),
        millis(total)
    );
    if let Ok(value) = HeaderValue::from_str(&header) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("server-timing"), value);
    }
    Ok(response)
}

/// Methods a route may be registered under; any other token a client sends is `other`, so
/// no request can add a label value (each would cost memory and `/metrics` text for good).
pub fn method_label(method: &Method) -> &'static str {
    static KNOWN: [Method; 7] = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::HEAD,
        Method::OPTIONS,
    ];
    KNOWN
        .iter()
        .find(|known| *known == method)
        .map_or("other", Method::as_str)
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
