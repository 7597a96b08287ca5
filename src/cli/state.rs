//! The resume file of an import: `FILE.import-state`, next to the input, recording how far
//! the server has acknowledged. It exists while an import is unfinished, and only then.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The input this was recorded for: a file of another size starts over.
    pub file_len: u64,
    pub mode: String,
    pub url: String,
    /// Byte offset just past the last acknowledged batch, and lines before it.
    pub offset: u64,
    pub line: u64,
    pub imported: u64,
    /// Create mode: sessions already there (imported by an earlier, interrupted run).
    pub existing: u64,
    pub failed: u64,
    pub messages: u64,
}

pub fn path_for(input: &Path) -> PathBuf {
    let mut name = input.as_os_str().to_owned();
    name.push(".import-state");
    PathBuf::from(name)
}

/// The recorded progress, if it is for this very import.
pub fn load(path: &Path, fresh: &Progress) -> Option<Progress> {
    let text = std::fs::read_to_string(path).ok()?;
    let saved: Progress = serde_json::from_str(&text).ok()?;
    let same =
        saved.file_len == fresh.file_len && saved.mode == fresh.mode && saved.url == fresh.url;
    (same && saved.offset <= saved.file_len).then_some(saved)
}

/// Written beside and renamed over, so a crash never leaves half a file.
pub fn save(path: &Path, progress: &Progress) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let json = serde_json::to_vec(progress).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}
