//! The command line. It lives here, beside the file and the overrides, because clap reads
//! the environment fallbacks of its flags (`SESSION_RELAY_URL`, `SESSION_RELAY_API_KEY`)
//! and this module stays the only reader of the environment. [`crate::cli`] runs what
//! was parsed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Keeps LLM conversations server-side: clients send only the new message.
///
/// Without a subcommand the binary is the server (`serve`).
#[derive(Debug, Parser)]
#[command(
    name = "session-relay",
    version,
    propagate_version = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    // `session-relay --config PATH` serves, as `session-relay serve --config PATH` does.
    #[command(flatten)]
    pub serve: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(ConfigArgs),
    /// Send an NDJSON file of sessions to a running server, in batches; re-run to resume.
    Import(ImportArgs),
    /// Write sessions from a running server as NDJSON (the import format).
    Export(ExportArgs),
    /// Parse the configuration and the environment, print what they resolve to, and exit
    /// non-zero naming the first bad field.
    CheckConfig(ConfigArgs),
}

impl Cli {
    /// The subcommand to run; none given means `serve`.
    pub fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve(self.serve))
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct ConfigArgs {
    /// The TOML configuration file; without it, `SESSION_RELAY_CONFIG` names one. With
    /// neither, the defaults (memory store, built-in echo model). Every setting also has an
    /// environment override: see the README.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Where the server is, for the client subcommands.
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// Base URL of the server.
    #[arg(
        long,
        env = "SESSION_RELAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// API key (tenant key) to call it with.
    #[arg(long, env = "SESSION_RELAY_API_KEY", hide_env_values = true)]
    pub key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportModeArg {
    /// New sessions; an id already there is reported, not overwritten.
    Create,
    /// Messages added after each session's history.
    Append,
    /// Each session becomes exactly what its line says.
    Replace,
}

impl ImportModeArg {
    pub fn as_str(self) -> &'static str {
        match self {
            ImportModeArg::Create => "create",
            ImportModeArg::Append => "append",
            ImportModeArg::Replace => "replace",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    /// NDJSON file, one session per line. Progress is kept in FILE.import-state.
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = ImportModeArg::Create)]
    pub mode: ImportModeArg,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
    /// Most lines per batch.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_lines: u64,
    /// Most bytes per batch.
    #[arg(long, default_value_t = 4 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_bytes: u64,
    /// Batches in flight.
    // Three: while one batch waits on the server's writes, two keep its cores busy (two
    // left a fifth of a 2-core machine idle in the import benchmark).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,
    /// Retries of one batch (connection errors, 5xx, 429, a key in flight) before stopping.
    #[arg(long, default_value_t = 8)]
    pub retries: u32,
}

#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["session", "user"]))]
pub struct ExportArgs {
    /// One session.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
    /// Every live session of a user.
    #[arg(long, value_name = "USER_ID")]
    pub user: Option<String>,
    /// Written as FILE.partial and renamed when complete; stdout without it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub endpoint: EndpointArgs,
}
