//! Assembles the application: the one [`AppState`], the HTTP server, and its listener.
//!
//! [`Application::build`] binds its own listener (port 0 in tests) and exposes
//! [`Application::port`] and [`Application::run_until_stopped`], so tests start the real
//! server exactly as production does.

use std::{net::TcpListener, sync::Arc, time::Duration};

use actix_web::{App, HttpServer, dev::Server, http::KeepAlive, middleware, web};
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;

use crate::{
    auth::KeyRing,
    config::Settings,
    llm::{HttpClient, registry::ModelRegistry, router::Router},
    per_thread::PerThread,
    routes,
    shutdown::{self, ShutdownTrigger},
    state::AppState,
    store::{Store, StoreError, memory::MemoryStore, redis::RedisStore},
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("upstream HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
}

pub struct Application {
    port: u16,
    server: Server,
    /// `server.metrics_listen`: `/metrics` on an address of its own.
    metrics: Option<Server>,
    state: web::Data<AppState>,
    shutdown: ShutdownTrigger,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        // rustls (upstreams over HTTPS, `rediss://` Redis) needs a crypto provider chosen
        // once per process; installing twice (several apps in one test process) is
        // refused harmlessly.
        drop(rustls::crypto::ring::default_provider().install_default());
        let store = build_store(&settings).await?;
        let http = build_http_client(&settings)?;
        crate::metrics::handle();
        let keys = KeyRing::from_settings(&settings.auth);
        if keys.is_loopback_mode() {
            tracing::warn!(
                "LOOPBACK MODE: no API key is configured, so every client connecting from this machine is served, as tenant `default`, with no key. A reverse proxy, sidecar or tunnel on this host makes every client local: configure a key (SESSION_RELAY_API_KEY, [[auth.keys]] or SESSION_RELAY_ADMIN_KEY) before putting anything in front of this service"
            );
        }
        let models = ModelRegistry::from_settings(&settings, &http);
        crate::domain::tokens::TokenCounter::warm_up(models.tokenizers());
        let router = Router::new(&settings.routing, models.names());
        let listener = bind(&settings.server.listen)?;
        let port = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.server.listen.clone(),
            source,
        })?;
        let metrics = match &settings.server.metrics_listen {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let retry_base = Duration::from_secs(settings.compaction.retry_base_seconds);
        let state = web::Data::new(AppState {
            settings,
            store,
            keys,
            models,
            router,
            draining: Arc::default(),
            leases: Arc::default(),
            usage_backlog: Arc::default(),
            compaction: crate::conversation::compaction::Jobs::new(retry_base),
        });
        (state.usage_backlog.clone()).retry_in_background(state.store.clone());
        crate::conversation::compaction::serve(&state.clone().into_inner());
        let server = run(listener, state.clone())?;
        let store = state.store.clone();
        let metrics = metrics
            .map(|listener| crate::metrics::serve(listener, store))
            .transpose()
            .map_err(|source| StartupError::Bind {
                addr: "metrics listener".into(),
                source,
            })?;
        Ok(Application {
            port: port.port(),
            server,
            metrics,
            state,
            shutdown: ShutdownTrigger::default(),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Starts a graceful shutdown, as SIGTERM would.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        self.shutdown.clone()
    }

    /// Serves until SIGTERM, Ctrl-C or the trigger, then drains (see [`crate::shutdown`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let server = &self.state.settings.server;
        let delay = Duration::from_millis(server.drain_delay_ms);
        let grace = Duration::from_secs(server.shutdown_grace_seconds);
        let drain = shutdown::drain_on_signal(
            self.shutdown,
            self.state.draining.clone(),
            self.server.handle(),
            delay,
            grace,
        );
        let drainer = tokio::spawn(drain);
        let metrics = self.metrics.map(|server| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        let result = self.server.await;
        drainer.abort();
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        let store = self.state.store.as_ref();
        self.state.leases.release_all(store).await;
        // One last try for usage the store refused; what it still refuses is logged lost.
        self.state.usage_backlog.flush(store).await;
        self.state.usage_backlog.give_up();
        result
    }
}

fn bind(addr: &str) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).map_err(|source| StartupError::Bind {
        addr: addr.to_string(),
        source,
    })
}

