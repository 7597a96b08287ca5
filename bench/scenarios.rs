//! One run: start everything, seed sessions, measure each scenario, print the table.

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    Plan,
    client::{CONTEXT_TURNS, Client, MODEL, SLOW_MODEL, TEXT, service_toml},
    load::{Closed, Latencies, Outcome, closed_loop, frontier},
    procs::{BIN, Cluster, Redis, RssSampler, Service, status_mb},
    report, upstream,
};

const THRESHOLDS_MS: [f64; 2] = [5.0, 20.0];
const LONG_HISTORY: usize = 10_000;

/// Sessions made before any measurement, each used by one client at a time.
struct Sessions {
    /// 10 turns, instant model; as many as the open loop may have requests in flight.
    pool: Vec<String>,
    /// 10 turns, the 50 ms model.
    slow: Vec<String>,
    /// 10,000 turns, instant model.
    long: Vec<String>,
    /// 10 turns, instant model, continued through the Responses API.
    responses: Vec<String>,
}

pub async fn run(plan: &Plan) {
    let redis = Redis::start();
    let upstream = upstream::start();
    let service = Service::start(&redis.url(), &service_toml(&upstream), &[]);
    // Let the workers finish starting before calling the process idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = status_mb(service.pid(), "VmRSS");
    let client = Client::new(service.url(), upstream.clone());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let binary = BIN.find("target/").map_or(BIN, |i| &BIN[i..]);
    println!("service: {binary} as its own process, default workers (one per core);");
    println!("private redis-server; fake upstream and load driver in this process;");
    println!(
        "everything on 127.0.0.1, sharing {cores} cores. Messages of {} bytes.",
        TEXT.len()
    );
    println!(
        "A send on a 10-turn context makes the service call upstream with {} messages (system \
         prompt, {CONTEXT_TURNS} turns, the new one); the baseline and chat/completions send that body.",
        CONTEXT_TURNS + 2
    );

    let sessions = seed(&client, plan).await;
    let long_bytes = redis.session_bytes(&sessions.long[0]);
    for id in [&sessions.pool[0], &sessions.slow[0], &sessions.long[0]] {
        let sent = client.upstream_messages(id).await;
        assert_eq!(sent, CONTEXT_TURNS as u64 + 2, "unexpected upstream body");
    }
    println!();
    redis_memory(&client, &redis, plan.memory_count, long_bytes).await;

    let sampler = RssSampler::start(service.pid());
    println!();
    latencies(&client, plan, &sessions).await;
    println!();
    let baseline = direct(&client, 1, &plan.closed, false).await;
    crate::compaction::run(&client, &plan.compaction, &baseline).await;
    println!();
    frontiers(&client, plan, sessions.pool).await;
    let load_rss = sampler.finish();
    println!();
    on_a_cluster(&client, &upstream, plan).await;

    println!();
    report::section("service memory (the service process only)");
    let peak_rss = status_mb(service.pid(), "VmHWM");
    report::figure(
        "RSS idle, after startup (VmRSS)",
        format!("{idle_rss:.1} MB"),
    );
    report::figure(
        "RSS under load (highest VmRSS, sampled every 100 ms)",
        format!("{load_rss:.1} MB"),
    );
    report::figure(
        "peak RSS of the run (VmHWM, includes seeding by import)",
        format!("{peak_rss:.1} MB"),
    );
}

/// The send on a service whose store is a local Redis Cluster, next to the same send on
/// the service above (one redis-server), measured one after the other at each concurrency.
async fn on_a_cluster(single: &Client, upstream: &str, plan: &Plan) {
    let cluster = Cluster::start();
    let mode = [("SESSION_RELAY_REDIS_MODE", "cluster".to_string())];
    let service = Service::start(&cluster.seeds(), &service_toml(upstream), &mode);
    let clustered = Client::new(service.url(), upstream.to_string());
    let most = plan.concurrencies[2];
    let (on_single, on_cluster) = (
        single.seed(MODEL, most, CONTEXT_TURNS).await,
        clustered.seed(MODEL, most, CONTEXT_TURNS).await,
    );
    report::section(
        "Redis Cluster (3 primaries, 3 replicas, on these cores too) against one redis-server",
    );
    report::latency_header();
    let bounds = &plan.closed;
    for c in [1, most] {
        let base = direct(single, c, bounds, false).await;
        report::row("baseline: fake upstream directly", c, &base, None);
        let one = sends(single, &on_single[..c], bounds).await;
        report::row("send, one redis-server", c, &one, Some(&base));
        let many = sends(&clustered, &on_cluster[..c], bounds).await;
        report::row("send, Redis Cluster", c, &many, Some(&base));
        let overhead = |l: &Latencies, q| l.p(q) - base.p(q);
        report::figure(
            "  overhead p50, cluster / single",
            format!(
                "{:.2}",
                overhead(&many, 0.5) / overhead(&one, 0.5).max(1e-9)
            ),
        );
    }
}

