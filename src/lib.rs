//! session-relay keeps LLM conversations server-side.
//!
//! A tour of the modules, in the order a request meets them:
//!
//! - [`startup`] assembles the one [`state::AppState`] and the HTTP server; `main.rs` is a shim.
//!   [`state`] holds that state; it sits below the routes and the conversation layer.
//! - [`config`] is the only place that reads the environment: TOML file plus overrides.
//! - [`auth`] turns `Authorization: Bearer …` into a tenant (or refuses); `routes::auth` runs it
//!   per request (middleware and extractors).
//! - [`routes`] is HTTP only: parse, call the domain and the store, map errors.
//!   `routes/openai.rs` is the OpenAI-compatible relay, with OpenAI's error shape;
//!   `routes/playground.rs` serves the browser playground built from `web/playground/`.
//! - [`conversation`] runs one turn: lease, context, upstream call, atomic commit.
//! - [`transfer`] runs bulk imports (streamed, batched, pipelined) and NDJSON exports.
//! - [`metering`] enforces per-key rate limits and spending caps, and records usage.
//! - [`domain`] holds sessions, turns, token counting and the context builder — no I/O, and
//!   its own error type, which [`error`] maps into the contract's bodies.
//! - [`store`] is the only place that knows Redis keys and Lua scripts (plus an in-memory twin).
//! - [`llm`] talks to upstream models (OpenAI-compatible, Anthropic, built-in echo).
//!   Its `router` walks a request's fallback chain: retries, timeouts, circuit breakers.
//! - [`error`] maps every failure, once, into the contract's error bodies.
//! - [`cli`] is the `import` / `export` subcommands: a client of a running server.
//! - [`telemetry`] sets up structured logs; [`metrics`] counts and times for Prometheus.
//! - [`per_thread`] gives each server worker its own Redis pool and HTTP client.

pub mod auth;
pub mod cli;
pub mod config;
pub mod conversation;
pub mod domain;
pub mod error;
pub mod llm;
pub mod metering;
pub mod metrics;
pub mod per_thread;
pub mod routes;
pub mod shutdown;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod transfer;
