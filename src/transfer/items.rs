//! Import bodies cut into items: NDJSON split on newlines as the bytes arrive, or the JSON
//! form's `sessions` array. Either way an item is a slice of the body, not a copy.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::{domain::json, error::ApiError};

/// One item of an import body, before decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawItem {
    Json(Bytes),
    /// Longer than `import.max_session_bytes`: dropped as it streamed past, never buffered.
    TooLarge(usize),
}

/// Splits a byte stream on `\n` into items of at most `max_line` bytes. Blank lines are
/// skipped; an over-long line is skipped to its end and reported, without holding it.
pub struct Splitter {
    max_line: usize,
    partial: BytesMut,
    /// Bytes seen so far of a line that is already too long.
    dropping: Option<usize>,
}

impl Splitter {
    pub fn new(max_line: usize) -> Splitter {
        Splitter {
            max_line,
            partial: BytesMut::new(),
            dropping: None,
        }
    }

    /// Feeds one chunk of the body; complete lines are pushed to `out`.
    pub fn push(&mut self, mut chunk: Bytes, out: &mut Vec<RawItem>) {
        while let Some(pos) = chunk.iter().position(|&b| b == b'\n') {
            let mut line = chunk.split_to(pos + 1);
            line.truncate(pos);
            self.end_line(line, out);
        }
        if chunk.is_empty() {
            return;
        }
        match &mut self.dropping {
            Some(seen) => *seen += chunk.len(),
            None if self.partial.len() + chunk.len() > self.max_line => {
                self.dropping = Some(self.partial.len() + chunk.len());
                self.partial = BytesMut::new();
            }
            None => self.partial.extend_from_slice(&chunk),
        }
    }

    /// The body ended: a last line without a newline counts too.
    pub fn finish(&mut self, out: &mut Vec<RawItem>) {
        if self.dropping.is_some() || !self.partial.is_empty() {
            self.end_line(Bytes::new(), out);
        }
    }

    fn end_line(&mut self, tail: Bytes, out: &mut Vec<RawItem>) {
        if let Some(seen) = self.dropping.take() {
            out.push(RawItem::TooLarge(seen + tail.len()));
            return;
        }
        let line = if self.partial.is_empty() {
            tail
        } else {
            self.partial.extend_from_slice(&tail);
            self.partial.split().freeze()
        };
        if line.len() > self.max_line {
            out.push(RawItem::TooLarge(line.len()));
        } else if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(RawItem::Json(line));
        }
    }
}

/// The JSON form of an import. Items stay raw here: each is decoded as a
/// [`crate::domain::transfer::SessionRecord`] on its own, so one bad item fails alone.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonBody<'a> {
    #[serde(borrow)]
    #[schema(value_type = Vec<crate::domain::transfer::SessionRecord>)]
    sessions: Vec<&'a RawValue>,
}

/// The items of a JSON-form body (`{"sessions": [...]}`), each a slice of `body`.
pub fn json_items(body: &Bytes, max_item: usize) -> Result<Vec<RawItem>, ApiError> {
    let parsed: JsonBody = json::decode(body)?;
    let base = body.as_ptr() as usize;
    Ok(parsed
        .sessions
        .iter()
        .map(|raw| {
            let text = raw.get();
            if text.len() > max_item {
                return RawItem::TooLarge(text.len());
            }
            // A borrowed RawValue points into `body`: slice it rather than copy it.
            let start = (text.as_ptr() as usize).wrapping_sub(base);
            match body.get(start..start + text.len()) {
                Some(_) => RawItem::Json(body.slice(start..start + text.len())),
                None => RawItem::Json(Bytes::copy_from_slice(text.as_bytes())),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn split(chunks: &[&str], max: usize) -> Vec<RawItem> {
        let mut splitter = Splitter::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.push(Bytes::copy_from_slice(chunk.as_bytes()), &mut out);
        }
        splitter.finish(&mut out);
        out
    }

    fn json(s: &str) -> RawItem {
        RawItem::Json(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn lines_split_across_chunks_blank_lines_skipped() {
        let out = split(&["{\"a\"", ":1}\n\n  \n{\"b\":2}\r\n{\"c\"", ":3}"], 100);
        assert_eq!(
            out,
            vec![json("{\"a\":1}"), json("{\"b\":2}\r"), json("{\"c\":3}")]
        );
    }

    #[test]
    fn an_over_long_line_is_reported_and_the_next_one_survives() {
        let out = split(&["{\"x\":\"", "0123456789", "0123456789\"}\n{}\n"], 12);
        assert_eq!(out, vec![RawItem::TooLarge(28), json("{}")]);
        let out = split(&["0123456789012345\n{}"], 12);
        assert_eq!(out, vec![RawItem::TooLarge(16), json("{}")]);
    }

    #[test]
    fn json_form_items_are_slices_of_the_body() {
        let body = Bytes::from_static(br#"{"sessions": [{"a": 1}, {"b": [2, 3]}]}"#);
        let items = json_items(&body, 100).unwrap();
        assert_eq!(items, vec![json(r#"{"a": 1}"#), json(r#"{"b": [2, 3]}"#)]);
        let err = json_items(&Bytes::from_static(br#"{"sessions": [], "x": 1}"#), 100);
        assert!(matches!(err, Err(ApiError::InvalidRequest { .. })));
    }
}
