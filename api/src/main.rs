//! The boxoffice binary: `serve`, `consume`, `migrate`, `seed`, `openapi`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use infra::{Services, Settings};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "A concert booking backend built to survive a ticket-open rush."
)]
struct Cli {
    /// Optional TOML configuration file; `BOXOFFICE_*` environment variables override it.
    #[arg(
        long,
        global = true,
        default_value = "boxoffice.toml",
        env = "BOXOFFICE_CONFIG"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API with its workers: hold expiry, admission ticks, the outbox relay.
    Serve,
    /// Consume the event stream into the sales projection (`/v1/admin/concerts/{id}/sales`).
    Consume,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Migrate, then create the demo concert (3 schedules of 50 seats) unless it exists.
    Seed,
    /// Print the OpenAPI spec as YAML.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load(&cli.config).context("loading configuration")?;
    init_tracing(&settings);
    match cli.command {
        Command::Serve => {
            let server = boxoffice::Server::bind(settings).await?;
            server.run_until(shutdown_signal()).await
        }
        Command::Consume => {
            infra::db::migrate(&settings).await?;
            let svc = Services::new(settings, infra::metrics::Metrics::new())?;
            infra::service::sales::consume(svc, shutdown_signal()).await
        }
        Command::Migrate => {
            let applied = infra::db::migrate(&settings).await?;
            tracing::info!(?applied, "database is up to date");
            Ok(())
        }
        Command::Seed => {
            infra::db::migrate(&settings).await?;
            let svc = Services::new(settings, infra::metrics::Metrics::new())?;
            let concert = infra::service::admin::seed_demo(&svc, infra::now()).await?;
            tracing::info!(concert_id = %concert, "demo concert ready");
            Ok(())
        }
        Command::Openapi => {
            let svc = Services::new(settings, infra::metrics::Metrics::new())?;
            print!("{}", boxoffice::api_service(&svc).spec_yaml());
            Ok(())
        }
    }
}

fn init_tracing(settings: &Settings) {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if settings.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
