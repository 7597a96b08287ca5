//! `rediss://`: the service binary talks to a `redis-server` that accepts TLS only, with a
//! certificate from a test CA that the process trusts through `SSL_CERT_FILE`.

use std::{path::Path, process::Command, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::redis_server::{RedisServer, free_port};

/// A CA, and a server certificate it signed for 127.0.0.1 (what rustls checks).
fn make_certificates(dir: &Path) {
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=session-relay test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl must be installed");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }
}

#[tokio::test]
async fn the_service_runs_against_redis_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let path = |name: &str| dir.path().join(name).display().to_string();
    let tls_port = free_port();
    // The plain port is only for the helper's readiness check; the service gets TLS.
    let _redis = RedisServer::start_with(
        free_port(),
        &format!(
            "--tls-port {tls_port} --tls-cert-file {} --tls-key-file {} --tls-ca-cert-file {} --tls-auth-clients no",
            path("server.pem"),
            path("server.key"),
            path("ca.pem"),
        ),
    );
    let port = free_port();
    let mut service = tokio::process::Command::new(env!("CARGO_BIN_EXE_session-relay"))
        .env_clear()
        .env("SESSION_RELAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("REDIS_URL", format!("rediss://127.0.0.1:{tls_port}"))
        .env("SSL_CERT_FILE", path("ca.pem"))
        .env("SESSION_RELAY_LOG_LEVEL", "error")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the session-relay binary runs");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(reply) = http.get(format!("{base}/readyz")).send().await {
            ready = Some(reply.json::<Value>().await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, Some(json!({"status": "ready", "store": "redis"})));
    let created = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"system_prompt": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = http
        .post(format!("{base}/v1/sessions/{id}/messages"))
        .json(&json!({"content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), StatusCode::OK);
    service.kill().await.unwrap();
}
