//! The `import` and `export` subcommands: clients of a running server, for migrations.
//!
//! ```text
//! session-relay import FILE [--mode create|append|replace] [--url URL] [--key KEY]
//!                           [--batch-lines N] [--batch-bytes N] [--concurrency N] [--retries N]
//! session-relay export (--session ID | --user ID) [--out FILE] [--url URL] [--key KEY]
//! ```
//!
//! URL and key default to `SESSION_RELAY_URL` / `SESSION_RELAY_API_KEY` (read by `config`).

mod batches;
mod client;
mod export;
mod import;
mod progress;
mod state;

use std::{collections::HashMap, process::ExitCode};

use crate::config::ClientSettings;

const USAGE: &str = "usage:
  session-relay import FILE [--mode create|append|replace] [--url URL] [--key KEY]
                            [--batch-lines N] [--batch-bytes N] [--concurrency N] [--retries N]
  session-relay export (--session ID | --user ID) [--out FILE] [--url URL] [--key KEY]
URL and key default to SESSION_RELAY_URL (else http://127.0.0.1:8080) and SESSION_RELAY_API_KEY.";

/// Runs a subcommand if `args` (without the program name) name one; `None` otherwise, and
/// the binary goes on to be the server.
pub async fn dispatch(args: &[String]) -> Option<ExitCode> {
    let command = args.first()?.as_str();
    if !matches!(command, "import" | "export") {
        return None;
    }
    let parsed = match Args::parse(&args[1..]) {
        Ok(parsed) => parsed,
        Err(err) => return Some(usage_error(&err)),
    };
    let env = ClientSettings::from_env();
    let endpoint = client::Endpoint {
        url: parsed
            .flag("url")
            .map(str::to_string)
            .or(env.url)
            .unwrap_or_else(|| "http://127.0.0.1:8080".into()),
        key: parsed
            .flag("key")
            .map(str::to_string)
            .or_else(|| env.api_key.map(|k| k.expose().to_string())),
    };
    let result = match command {
        "import" => import::Options::from_args(&parsed).map(|o| (Some(o), None)),
        _ => export::Options::from_args(&parsed).map(|o| (None, Some(o))),
    };
    Some(match result {
        Err(err) => usage_error(&err),
        Ok((Some(options), _)) => import::run(endpoint, options).await,
        Ok((_, Some(options))) => export::run(endpoint, options).await,
        Ok((None, None)) => usage_error("nothing to do"),
    })
}

fn usage_error(err: &str) -> ExitCode {
    eprintln!("session-relay: {err}\n{USAGE}");
    ExitCode::from(2)
}

/// `--name value`, `--name=value` and positional arguments.
pub(crate) struct Args {
    positional: Vec<String>,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut parsed = Args {
            positional: Vec::new(),
            flags: HashMap::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(name) = arg.strip_prefix("--") else {
                parsed.positional.push(arg.clone());
                continue;
            };
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_string(), value.to_string()),
                None => {
                    let value = iter.next().ok_or(format!("--{name} needs a value"))?;
                    (name.to_string(), value.clone())
                }
            };
            parsed.flags.insert(name, value);
        }
        Ok(parsed)
    }

    pub(crate) fn flag(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    pub(crate) fn number(&self, name: &str, default: u64) -> Result<u64, String> {
        match self.flag(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .map_err(|_| format!("--{name}: `{text}` is not a number")),
        }
    }

    /// Rejects flags the command does not know, so a typo is not silently ignored.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.flags.keys().find(|k| !known.contains(&k.as_str())) {
            Some(unknown) => Err(format!("unknown option --{unknown}")),
            None => Ok(()),
        }
    }

    pub(crate) fn positional(&self) -> &[String] {
        &self.positional
    }
}
