//! The benchmark harness: a private `redis-server`, a fake upstream (instant and 50 ms),
//! the service binary as its own process, and bounded load over loopback. Prints one
//! table: send overhead by concurrency, the throughput frontier, history length, Redis
//! bytes, service RSS, import throughput, context compression on a long conversation, and
//! the send and the import on a local Redis Cluster next to one redis-server.
//!
//! `cargo bench --bench relay` runs the full measurement (release build); run under
//! `cargo test --all-targets` (no `--bench` argument) it makes a smoke pass of every
//! scenario with tiny counts, so the harness cannot rot.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
mod compaction;
mod import;
mod load;
mod procs;
mod report;
mod scenarios;
mod upstream;

use std::time::{Duration, Instant};

use load::{Closed, Search};

pub struct Plan {
    pub closed: Closed,
    pub concurrencies: [usize; 3],
    /// Concurrencies of the 10,000-turn sends (each client needs a session of its own).
    pub long_history: &'static [usize],
    pub search: Search,
    /// Sends and creates behind the Redis bytes figures.
    pub memory_count: usize,
    pub import_mb: usize,
    pub compaction: compaction::Replay,
}

impl Plan {
    /// About three and a half minutes of load on two cores (each bound is a ceiling).
    fn full() -> Plan {
        Plan {
            closed: Closed {
                warmup: 10,
                per_client: 100_000,
                time_limit: Duration::from_secs(4),
            },
            concurrencies: [1, 8, 32],
            long_history: &[1, 32],
            search: Search {
                start_rate: 250.0,
                max_rate: 64_000.0,
                step_time: Duration::from_secs(3),
                min_requests: 1000,
                refinements: 3,
                budget: Duration::from_secs(45),
                max_in_flight: 256,
            },
            memory_count: 1000,
            import_mb: 200,
            compaction: compaction::Replay {
                conversations: 8,
                exchanges: 150,
                budget: 4000,
            },
        }
    }

    /// Every scenario, tiny counts: seconds in a debug build.
    fn smoke() -> Plan {
        Plan {
            closed: Closed {
                warmup: 1,
                per_client: 3,
                time_limit: Duration::from_millis(300),
            },
            concurrencies: [1, 8, 32],
            long_history: &[1],
            search: Search {
                start_rate: 20.0,
                max_rate: 40.0,
                step_time: Duration::from_millis(200),
                min_requests: 0,
                refinements: 1,
                budget: Duration::from_secs(1),
                max_in_flight: 16,
            },
            memory_count: 10,
            import_mb: 4,
            compaction: compaction::Replay {
                conversations: 1,
                exchanges: 16,
                budget: 600,
            },
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { Plan::full() } else { Plan::smoke() };
    let started = Instant::now();
    println!(
        "session-relay benchmark ({} mode)",
        if full { "full" } else { "smoke" }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(scenarios::run(&plan));
    drop(runtime);
    println!();
    import_scenario(&plan);
    println!();
    println!("wall time {:.0} s", started.elapsed().as_secs_f64());
}

/// Bulk import through the CLI into a server process of its own (see `import.rs`), on one
/// redis-server and then on a Redis Cluster.
fn import_scenario(plan: &Plan) {
    let megabytes = std::env::var("SR_BENCH_IMPORT_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(plan.import_mb);
    let f = import::run(megabytes, import::Target::Single);
    let single_rate = f.messages as f64 / f.seconds.max(1e-9);
    report::section("import (own server process and redis-server)");
    report::figure(
        &format!(
            "messages/s: {} MB NDJSON, {} messages, via the CLI in {:.1} s",
            f.megabytes, f.messages, f.seconds
        ),
        format!("{single_rate:.0}"),
    );
    report::figure(
        "server RSS after startup (VmHWM)",
        format!("{:.0} MB", f.baseline_rss_mb),
    );
    report::figure(
        "server peak RSS (VmHWM)",
        format!("{:.0} MB", f.peak_rss_mb),
    );
    report::figure(
        "redis bytes per imported turn (used_memory growth / turns)",
        format!("{:.1}", f.redis_bytes_per_turn),
    );
    let c = import::run(megabytes, import::Target::Cluster);
    let cluster_rate = c.messages as f64 / c.seconds.max(1e-9);
    report::section("import into a Redis Cluster (3 primaries, 3 replicas, on these cores too)");
    report::figure(
        &format!("messages/s: the same file, in {:.1} s", c.seconds),
        format!("{cluster_rate:.0}"),
    );
    report::figure(
        "against one redis-server (cluster / single)",
        format!("{:.2}", cluster_rate / single_rate.max(1e-9)),
    );
    report::figure(
        "redis bytes per imported turn, primaries (used_memory growth / turns)",
        format!("{:.1}", c.redis_bytes_per_turn),
    );
}
