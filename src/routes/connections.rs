//! How much of the server one client can hold: open connections per client address are
//! bounded (`server.max_connections_per_peer`), and a request body must keep arriving
//! (`server.body_idle_timeout_ms`), so stalled uploads cannot pile up connections.

use std::{
    any::Any,
    collections::HashMap,
    net::IpAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use actix_web::{
    Error, HttpMessage,
    body::{EitherBody, MessageBody},
    dev::{Extensions, Payload, ServiceRequest, ServiceResponse},
    error::PayloadError,
    http::header,
    middleware::Next,
    rt::net::TcpStream,
    web,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::{error::ApiError, state::AppState};

/// Open connections by client address, shared by every worker.
pub struct PeerConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in the count, kept with the connection and given back when the
/// connection (and every request still holding its data) is dropped.
struct PeerSlot {
    peers: Arc<PeerConnections>,
    ip: IpAddr,
    /// The connection came in past the bound: its first request is refused.
    over: bool,
}

impl PeerConnections {
    /// `max` 0: no bound.
    pub fn new(max: usize) -> Arc<PeerConnections> {
        Arc::new(PeerConnections {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Called by the server for every accepted connection, before any request is read.
    pub fn on_connect(self: &Arc<Self>, conn: &dyn Any, data: &mut Extensions) {
        let Some(ip) = (conn.downcast_ref::<TcpStream>())
            .and_then(|tcp| tcp.peer_addr().ok())
            .map(|addr| addr.ip())
        else {
            return;
        };
        if self.max == 0 {
            return;
        }
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        let count = open.entry(ip).or_insert(0);
        *count += 1;
        data.insert(PeerSlot {
            peers: self.clone(),
            ip,
            over: *count > self.max,
        });
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.peers.open.lock()
            && let Some(count) = open.get_mut(&self.ip)
        {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Refuses a request on a connection past its address' bound (429, connection closed), and
/// gives every other request's body an idle deadline.
pub async fn bounded(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    if req.conn_data::<PeerSlot>().is_some_and(|slot| slot.over) {
        let response = actix_web::ResponseError::error_response(&ApiError::TooManyConnections);
        return Ok(req.into_response(response).map_into_right_body());
    }
    let idle = req
        .app_data::<web::Data<AppState>>()
        .map(|state| Duration::from_millis(state.settings.server.body_idle_timeout_ms));
    if let Some(idle) = idle
        && has_body(&req)
    {
        let payload = req.take_payload();
        req.set_payload(with_idle_deadline(payload, idle));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0")
}

/// The body, cut with a `TimedOut` error when no chunk arrives for `idle`.
fn with_idle_deadline(payload: Payload, idle: Duration) -> Payload {
    let chunks = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout(idle, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            Err(_) => Some((Err(stalled()), None)),
        }
    });
    let chunks: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(chunks);
    Payload::from(chunks)
}

fn stalled() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request body stalled",
    ))
}

/// Whether a body read failed because the client stopped sending.
pub fn is_stalled(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}
