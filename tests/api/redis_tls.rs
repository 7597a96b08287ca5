//! `rediss://`: the service binary talks to a `redis-server` that accepts TLS only, with a
//! certificate from a test CA that the process trusts through `SSL_CERT_FILE`.

use std::{path::Path, process::Command};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    helpers::spawn_binary,
    redis_server::{RedisServer, free_port},
};

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
    let service = spawn_binary(&[
        ("REDIS_URL", format!("rediss://127.0.0.1:{tls_port}")),
        ("SSL_CERT_FILE", path("ca.pem")),
    ])
    .await;
    let app = &service.app;
    let ready = app.call(Method::GET, "/readyz", None).await;
    assert_eq!(ready.body, json!({"status": "ready", "store": "redis"}));
    let created = app
        .create_session(json!({"system_prompt": "over TLS"}))
        .await;
    let id = created["session_id"].as_str().unwrap();
    let sent = app
        .call(
            Method::POST,
            &format!("/v1/sessions/{id}/messages"),
            Some(json!({"content": "hello"})),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.body);
}
