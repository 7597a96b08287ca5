//! The child processes of a run — a private `redis-server` (or a local Redis Cluster of
//! them) and the service binary — and what `/proc` says about their memory.
//!
//! Each child runs under a small `sh` wrapper that kills it as soon as our end of its stdin
//! closes: when the guard drops, and also when this process dies without unwinding (a
//! killed benchmark must not leave a server holding a port).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The service binary of the profile being run: release under `cargo bench`, debug under
/// `cargo test`.
pub const BIN: &str = env!("CARGO_BIN_EXE_session-relay");

pub struct Process {
    wrapper: Child,
    /// The program's own pid (not the wrapper's), for `/proc/<pid>/status`.
    pub pid: u32,
}

impl Process {
    /// `stdout_to_stderr`: keep what the program prints (the service logs only errors);
    /// otherwise it goes to /dev/null.
    fn spawn(argv: &[&str], env: &[(&str, String)], stdout_to_stderr: bool) -> Process {
        let redirect = if stdout_to_stderr {
            ">&2"
        } else {
            ">/dev/null"
        };
        let script =
            format!(r#""$@" {redirect} & echo $!; cat >/dev/null; kill -9 $! 2>/dev/null; wait"#);
        let mut command = Command::new("sh");
        command.args(["-c", &script, "sh"]).args(argv).env_clear();
        // Only what we set: an API key or config file in the caller's shell must not leak in.
        if let Ok(path) = std::env::var("PATH") {
            command.env("PATH", path);
        }
        let mut wrapper = command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(wrapper.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().parse().unwrap();
        Process { wrapper, pid }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        drop(self.wrapper.stdin.take());
        let _ = self.wrapper.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub struct Redis {
    pub port: u16,
    _process: Process,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(free_port(), &[])
    }

    /// A server on `port`, with more `redis-server` arguments.
    fn start_with(port: u16, extra: &[&str]) -> Redis {
        let port_arg = port.to_string();
        let mut argv = vec![
            "redis-server",
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ];
        argv.extend(extra);
        let process = Process::spawn(&argv, &[], false);
        wait_until("redis-server", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Redis {
            port,
            _process: process,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }

    fn info(&self, section: &str) -> String {
        redis::cmd("INFO")
            .arg(section)
            .query(&mut self.connection())
            .unwrap()
    }

    /// A cluster node that sees the cluster ok and, if a replica, has its primary's data.
    fn in_cluster(&self) -> bool {
        let state: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query(&mut self.connection())
            .unwrap();
        let replication = self.info("replication");
        state.contains("cluster_state:ok")
            && (replication.contains("role:master")
                || replication.contains("master_link_status:up"))
    }

    /// `used_memory` from `INFO memory`: bytes the allocator holds for Redis' data.
    pub fn used_memory(&self) -> u64 {
        self.info("memory")
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// `MEMORY USAGE … SAMPLES 0` (every element counted) summed over the keys whose name
    /// holds `session_id`: a session's keys carry its id as their hash tag, and this way
    /// the benchmark needs to know nothing more of the key layout. (`KEYS` walks the whole
    /// keyspace: fine here, it runs before the load, over a few hundred sessions.)
    pub fn session_bytes(&self, session_id: &str) -> u64 {
        let mut conn = self.connection();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("*{session_id}*"))
            .query(&mut conn)
            .unwrap();
        keys.iter()
            .map(|key| {
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query::<Option<u64>>(&mut conn)
                    .unwrap()
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// A local Redis Cluster: three primaries with a replica each, joined by `redis-cli`, as
/// an operator runs one (on one machine here, sharing its cores).
pub struct Cluster {
    nodes: Vec<Redis>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().display().to_string();
        let nodes: Vec<Redis> = (0..6)
            .map(|_| {
                let (port, bus) = (free_port(), free_port().to_string());
                let conf = format!("nodes-{port}.conf");
                let args = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-config-file",
                    &conf,
                    "--dir",
                    &path,
                    "--repl-diskless-sync-delay",
                    "0",
                ];
                Redis::start_with(port, &args)
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(created.success(), "redis-cli --cluster create failed");
        let cluster = Cluster { nodes, _dir: dir };
        wait_until("the redis cluster", || {
            cluster.nodes.iter().all(Redis::in_cluster)
        });
        cluster
    }

    /// Every node's URL, comma-separated: the service's `REDIS_URL` in cluster mode.
    pub fn seeds(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(Redis::url).collect();
        urls.join(",")
    }

    /// `used_memory` summed over the primaries.
    pub fn used_memory(&self) -> u64 {
        (self.nodes.iter())
            .filter(|n| n.info("replication").contains("role:master"))
            .map(Redis::used_memory)
            .sum()
    }
}

/// The service binary, configured as an operator would: environment variables plus a
/// TOML file named by `SESSION_RELAY_CONFIG`.
pub struct Service {
    pub port: u16,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Service {
    pub fn start(redis_url: &str, toml: &str, env: &[(&str, String)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bench.toml");
        std::fs::write(&config, toml).unwrap();
        let port = free_port();
        let mut all = vec![
            ("SESSION_RELAY_CONFIG", config.display().to_string()),
            ("SESSION_RELAY_LISTEN", format!("127.0.0.1:{port}")),
            ("REDIS_URL", redis_url.to_string()),
            ("SESSION_RELAY_KEY_PREFIX", "bench".to_string()),
            ("SESSION_RELAY_LOG_LEVEL", "error".to_string()),
        ];
        all.extend(env.iter().cloned());
        let process = Process::spawn(&[BIN], &all, true);
        let pid = process.pid;
        wait_until("the service", || {
            let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
            assert!(
                alive,
                "the service exited at startup (its errors are above)"
            );
            readyz(port)
        });
        Service {
            port,
            process,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid
    }
}

/// `/readyz` answers 200 once Redis is reachable and the key layout migrated.
fn readyz(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reply = String::new();
    stream
        .write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_ok()
        && stream.read_to_string(&mut reply).is_ok()
        && reply.split_whitespace().nth(1) == Some("200")
}

/// A `/proc/<pid>/status` field in MB: `VmRSS` (resident now) or `VmHWM` (peak resident).
pub fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb / 1024.0
}

/// Samples a process' `VmRSS` every 100 ms on a thread of its own and keeps the highest.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<f64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut highest: f64 = 0.0;
            while !flag.load(Ordering::Relaxed) {
                highest = highest.max(status_mb(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(100));
            }
            highest.max(status_mb(pid, "VmRSS"))
        });
        RssSampler { stop, thread }
    }

    pub fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}