fn run(listener: TcpListener, state: web::Data<AppState>) -> Result<Server, StartupError> {
    let max_body = state.settings.server.max_body_bytes;
    let grace = state.settings.server.shutdown_grace_seconds;
    let server = &state.settings.server;
    let peers = routes::connections::PeerConnections::new(server.max_connections_per_peer);
    let keep_alive = match server.keep_alive_seconds {
        0 => KeepAlive::Disabled,
        seconds => KeepAlive::Timeout(Duration::from_secs(seconds)),
    };
    let client_request_timeout = Duration::from_millis(server.client_request_timeout_ms);
    let client_disconnect_timeout = Duration::from_millis(server.client_disconnect_timeout_ms);
    let workers = match state.settings.server.workers {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    };
    let server = HttpServer::new(move || {
        let cors = routes::cors::cors(&state.settings.server.cors_allowed_origins);
        let (app, mut api) = App::new()
            .into_utoipa_app()
            .openapi(routes::docs::base())
            .configure(routes::configure)
            .split_for_parts();
        routes::docs::complete(&mut api);
        app.app_data(state.clone())
            .app_data(web::Data::new(routes::docs::Document::new(&api)))
            .app_data(web::Data::new(routes::fallback::KnownPaths::from_openapi(
                &api,
            )))
            .app_data(web::PayloadConfig::new(max_body))
            .wrap(middleware::Condition::new(
                cors.is_some(),
                cors.unwrap_or_default(),
            ))
            .wrap(middleware::from_fn(routes::auth::authenticate_first))
            .wrap(middleware::from_fn(routes::connections::bounded))
            .wrap(middleware::from_fn(crate::metrics::track))
            .wrap(middleware::from_fn(routes::extract::request_id_header))
            .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
            .default_service(web::to(routes::fallback::unrouted))
    })
    .workers(workers)
    // Answers and stream events go out as soon as they are written.
    .tcp_nodelay(true)
    .keep_alive(keep_alive)
    .client_request_timeout(client_request_timeout)
    .client_disconnect_timeout(client_disconnect_timeout)
    .on_connect(move |conn, data| peers.on_connect(conn, data))
    .disable_signals()
    .shutdown_timeout(grace + shutdown::STREAM_FAREWELL.as_secs())
    .listen(listener)
    .map_err(|source| StartupError::Bind {
        addr: "listener".into(),
        source,
    })?
    .run();
    Ok(server)
}

/// The store. A Redis that does not answer yet does not delay the listener: the store
/// refuses every call (503 `store_unavailable`, `/readyz` 503) until a background task
/// has prepared it (scripts, migrations), so probes see a live service that is not ready.
async fn build_store(settings: &Settings) -> Result<Arc<dyn Store>, StartupError> {
    let Some(_) = &settings.store.redis_url else {
        tracing::warn!(
            "no redis_url configured: using the in-process memory store (development only, nothing survives a restart)"
        );
        return Ok(Arc::new(MemoryStore::new()));
    };
    let store = RedisStore::connect(&settings.store).await?;
    match store.prepare().await {
        Ok(version) => redis_ready(&store, version),
        // A Redis that refuses Lua, or holds a key layout newer than this build, does not
        // change by waiting: refuse to start.
        Err(err @ StoreError::Corrupt(_)) => return Err(err.into()),
        Err(err) => {
            tracing::warn!(%err, "redis is not ready: serving 503 until it is, trying again meanwhile");
            tokio::spawn(prepare_until_ready(store.clone()));
        }
    }
    Ok(Arc::new(store))
}

/// First retry after this long, doubling up to [`PREPARE_RETRY_MAX`].
const PREPARE_RETRY_FIRST: Duration = Duration::from_millis(250);
const PREPARE_RETRY_MAX: Duration = Duration::from_secs(2);
/// Failures logged while waiting: the first, then one in this many.
const PREPARE_LOG_EVERY: u32 = 30;

async fn prepare_until_ready(store: RedisStore) {
    let mut wait = PREPARE_RETRY_FIRST;
    for attempt in 1u32.. {
        tokio::time::sleep(wait).await;
        match store.prepare().await {
            Ok(version) => return redis_ready(&store, version),
            Err(err) if attempt % PREPARE_LOG_EVERY == 0 => {
                tracing::warn!(%err, attempt, "redis is still not ready");
            }
            Err(_) => {}
        }
        wait = (wait * 2).min(PREPARE_RETRY_MAX);
    }
}

fn redis_ready(store: &RedisStore, version: u32) {
    tracing::info!(schema_version = version, "redis store ready");
    crate::store::redis::count_expired_sessions(store);
}

/// The client for every upstream, one per worker thread: pooled connections, bounded
/// connect, no redirects (a redirect could carry a provider key to another host).
fn build_http_client(settings: &Settings) -> Result<HttpClient, reqwest::Error> {
    let connect_timeout = Duration::from_millis(settings.server.upstream_connect_timeout_ms);
    let clients = PerThread::try_new(move || {
        reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
    })?;
    Ok(Arc::new(clients))
}