async fn seed(client: &Client, plan: &Plan) -> Sessions {
    let most = plan.concurrencies.iter().copied().max().unwrap_or(1);
    let pool_size = plan.search.max_in_flight.max(most);
    let long_most = plan.long_history.iter().copied().max().unwrap_or(1);
    Sessions {
        pool: client.seed(MODEL, pool_size, CONTEXT_TURNS).await,
        slow: client.seed(SLOW_MODEL, most, CONTEXT_TURNS).await,
        long: client.seed(MODEL, long_most, LONG_HISTORY).await,
        responses: client.seed(MODEL, most, CONTEXT_TURNS).await,
    }
}

/// `c` clients calling `request(client, i)`, `i` the client's index.
async fn closed<F, Fut>(client: &Client, c: usize, bounds: &Closed, request: F) -> Latencies
where
    F: Fn(Client, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let client = client.clone();
    closed_loop(c, bounds, move |i| request(client.clone(), i)).await
}

/// Client `i` sends on `sessions[i]` only: a session takes one message at a time.
async fn sends(client: &Client, sessions: &[String], bounds: &Closed) -> Latencies {
    let sessions = Arc::new(sessions.to_vec());
    closed(client, sessions.len(), bounds, move |client, i| {
        let sessions = sessions.clone();
        async move { client.send(&sessions[i]).await }
    })
    .await
}

/// Client `i` alternates a send on `sends[i]` and a response chained on `chains[i]`
/// (each by the previous one's id), so that both see the same moment of a noisy machine;
/// the latencies of each kind apart.
async fn alternating(
    client: &Client,
    sends: &[String],
    chains: &[String],
    bounds: &Closed,
) -> (Latencies, Latencies) {
    let sends = Arc::new(sends.to_vec());
    let chains: Arc<Vec<Mutex<(String, usize)>>> = Arc::new(
        (chains.iter())
            .map(|id| Mutex::new((format!("conv_{id}"), 0)))
            .collect(),
    );
    let samples: Arc<[Mutex<Vec<f64>>; 2]> = Arc::default();
    let recorded = samples.clone();
    let all = closed(client, sends.len(), bounds, move |client, i| {
        let (sends, chains, samples) = (sends.clone(), chains.clone(), samples.clone());
        async move {
            let (previous, turn) = chains[i].lock().unwrap().clone();
            let started = std::time::Instant::now();
            if turn % 2 == 0 {
                client.send(&sends[i]).await?;
                *chains[i].lock().unwrap() = (previous, turn + 1);
            } else {
                let next = client.respond(&previous).await?;
                *chains[i].lock().unwrap() = (next, turn + 1);
            }
            let took = started.elapsed().as_secs_f64() * 1000.0;
            samples[turn % 2].lock().unwrap().push(took);
            Ok(())
        }
    })
    .await;
    // The warm-up's samples are left out, as the closed loop leaves them out.
    let [send, respond] = &*recorded;
    let kind = |kept: &Mutex<Vec<f64>>| {
        let kept = kept.lock().unwrap();
        let measured = kept.len().min(all.samples.len().div_ceil(2));
        Latencies {
            samples: kept[kept.len() - measured..].to_vec(),
            elapsed: all.elapsed,
        }
    };
    (kind(send), kind(respond))
}

async fn direct(client: &Client, c: usize, bounds: &Closed, slow: bool) -> Latencies {
    closed(client, c, bounds, move |client, _| async move {
        client.direct(slow).await
    })
    .await
}

