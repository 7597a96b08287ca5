//! The binary is a shim: parse the command line, run what it names (`cli`).

use std::process::ExitCode;

use clap::Parser;
use session_relay::config::args::Cli;

#[actix_web::main]
async fn main() -> ExitCode {
    session_relay::cli::run(Cli::parse()).await
}
