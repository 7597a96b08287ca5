//! An import body as batches of items, read as it arrives: bounded by the import limits,
//! digested on the way for the `Idempotency-Key` fingerprint, never held whole (NDJSON).

use std::{cell::RefCell, collections::VecDeque, rc::Rc};

use actix_web::error::PayloadError;
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, stream::LocalBoxStream};
use sha2::{Digest, Sha256};

use super::items::{RawItem, Splitter, json_items};
use crate::{config::ImportSettings, error::ApiError, routes::extract::body_error};

/// A batch is cut at this many bytes of items or this many items, whichever comes first:
/// big enough that one Redis round trip carries many sessions, small enough that the
/// batches in flight stay a few megabytes.
const BATCH_BYTES: usize = 512 * 1024;
const BATCH_ITEMS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/x-ndjson`: streamed, one session per line.
    Ndjson,
    /// `{"sessions": [...]}`: read whole, under its own smaller limit.
    Json,
}

impl Format {
    /// NDJSON by its media type (or the JSON Lines names); anything else is the JSON form.
    pub fn of(content_type: &str) -> Format {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        match essence.to_ascii_lowercase().as_str() {
            "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/jsonlines" => Format::Ndjson,
            _ => Format::Json,
        }
    }
}

pub type Chunks = LocalBoxStream<'static, Result<Bytes, PayloadError>>;

pub struct Source {
    chunks: Chunks,
    format: Format,
    limits: ImportSettings,
    /// Shared with whoever needs the digest once the body has been read.
    digest: Rc<RefCell<Sha256>>,
    read: u64,
    splitter: Splitter,
    ready: VecDeque<RawItem>,
    ready_bytes: usize,
    items: usize,
    ended: bool,
}

fn item_len(item: &RawItem) -> usize {
    match item {
        RawItem::Json(bytes) => bytes.len(),
        RawItem::TooLarge(_) => 0,
    }
}

impl Source {
    /// `salt` goes into the digest first: the same body under another mode is another request.
    pub fn new(chunks: Chunks, format: Format, limits: &ImportSettings, salt: &str) -> Source {
        let digest = Sha256::new()
            .chain_update(salt.as_bytes())
            .chain_update([0u8]);
        Source {
            chunks,
            format,
            splitter: Splitter::new(limits.max_session_bytes),
            limits: limits.clone(),
            digest: Rc::new(RefCell::new(digest)),
            read: 0,
            ready: VecDeque::new(),
            ready_bytes: 0,
            items: 0,
            ended: false,
        }
    }

    pub fn digest(&self) -> Rc<RefCell<Sha256>> {
        self.digest.clone()
    }

    fn limit(&self) -> u64 {
        match self.format {
            Format::Ndjson => self.limits.max_body_bytes,
            Format::Json => self.limits.max_json_body_bytes as u64,
        }
    }

    /// The next chunk of the body, counted against the limit and digested.
    async fn chunk(&mut self) -> Result<Option<Bytes>, ApiError> {
        match self.chunks.next().await {
            None => Ok(None),
            Some(Err(PayloadError::Overflow)) => Err(self.too_large()),
            Some(Err(err)) => Err(body_error(Some(&err), 0)),
            Some(Ok(chunk)) => {
                self.read += chunk.len() as u64;
                if self.read > self.limit() {
                    return Err(self.too_large());
                }
                self.digest.borrow_mut().update(&chunk);
                Ok(Some(chunk))
            }
        }
    }

    fn too_large(&self) -> ApiError {
        ApiError::PayloadTooLarge {
            limit_bytes: usize::try_from(self.limit()).unwrap_or(usize::MAX),
        }
    }

    /// Reads the rest of the body for its digest only (a replayed request).
    pub async fn drain(&mut self) -> Result<(), ApiError> {
        while self.chunk().await?.is_some() {}
        self.ended = true;
        Ok(())
    }

    /// The next batch of items; `None` once the body is consumed.
    pub async fn next_batch(&mut self) -> Option<Result<Vec<RawItem>, ApiError>> {
        loop {
            let full = self.ready_bytes >= BATCH_BYTES || self.ready.len() >= BATCH_ITEMS;
            if full || (self.ended && !self.ready.is_empty()) {
                return Some(Ok(self.take_batch()));
            }
            if self.ended {
                return None;
            }
            if let Err(err) = self.fill().await {
                self.ended = true;
                self.ready.clear();
                return Some(Err(err));
            }
        }
    }

    fn take_batch(&mut self) -> Vec<RawItem> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some(item) = self.ready.front() {
            if !batch.is_empty() && (bytes >= BATCH_BYTES || batch.len() >= BATCH_ITEMS) {
                break;
            }
            bytes += item_len(item);
            batch.extend(self.ready.pop_front());
        }
        self.ready_bytes -= bytes;
        batch
    }

    async fn fill(&mut self) -> Result<(), ApiError> {
        let mut items = Vec::new();
        match self.format {
            Format::Ndjson => match self.chunk().await? {
                Some(chunk) => self.splitter.push(chunk, &mut items),
                None => {
                    self.splitter.finish(&mut items);
                    self.ended = true;
                }
            },
            Format::Json => {
                let mut body = BytesMut::new();
                while let Some(chunk) = self.chunk().await? {
                    body.extend_from_slice(&chunk);
                }
                items = json_items(&body.freeze(), self.limits.max_session_bytes)?;
                self.ended = true;
            }
        }
        self.items += items.len();
        if self.items > self.limits.max_sessions_per_request {
            return Err(ApiError::invalid(
                "sessions",
                format!(
                    "at most {} sessions per request (import.max_sessions_per_request): send the rest in another request",
                    self.limits.max_sessions_per_request
                ),
            ));
        }
        self.ready_bytes += items.iter().map(item_len).sum::<usize>();
        self.ready.extend(items);
        Ok(())
    }

    /// The batches as a stream, numbered by the index of their first item.
    pub fn into_stream(self) -> impl Stream<Item = Result<(u64, Vec<RawItem>), ApiError>> {
        futures_util::stream::unfold((self, 0u64), |(mut source, first)| async move {
            let batch = source.next_batch().await?;
            let next = first + batch.as_ref().map_or(0, |b| b.len() as u64);
            Some((batch.map(|b| (first, b)), (source, next)))
        })
    }
}
