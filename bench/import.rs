//! The import scenario: the server binary as its own process (so its memory is its own)
//! with a private `redis-server`, fed an NDJSON file of ~200-byte messages through the
//! `import` subcommand, as an operator would. Prints messages/s, the server's peak RSS
//! (`VmHWM`) and Redis bytes per imported turn (`used_memory` growth / turns).
//! `SR_BENCH_IMPORT_MB` sets the file size (default 200 in full mode, 4 in smoke mode).
//! The same import runs into one `redis-server` and into a local Redis Cluster.

use std::{
    io::Write,
    path::Path,
    process::{Command, Stdio},
    time::Instant,
};

use crate::procs::{BIN, Cluster, Redis, Service, status_mb};

const KEY: &str = "bench-import-key";
const MESSAGES_PER_SESSION: usize = 20;

pub struct Figures {
    pub megabytes: usize,
    pub messages: u64,
    pub seconds: f64,
    pub baseline_rss_mb: f64,
    pub peak_rss_mb: f64,
    pub redis_bytes_per_turn: f64,
}

/// Sessions of 20 messages of about 200 bytes of varied text; returns the message count.
fn write_file(path: &Path, bytes: usize) -> u64 {
    let words = [
        "the",
        "customer",
        "asked",
        "about",
        "their",
        "invoice",
        "and",
        "we",
        "explained",
        "how",
        "refunds",
        "work",
        "résumé",
        "données",
        "配送",
        "thanks",
        "order",
        "42",
    ];
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let (mut written, mut session, mut messages) = (0, 0usize, 0u64);
    while written < bytes {
        let turns: Vec<String> = (0..MESSAGES_PER_SESSION)
            .map(|j| {
                let mut content = String::new();
                let mut k = session * 7 + j * 3;
                while content.len() < 190 {
                    content.push_str(words[k % words.len()]);
                    content.push(' ');
                    k = k.wrapping_mul(31).wrapping_add(11);
                }
                let role = if j % 2 == 0 { "user" } else { "assistant" };
                format!("{{\"role\":\"{role}\",\"content\":\"{content}\"}}")
            })
            .collect();
        let line = format!(
            "{{\"session_id\":\"bench-{session}\",\"user_id\":\"user-{}\",\"messages\":[{}]}}\n",
            session % 1000,
            turns.join(",")
        );
        file.write_all(line.as_bytes()).unwrap();
        written += line.len();
        session += 1;
        messages += MESSAGES_PER_SESSION as u64;
    }
    file.flush().unwrap();
    messages
}

/// Where the import writes.
pub enum Target {
    Single,
    Cluster,
}

pub fn run(megabytes: usize, target: Target) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let key = ("SESSION_RELAY_API_KEY", KEY.to_string());
    let (single, cluster, server);
    let used_memory: Box<dyn Fn() -> u64> = match target {
        Target::Single => {
            single = Redis::start();
            server = Service::start(&single.url(), "", &[key]);
            Box::new(|| single.used_memory())
        }
        Target::Cluster => {
            cluster = Cluster::start();
            let mode = ("SESSION_RELAY_REDIS_MODE", "cluster".to_string());
            server = Service::start(&cluster.seeds(), "", &[key, mode]);
            Box::new(|| cluster.used_memory())
        }
    };
    let file = dir.path().join("sessions.ndjson");
    let messages = write_file(&file, megabytes << 20);
    let (baseline_rss_mb, redis_before) = (status_mb(server.pid(), "VmHWM"), used_memory());
    let started = Instant::now();
    let status = Command::new(BIN)
        .arg("import")
        .arg(&file)
        .args(["--url", &server.url(), "--key", KEY])
        .stderr(Stdio::null())
        .status()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.success(), "the import failed");
    let redis_after = used_memory();
    Figures {
        megabytes,
        messages,
        seconds,
        baseline_rss_mb,
        peak_rss_mb: status_mb(server.pid(), "VmHWM"),
        redis_bytes_per_turn: redis_after.saturating_sub(redis_before) as f64 / messages as f64,
    }
}