/// Each concurrency measures its baselines right before the scenarios compared with them,
/// so that drift on a shared machine hits both alike.
async fn latencies(client: &Client, plan: &Plan, sessions: &Sessions) {
    report::section(
        "latency, closed loop: `conc` clients, each sending when its previous answer is in; \
         ovh = latency - baseline",
    );
    report::latency_header();
    let bounds = &plan.closed;
    let (mut slow_rows, mut long_rows) = (Vec::new(), Vec::new());
    report::section("instant upstream");
    for &c in &plan.concurrencies {
        let base = direct(client, c, bounds, false).await;
        report::row("baseline: fake upstream directly", c, &base, None);
        let send = sends(client, &sessions.pool[..c], bounds).await;
        report::row("send (stateful), 10-turn session", c, &send, Some(&base));
        if c != plan.concurrencies[1] {
            let (pool, chains) = (&sessions.pool[..c], &sessions.responses[..c]);
            let (send, chained) = alternating(client, pool, chains, bounds).await;
            report::row(
                "  send, alternating with the next row",
                c,
                &send,
                Some(&base),
            );
            let row = "  responses.create, previous_response_id";
            report::row(row, c, &chained, Some(&base));
        }
        let chat = closed(
            client,
            c,
            bounds,
            |client, _| async move { client.chat().await },
        );
        report::row("chat/completions (stateless)", c, &chat.await, Some(&base));
        if plan.long_history.contains(&c) {
            long_rows.push((c, sends(client, &sessions.long[..c], bounds).await, base));
        }
        let slow_base = direct(client, c, bounds, true).await;
        slow_rows.push((
            c,
            sends(client, &sessions.slow[..c], bounds).await,
            slow_base,
        ));
    }
    report::section("tool calling (instant upstream): a 3-tool request whose answer calls one");
    for c in [1, plan.concurrencies[2]] {
        for stream in [false, true] {
            let label = if stream { ", streamed" } else { "" };
            let base = closed(client, c, bounds, move |client, _| async move {
                client.tool_direct(stream).await
            });
            let base = base.await;
            report::row(&format!("baseline: fake directly{label}"), c, &base, None);
            let relayed = closed(client, c, bounds, move |client, _| async move {
                client.tool_chat(stream).await
            });
            let row = format!("chat/completions, 3 tools{label}");
            report::row(&row, c, &relayed.await, Some(&base));
        }
    }
    report::section(&format!("{} ms upstream", upstream::SLOW_DELAY.as_millis()));
    for (c, send, base) in &slow_rows {
        report::row("baseline: fake upstream directly", *c, base, None);
        report::row("send (stateful), 10-turn session", *c, send, Some(base));
    }
    report::section("history length (instant upstream; ovh against the baseline above)");
    report::section("  sessions start with 10,000 turns instead of 10, and grow by 2 per send;");
    report::section("  the context is the newest 10 turns either way");
    for (c, send, base) in &long_rows {
        report::row("send (stateful), 10,000-turn session", *c, send, Some(base));
    }
    report::section("sessions (instant upstream)");
    for c in [1, plan.concurrencies[2]] {
        let created = closed(client, c, bounds, |client, _| async move {
            client.create().await.map(drop)
        });
        report::row("create session", c, &created.await, None);
        let ids = Arc::new(sessions.pool[..c].to_vec());
        let read = closed(client, c, bounds, move |client, i| {
            let ids = ids.clone();
            async move { client.get(&ids[i]).await }
        });
        report::row("get session", c, &read.await, None);
    }
}

async fn frontiers(client: &Client, plan: &Plan, pool: Vec<String>) {
    let search = &plan.search;
    report::section(&format!(
        "throughput frontier, open loop: a fixed rate for {:.1} s per step (up to {:.1} s to send \
         at least {} requests), latency from each request's scheduled start, at most {} in flight",
        search.step_time.as_secs_f64(),
        3.0 * search.step_time.as_secs_f64(),
        search.min_requests,
        search.max_in_flight
    ));
    report::frontier_header(&THRESHOLDS_MS);
    // `max_in_flight` sessions: one is free for every request the dispatcher lets start,
    // so no send waits on another's lease.
    let pool = Arc::new(Mutex::new(pool));
    let sender = client.clone();
    let send_steps = frontier(search, &THRESHOLDS_MS, move || {
        let (client, pool) = (sender.clone(), pool.clone());
        async move {
            let id = pool.lock().unwrap().pop().ok_or("no free session")?;
            let outcome = client.send(&id).await;
            pool.lock().unwrap().push(id);
            outcome
        }
    });
    let send_steps = send_steps.await;
    report::frontier_row(
        "send (stateful), 10-turn sessions",
        &THRESHOLDS_MS,
        &send_steps,
    );
    let chatter = client.clone();
    let chat_steps = frontier(search, &THRESHOLDS_MS, move || {
        let client = chatter.clone();
        async move { client.chat().await }
    });
    let chat_steps = chat_steps.await;
    report::frontier_row("chat/completions (stateless)", &THRESHOLDS_MS, &chat_steps);
    report::steps(&[("send", &send_steps), ("chat/completions", &chat_steps)]);
}

/// The bytes of a session's keys, fresh (system prompt, no turns) and after `count` sends
/// (two stored messages each); and those of a 10,000-turn session, per turn.
async fn redis_memory(client: &Client, redis: &Redis, count: usize, long_bytes: u64) {
    let id = client.create().await.unwrap();
    let empty = redis.session_bytes(&id);
    for _ in 0..count {
        client.send(&id).await.unwrap();
    }
    let per_turn = redis.session_bytes(&id).saturating_sub(empty) as f64 / (2 * count) as f64;
    report::section("redis memory (MEMORY USAGE, SAMPLES 0, of every key naming the session)");
    report::figure(
        "bytes of a new session (system prompt, no turns)",
        empty.to_string(),
    );
    report::figure(
        &format!(
            "bytes per stored turn ({count} sends = {} turns of {} bytes)",
            2 * count,
            TEXT.len()
        ),
        format!("{per_turn:.1}"),
    );
    report::figure(
        "bytes per stored turn, a 10,000-turn session made by import",
        format!("{:.1}", long_bytes as f64 / LONG_HISTORY as f64),
    );
}
