//! Private `redis-server` processes for the tests: a free port, no persistence (unless a
//! test asks for an append-only file, to kill and restart the server), and a
//! guard so that the server dies with the test process even if it is killed.

use std::{
    io::Write,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// One server shared by every test of this binary; tests keep apart by key prefix.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(|| RedisServer::start_on(free_port()))
    }

    /// A server of one's own, for tests that stop and restart it.
    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::start_with(port, "")
    }

    /// Like [`RedisServer::start_on`], with extra `redis-server` arguments
    /// (e.g. `--enable-debug-command local` for `DEBUG SLEEP`).
    pub fn start_with(port: u16, extra_args: &str) -> RedisServer {
        RedisServer::run(
            port,
            &format!(
                "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
                 --protected-mode yes --loglevel warning {extra_args}"
            ),
        )
    }

    /// A Redis Sentinel on `port`, configured by the (writable) file `config`.
    pub fn start_sentinel(port: u16, config: &std::path::Path) -> RedisServer {
        let config = config.display();
        RedisServer::run(
            port,
            &format!(
                "redis-server '{config}' --sentinel --port {port} --bind 127.0.0.1 \
                 --protected-mode yes --loglevel warning"
            ),
        )
    }

    fn run(port: u16, command_line: &str) -> RedisServer {
        // The shell reads stdin until the test process (the write end's owner) is gone,
        // then kills redis-server: no orphan survives a crashed or killed test run.
        let script = format!("{command_line} & pid=$!; cat >/dev/null; kill $pid");
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (see README)");
        wait_until_listening(port);
        RedisServer {
            port,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("redis url")
    }

    /// Blocks the whole server for `seconds` with `DEBUG SLEEP` (it must have been started
    /// with `--enable-debug-command local`), from a connection of its own. Returns once the
    /// sleep is under way; the task ends when it does.
    pub async fn stall(&self, seconds: f64) -> tokio::task::JoinHandle<redis::RedisResult<()>> {
        let client = self.client();
        let sleeper = tokio::spawn(async move {
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(Duration::from_secs(30)));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(seconds)
                .query_async::<()>(&mut conn)
                .await
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!sleeper.is_finished(), "DEBUG SLEEP is running");
        sleeper
    }

    /// A server that keeps its data in `dir` (an append-only file, written through on every
    /// write), so that one killed and started again on the same port and directory comes
    /// back with its keys, as after a crash.
    pub fn start_durable(port: u16, dir: &std::path::Path) -> RedisServer {
        let dir = dir.to_str().expect("utf-8 temp dir");
        RedisServer::start_with(
            port,
            &format!("--appendonly yes --appendfsync always --dir '{dir}'"),
        )
    }

    /// Kills redis-server with SIGKILL (no shutdown, no last save) and waits until the port
    /// refuses connections.
    pub fn kill9(&mut self) {
        let mut conn = self.client().get_connection().expect("redis connection");
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .expect("INFO server");
        let pid = info
            .lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .expect("process_id in INFO")
            .trim()
            .to_string();
        let killed = Command::new("kill").args(["-9", &pid]).status();
        assert!(killed.is_ok_and(|s| s.success()), "kill -9 {pid}");
        self.stop();
    }

    /// Stops the server and waits until the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.flush();
            }
            drop(child.stdin.take());
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server did not start on port {port}");
}
