//! The binary is a shim: parse the command line, run what it names (`cli`).
// The compiler's default query depth is too small for the server's futures once the Redis
// cluster client's are among them.
#![recursion_limit = "256"]

use std::process::ExitCode;

use clap::Parser;
use session_relay::config::args::Cli;

#[actix_web::main]
async fn main() -> ExitCode {
    session_relay::cli::run(Cli::parse()).await
}
