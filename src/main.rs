//! The binary is a shim: read the configuration, set up logs, run the application — or,
//! given `import` / `export` as its first argument, run that subcommand (`cli`) instead.

use std::{path::PathBuf, process::ExitCode};

use session_relay::{config::Settings, startup::Application, telemetry};

#[actix_web::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = session_relay::cli::dispatch(&args).await {
        return code;
    }
    let config_path = config_flag(args.into_iter());
    let settings = match Settings::load(config_path.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("session-relay: {err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let listen = settings.server.listen.clone();
    match Application::build(settings).await {
        Ok(app) => {
            tracing::info!(%listen, port = app.port(), "session-relay listening");
            match app.run_until_stopped().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    tracing::error!(%err, "server stopped with an error");
                    ExitCode::FAILURE
                }
            }
        }
        Err(err) => {
            tracing::error!(%err, "startup failed");
            eprintln!("session-relay: {err}");
            ExitCode::FAILURE
        }
    }
}

/// `--config PATH` or `--config=PATH`.
fn config_flag(mut args: impl Iterator<Item = String>) -> Option<PathBuf> {
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    None
}
