//! `session-relay export (--session ID | --user ID) [--out FILE]`: streams the server's
//! NDJSON export to a file (written beside and renamed at the end, so a cut-off export
//! never looks complete) or to stdout.

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::ExitCode,
};

use super::{
    client::Endpoint,
    progress::{Counts, Progress},
};
use crate::config::args::ExportArgs;

pub struct Options {
    /// `["sessions", id]` or `["users", id]`.
    what: [String; 2],
    out: Option<PathBuf>,
}

impl From<ExportArgs> for Options {
    fn from(args: ExportArgs) -> Options {
        // clap lets exactly one of the two through.
        let what = match (args.session, args.user) {
            (Some(id), _) => ["sessions".to_string(), id],
            (None, user) => ["users".to_string(), user.unwrap_or_default()],
        };
        Options {
            what,
            out: args.out,
        }
    }
}

pub async fn run(endpoint: Endpoint, options: Options) -> ExitCode {
    match export(&endpoint, &options).await {
        Ok(sessions) => {
            let to = options
                .out
                .as_ref()
                .map_or("stdout".to_string(), |p| p.display().to_string());
            eprintln!("exported {sessions} sessions to {to}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("session-relay export: {err}");
            ExitCode::FAILURE
        }
    }
}

fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

async fn export(endpoint: &Endpoint, options: &Options) -> Result<u64, String> {
    let mut url = reqwest::Url::parse(&endpoint.url).map_err(|e| format!("--url: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| "--url cannot be a base".to_string())?
        .pop_if_empty()
        .extend(["v1", &options.what[0], &options.what[1], "export"]);
    let http = endpoint.http()?;
    let mut response = endpoint
        .authorize(http.get(url))
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        return Err(format!("HTTP {status}: {body}"));
    }
    let mut out: Box<dyn Write> = match &options.out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(partial(path)).map_err(|e| format!("{}: {e}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut bar = Progress::new("export", 0, 0);
    let (mut bytes, mut sessions, mut last) = (0u64, 0u64, b'\n');
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("export cut short: {e}"))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write: {e}"))?;
        bytes += chunk.len() as u64;
        sessions += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        last = chunk.last().copied().unwrap_or(last);
        let counts = Counts {
            bytes,
            sessions,
            messages: 0,
            run_messages: 0,
        };
        bar.update(&counts);
    }
    bar.finish();
    out.flush().map_err(|e| format!("cannot write: {e}"))?;
    drop(out);
    if last != b'\n' {
        return Err("export cut short: the last line is incomplete".into());
    }
    if let Some(path) = &options.out {
        std::fs::rename(partial(path), path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(sessions)
}
