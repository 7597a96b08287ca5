//! `session-relay [serve]`: read the configuration, set up logs, run the server until a
//! signal stops it.

use std::process::ExitCode;

use crate::{
    config::{Settings, args::ConfigArgs},
    startup::Application,
    telemetry,
};

pub async fn run(args: &ConfigArgs) -> ExitCode {
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("session-relay: {err}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log);
    let listen = settings.server.listen.clone();
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(%err, "startup failed");
            eprintln!("session-relay: {err}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(%listen, port = app.port(), "session-relay listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "server stopped with an error");
            ExitCode::FAILURE
        }
    }
}
