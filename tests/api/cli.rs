//! The `import` / `export` subcommands against the real server process, both started from
//! the built binary, with a private Redis: a large import (sized by `SR_IMPORT_TEST_MB`,
//! 20 MB by default) with the server's peak RSS measured, and a server killed mid-import.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::redis_server::{RedisServer, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_session-relay");
const KEY: &str = "cli-test-key-0001";

struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(dir: &Path, port: u16, redis: &RedisServer) -> Server {
        let config = dir.join("server.toml");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2\n[store]\nredis_url = \"{}\"\nkey_prefix = \"cli\"\n[log]\nlevel = \"error\"\n[import]\nidempotency_lease_seconds = 2\n",
            redis.url()
        );
        std::fs::write(&config, text).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(&config)
            .env("SESSION_RELAY_API_KEY", KEY)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Peak resident memory so far, in kB.
    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(server: &Server, args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--url", &server.url])
        .env("SESSION_RELAY_API_KEY", KEY)
        .env_remove("SESSION_RELAY_URL");
    command
}

/// An NDJSON file of about `bytes`: sessions of 20 messages of ~200 bytes; every other
/// one names its id. Returns the path, the number of sessions and the named ids.
fn write_file(dir: &Path, bytes: usize) -> (PathBuf, usize, Vec<String>) {
    let path = dir.join("sessions.ndjson");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut written, mut count, mut ids) = (0, 0, Vec::new());
    let words = [
        "migration",
        "résumé",
        "token",
        "history",
        "support",
        "答案",
        "relay",
        "ok",
    ];
    while written < bytes {
        let messages: Vec<String> = (0..20)
            .map(|j| {
                let content: String = (0..28).map(|k| words[(count + j + k) % words.len()]).collect::<Vec<_>>().join(" ");
                let role = if j % 2 == 0 { "user" } else { "assistant" };
                format!("{{\"role\":\"{role}\",\"content\":\"{count} {content}\",\"created_at\":\"2024-01-02T03:04:05Z\"}}")
            })
            .collect();
        let id = (count % 2 == 0).then(|| format!("cli-{count}"));
        let head = id
            .as_ref()
            .map_or(String::new(), |id| format!("\"session_id\":\"{id}\","));
        let line = format!(
            "{{{head}\"user_id\":\"u{}\",\"messages\":[{}]}}\n",
            count % 50,
            messages.join(",")
        );
        file.write_all(line.as_bytes()).unwrap();
        written += line.len();
        count += 1;
        ids.extend(id);
    }
    file.flush().unwrap();
    (path, count, ids)
}

async fn stored_sessions(redis: &RedisServer) -> Vec<String> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg("cli:*:meta")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

async fn turn_counts(redis: &RedisServer, metas: &[String]) -> Vec<u64> {
    let mut conn = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for meta in metas {
        pipe.cmd("LLEN").arg(meta.replace(":meta", ":turns"));
    }
    pipe.query_async(&mut conn).await.unwrap()
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn a_large_import_through_the_cli_completes_in_bounded_memory() {
    let megabytes: usize = std::env::var("SR_IMPORT_TEST_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_on(free_port());
    let server = Server::start(dir.path(), free_port(), &redis);
    let (path, count, ids) = write_file(dir.path(), megabytes << 20);
    let baseline = server.peak_rss_kb();
    let started = Instant::now();
    let output = cli(&server, &["import", path.to_str().unwrap()])
        .output()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains(&format!(
            "imported {count} sessions ({} messages)",
            count * 20
        )),
        "{}",
        stderr_of(&output)
    );
    let peak = server.peak_rss_kb();
    eprintln!(
        "imported {megabytes} MB ({count} sessions, {} messages) in {seconds:.1}s: {:.0} messages/s; server peak RSS {} MB (baseline {} MB)",
        count * 20,
        (count * 20) as f64 / seconds,
        peak / 1024,
        baseline / 1024
    );
    assert!(
        peak < baseline + 160 * 1024,
        "peak RSS {peak} kB vs baseline {baseline} kB"
    );
    let stored = stored_sessions(&redis).await;
    assert_eq!(stored.len(), count);
    assert!(turn_counts(&redis, &stored).await.iter().all(|n| *n == 20));
    assert!(
        !dir.path().join("sessions.ndjson.import-state").exists(),
        "finished: no resume file"
    );

    let out = dir.path().join("one.ndjson");
    let export = cli(
        &server,
        &[
            "export",
            "--session",
            &ids[0],
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(export.status.success(), "{}", stderr_of(&export));
    let line: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(line["messages"].as_array().unwrap().len(), 20);
    assert_eq!(
        line["messages"][0]["content"]
            .as_str()
            .unwrap()
            .split(' ')
            .next(),
        Some("0")
    );
}

#[tokio::test]
async fn a_server_killed_mid_import_then_a_rerun_leaves_every_session_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start_on(free_port());
    let port = free_port();
    let mut server = Server::start(dir.path(), port, &redis);
    let (path, count, ids) = write_file(dir.path(), 6 << 20);
    let file_len = std::fs::metadata(&path).unwrap().len();
    let args = [
        "import",
        path.to_str().unwrap(),
        "--batch-lines",
        "10",
        "--concurrency",
        "1",
        "--retries",
        "1",
    ];
    let mut first = cli(&server, &args).stderr(Stdio::piped()).spawn().unwrap();
    let state = dir.path().join("sessions.ndjson.import-state");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let offset = std::fs::read_to_string(&state)
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| v["offset"].as_u64())
            .unwrap_or(0);
        if offset >= file_len / 3 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress recorded");
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let interrupted = first.wait_with_output().unwrap();
    assert_eq!(
        interrupted.status.code(),
        Some(3),
        "{}",
        stderr_of(&interrupted)
    );
    let partial = stored_sessions(&redis).await.len();
    assert!(partial > 0 && partial < count, "{partial} of {count}");

    drop(server);
    let server = Server::start(dir.path(), port, &redis);
    let rerun = cli(&server, &args).output().unwrap();
    assert!(rerun.status.success(), "{}", stderr_of(&rerun));
    assert!(
        stderr_of(&rerun).contains("resuming at line"),
        "{}",
        stderr_of(&rerun)
    );
    let stored = stored_sessions(&redis).await;
    assert_eq!(stored.len(), count, "every session exactly once");
    assert!(
        turn_counts(&redis, &stored).await.iter().all(|n| *n == 20),
        "no partial or doubled history"
    );
    for id in &ids {
        assert!(
            stored
                .iter()
                .any(|k| k.starts_with("cli:{") && k.ends_with(&format!(":{id}}}:meta"))),
            "{id} missing"
        );
    }
    assert!(!state.exists());
}
