//! An NDJSON file read as batches of lines, each sent as one request.
//!
//! In create mode a line without a `session_id` gets one derived from its byte offset and
//! its content. Together with the resume file and a per-batch `Idempotency-Key`, that makes
//! re-sending any batch harmless: a session the server already holds answers
//! `session_exists` instead of being imported twice.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
};

use bytes::Bytes;
use serde::{Deserialize, de::IgnoredAny};
use sha2::{Digest, Sha256};

pub struct Batch {
    pub body: Bytes,
    /// Byte offset just past the batch, and the number of lines up to there.
    pub end: u64,
    pub end_line: u64,
    /// The file's line number (from 1) of each item, in order.
    pub lines: Vec<u64>,
    pub idempotency_key: String,
}

pub struct Reader {
    file: BufReader<File>,
    offset: u64,
    line: u64,
    max_lines: usize,
    max_bytes: usize,
    mode: String,
    assign_ids: bool,
}

impl Reader {
    pub fn open(
        file: File,
        (offset, line): (u64, u64),
        (max_lines, max_bytes): (usize, usize),
        mode: &str,
    ) -> std::io::Result<Reader> {
        let mut file = BufReader::with_capacity(1 << 20, file);
        file.seek(SeekFrom::Start(offset))?;
        Ok(Reader {
            file,
            offset,
            line,
            max_lines,
            max_bytes,
            mode: mode.to_string(),
            assign_ids: mode == "create",
        })
    }

    /// The next batch; `None` at the end of the file. A batch of blank lines only has an
    /// empty body: there is nothing to send, only progress to record.
    pub fn next_batch(&mut self) -> std::io::Result<Option<Batch>> {
        let start = self.offset;
        let (mut body, mut lines, mut buf) = (Vec::new(), Vec::new(), Vec::new());
        while lines.len() < self.max_lines && body.len() < self.max_bytes {
            buf.clear();
            let read = self.file.read_until(b'\n', &mut buf)?;
            if read == 0 {
                break;
            }
            let line_offset = self.offset;
            self.offset += read as u64;
            self.line += 1;
            let content = trim_end_of_line(&buf);
            if content.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if self.assign_ids {
                with_session_id(content, line_offset, &mut body);
            } else {
                body.extend_from_slice(content);
            }
            body.push(b'\n');
            lines.push(self.line);
        }
        if self.offset == start {
            return Ok(None);
        }
        let digest = Sha256::new()
            .chain_update(self.mode.as_bytes())
            .chain_update(start.to_le_bytes())
            .chain_update(&body)
            .finalize();
        Ok(Some(Batch {
            body: body.into(),
            end: self.offset,
            end_line: self.line,
            lines,
            idempotency_key: format!("import-{}", &hex::encode(digest)[..40]),
        }))
    }
}

fn trim_end_of_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    session_id: Option<IgnoredAny>,
}

/// Copies `line`, adding a stable `session_id` when it is an object without one. Anything
/// that does not decode is left alone: the server reports it with its field.
fn with_session_id(line: &[u8], offset: u64, out: &mut Vec<u8>) {
    let Some(open) = line.iter().position(|b| !b.is_ascii_whitespace()) else {
        return out.extend_from_slice(line);
    };
    let is_object = line[open] == b'{';
    let has_id = serde_json::from_slice::<Probe>(line).map_or(true, |p| p.session_id.is_some());
    if !is_object || has_id {
        return out.extend_from_slice(line);
    }
    let digest = Sha256::new()
        .chain_update(b"session-relay import\0")
        .chain_update(offset.to_le_bytes())
        .chain_update(line)
        .finalize();
    let rest = &line[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    out.extend_from_slice(b"{\"session_id\":\"");
    out.extend_from_slice(hex::encode(&digest[..16]).as_bytes());
    out.extend_from_slice(if empty { b"\"" } else { b"\"," });
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn assigned(line: &str, offset: u64) -> String {
        let mut out = Vec::new();
        with_session_id(line.as_bytes(), offset, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ids_are_added_only_where_missing_and_are_stable() {
        let a = assigned(r#"{"messages": []}"#, 10);
        assert!(
            a.starts_with(r#"{"session_id":""#) && a.ends_with(r#"","messages": []}"#),
            "{a}"
        );
        assert_eq!(a, assigned(r#"{"messages": []}"#, 10));
        assert_ne!(a, assigned(r#"{"messages": []}"#, 11));
        let empty = assigned("{}", 0);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&empty).unwrap()["session_id"]
                .as_str()
                .unwrap()
                .len(),
            32
        );
        let given = r#"{"session_id": "s1", "metadata": {"session_id": 1}}"#;
        assert_eq!(assigned(given, 0), given);
        let nested_only = assigned(r#"{"metadata": {"session_id": "x"}}"#, 0);
        assert!(
            nested_only.starts_with(r#"{"session_id":"#),
            "{nested_only}"
        );
        assert_eq!(assigned("not json", 0), "not json");
    }
}
