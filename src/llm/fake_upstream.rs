#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub(crate) struct Received {
    pub path: String,
    /// Header names lowercased.
    pub headers: HashMap<String, String>,
    pub body: serde_json::Value,
}

pub(crate) struct FakeUpstream {
    pub base_url: String,
    received: oneshot::Receiver<Received>,
}

impl FakeUpstream {
    pub(crate) async fn received(self) -> Received {
        self.received.await.unwrap()
    }
}

/// reqwest is built without a default TLS provider and refuses to build a client,
/// even a plain-HTTP one, until a provider is installed.
pub(crate) fn test_client() -> super::HttpClient {
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
    std::sync::Arc::new(crate::per_thread::PerThread::new(reqwest::Client::new))
}

/// Serves one request with `response`, then closes the connection.
pub(crate) async fn serve_once(response: String) -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}", listener.local_addr().unwrap());
    let (sender, received) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let request = read_request(&mut socket).await;
        let _ = sender.send(request);
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
    });
    FakeUpstream { base_url, received }
}

pub(crate) fn json_response(status: u16, extra_headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\n{extra_headers}\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// No content length: the body runs until the connection closes, as a cut stream would.
pub(crate) fn sse_response(body: &str) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}")
}

/// A port nothing listens on.
pub(crate) async fn refused_base_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Received {
    let mut bytes = Vec::new();
    let head_end = loop {
        if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
            break end + 4;
        }
        read_some(socket, &mut bytes).await;
    };
    let head = String::from_utf8(bytes[..head_end].to_vec()).unwrap();
    let mut lines = head.lines();
    let path = lines.next().unwrap().split(' ').nth(1).unwrap().to_owned();
    let headers: HashMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers["content-length"].parse().unwrap();
    while bytes.len() < head_end + length {
        read_some(socket, &mut bytes).await;
    }
    let body = serde_json::from_slice(&bytes[head_end..head_end + length]).unwrap();
    Received {
        path,
        headers,
        body,
    }
}

async fn read_some(socket: &mut tokio::net::TcpStream, bytes: &mut Vec<u8>) {
    let mut buffer = [0u8; 4096];
    let read = socket.read(&mut buffer).await.unwrap();
    assert!(read > 0, "client closed the connection early");
    bytes.extend_from_slice(&buffer[..read]);
}
