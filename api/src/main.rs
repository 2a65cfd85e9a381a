//! The boxoffice binary: `serve`, `consume`, `migrate`, `seed`, `openapi`, `config`, `health`.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

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
    ///
    /// HTTP/1.1 and h2c on `listen`, with a header timeout that is also the idle
    /// keep-alive timeout (`http_header_timeout_ms`), at most `http_max_connections`
    /// open (one more is answered 503), and `/metrics` on `metrics_listen` instead if
    /// set.
    Serve,
    /// Consume the event stream into the sales projection (`/v1/admin/concerts/{id}/sales`).
    Consume,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Migrate, then create the demo concert (3 schedules of 50 seats) unless it exists.
    Seed,
    /// Print the OpenAPI spec as YAML.
    Openapi,
    /// Check the configuration (file and `BOXOFFICE_*` variables) and print it, secrets
    /// redacted; fails on an unknown or invalid setting.
    Config,
    /// Exit 0 if the server on `listen` is ready (`/health/ready` answers 200): the
    /// container health check, with nothing but this binary in the image.
    Health,
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
            infra::service::admin::migrate(&settings).await?;
            let svc = Services::new(settings, infra::metrics::Metrics::new())?;
            infra::service::sales::consume(svc, shutdown_signal()).await
        }
        Command::Migrate => {
            let applied = infra::service::admin::migrate(&settings).await?;
            tracing::info!(?applied, "database is up to date");
            Ok(())
        }
        Command::Seed => {
            infra::service::admin::migrate(&settings).await?;
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
        Command::Config => {
            println!("{settings:#?}");
            Ok(())
        }
        Command::Health => probe_ready(settings.listen),
    }
}

/// One plain HTTP/1.0 request to `/health/ready` on the local listen port.
fn probe_ready(listen: SocketAddr) -> anyhow::Result<()> {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(Ipv4Addr::LOCALHOST.into());
    }
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.write_all(b"GET /health/ready HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut status_line = [0u8; 12]; // "HTTP/1.1 200"
    stream.read_exact(&mut status_line)?;
    anyhow::ensure!(
        status_line.ends_with(b" 200"),
        "not ready: {}",
        String::from_utf8_lossy(&status_line)
    );
    Ok(())
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
