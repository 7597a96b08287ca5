//! `session-relay import FILE`: sends an NDJSON file in batches, a few in flight, records
//! each acknowledged batch in the resume file, and picks up there when run again.
//!
//! Exit status: 0 every line imported (or already there); 1 finished, some lines refused
//! (each printed with its line number); 2 usage; 3 stopped early (run the same command
//! again to resume).

use std::{path::PathBuf, process::ExitCode, time::Instant};

use futures_util::{StreamExt, stream::FuturesOrdered};
use serde_json::Value;

use crate::config::args::ImportArgs;

use super::{
    batches::{Batch, Reader},
    client::{self, Attempt, Endpoint},
    progress::{Counts, Progress as Bar},
    state::{self, Progress},
};

pub struct Options {
    file: PathBuf,
    mode: String,
    batch_lines: usize,
    batch_bytes: usize,
    concurrency: usize,
    retries: u32,
}

impl From<ImportArgs> for Options {
    fn from(args: ImportArgs) -> Options {
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Options {
            file: args.file,
            mode: args.mode.as_str().to_string(),
            batch_lines: size(args.batch_lines),
            batch_bytes: size(args.batch_bytes),
            concurrency: size(args.concurrency),
            retries: args.retries,
        }
    }
}

pub async fn run(endpoint: Endpoint, options: Options) -> ExitCode {
    match import(&endpoint, &options).await {
        Ok(code) => code,
        Err(err) => {
            eprintln!("session-relay import: {err}");
            eprintln!("run the same command again to resume where the server last acknowledged");
            ExitCode::from(3)
        }
    }
}

async fn import(endpoint: &Endpoint, options: &Options) -> Result<ExitCode, String> {
    let file = std::fs::File::open(&options.file)
        .map_err(|e| format!("cannot open {}: {e}", options.file.display()))?;
    let file_len = file.metadata().map_err(|e| e.to_string())?.len();
    let state_path = state::path_for(&options.file);
    let fresh = Progress {
        file_len,
        mode: options.mode.clone(),
        url: endpoint.url.clone(),
        ..Progress::default()
    };
    let mut done = state::load(&state_path, &fresh).unwrap_or(fresh);
    if done.offset > 0 {
        eprintln!(
            "resuming at line {} ({} of {} bytes acknowledged earlier)",
            done.line + 1,
            done.offset,
            file_len
        );
    }
    let limits = (options.batch_lines, options.batch_bytes);
    let mut reader = Reader::open(file, (done.offset, done.line), limits, &options.mode)
        .map_err(|e| format!("cannot read {}: {e}", options.file.display()))?;
    let http = endpoint.http()?;
    let mut bar = Bar::new("import", file_len, done.offset);
    let (started, messages_before) = (Instant::now(), done.messages);
    let mut inflight = FuturesOrdered::new();
    let mut exhausted = false;
    loop {
        while !exhausted && inflight.len() < options.concurrency {
            match reader
                .next_batch()
                .map_err(|e| format!("cannot read: {e}"))?
            {
                Some(batch) => inflight.push_back(send(&http, endpoint, options, batch)),
                None => exhausted = true,
            }
        }
        let Some(answer) = inflight.next().await else {
            break;
        };
        let (batch, report) = answer?;
        tally(&mut done, &batch, &report, options, &bar);
        state::save(&state_path, &done).map_err(|e| format!("cannot record progress: {e}"))?;
        bar.update(&Counts {
            bytes: done.offset,
            sessions: done.imported,
            messages: done.messages,
            run_messages: done.messages - messages_before,
        });
    }
    bar.finish();
    state::remove(&state_path);
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "imported {} sessions ({} messages), {} already present, {} failed, in {seconds:.1}s ({:.0} messages/s)",
        done.imported,
        done.messages,
        done.existing,
        done.failed,
        (done.messages - messages_before) as f64 / seconds.max(1e-3),
    );
    Ok(if done.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One batch, retried with backoff while a retry can help. The `Idempotency-Key` makes a
/// re-sent batch that the server did finish answer from its record.
async fn send(
    http: &reqwest::Client,
    endpoint: &Endpoint,
    options: &Options,
    batch: Batch,
) -> Result<(Batch, Value), String> {
    if batch.body.is_empty() {
        return Ok((batch, Value::Null));
    }
    let url = endpoint.at(&format!("/v1/sessions/import?mode={}", options.mode));
    let mut retry = 0;
    loop {
        let request = http
            .post(&url)
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", &batch.idempotency_key)
            .body(batch.body.clone());
        match client::attempt(endpoint.authorize(request)).await {
            Attempt::Done(body) => {
                let report = serde_json::from_slice(&body)
                    .map_err(|e| format!("unreadable answer from the server: {e}"))?;
                return Ok((batch, report));
            }
            Attempt::Retry(_, hint) if retry < options.retries => {
                tokio::time::sleep(client::backoff(retry, hint)).await;
                retry += 1;
            }
            Attempt::Retry(why, _) => {
                return Err(format!("gave up after {retry} retries: {why}"));
            }
            Attempt::Fatal(why) => return Err(why),
        }
    }
}

fn tally(done: &mut Progress, batch: &Batch, report: &Value, options: &Options, bar: &Bar) {
    done.offset = batch.end;
    done.line = batch.end_line;
    let results = report["results"].as_array().map_or(&[][..], Vec::as_slice);
    for result in results {
        let line = result["index"]
            .as_u64()
            .and_then(|i| batch.lines.get(usize::try_from(i).ok()?))
            .copied()
            .unwrap_or(0);
        match (result["status"].as_str(), result["error"].as_str()) {
            (Some("created" | "appended" | "replaced"), _) => {
                done.imported += 1;
                done.messages += result["messages"].as_u64().unwrap_or(0);
            }
            // An earlier, interrupted run got this one in: not a failure.
            (_, Some("session_exists")) if options.mode == "create" => done.existing += 1,
            (_, error) => {
                done.failed += 1;
                let message = result["message"].as_str().unwrap_or("");
                bar.println(&format!(
                    "line {line}: {}: {message}",
                    error.unwrap_or("error")
                ));
            }
        }
    }
}
