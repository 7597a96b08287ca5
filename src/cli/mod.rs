//! What the binary runs: the server (`serve`, the default), `check-config`, and the
//! `import` / `export` clients of a running server. The flags are parsed by
//! [`crate::config::args`]; `main.rs` only hands them over.
//!
//! ```text
//! session-relay [serve] [--config PATH]
//! session-relay check-config [--config PATH]
//! session-relay import FILE [--mode create|append|replace] [--url URL] [--key KEY]
//!                           [--batch-lines N] [--batch-bytes N] [--concurrency N] [--retries N]
//! session-relay export (--session ID | --user ID) [--out FILE] [--url URL] [--key KEY]
//! ```

mod batches;
mod check;
mod client;
mod export;
mod import;
mod progress;
mod serve;
mod state;

use std::process::ExitCode;

use crate::config::args::{Cli, Command, EndpointArgs};

/// Runs the parsed command line to its exit status.
pub async fn run(cli: Cli) -> ExitCode {
    match cli.into_command() {
        Command::Serve(args) => serve::run(&args).await,
        Command::CheckConfig(args) => check::run(&args),
        Command::Import(args) => {
            let endpoint = endpoint(&args.endpoint);
            import::run(endpoint, args.into()).await
        }
        Command::Export(args) => {
            let endpoint = endpoint(&args.endpoint);
            export::run(endpoint, args.into()).await
        }
    }
}

fn endpoint(args: &EndpointArgs) -> client::Endpoint {
    client::Endpoint {
        url: args.url.clone(),
        key: args.key.clone(),
    }
}
