//! `boxoffice` subcommands run as processes of their own, for tests that kill or
//! stop one (a crash, a SIGTERM) or run several instances.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::helpers::TestApp;

/// A `boxoffice` process, killed when dropped (so a failing test leaves none behind).
pub struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `boxoffice <command>` as a process of its own, against `app`'s database and Redis.
pub fn process(app: &TestApp, command: &str, port: u16, kafka: &str) -> Running {
    process_with(app, command, port, kafka, &[])
}

/// [`process`], with more (or overriding) `BOXOFFICE_*` variables.
pub fn process_with(
    app: &TestApp,
    command: &str,
    port: u16,
    kafka: &str,
    env: &[(&str, &str)],
) -> Running {
    let s = &app.svc.settings;
    Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .arg(command)
        .env("BOXOFFICE_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "BOXOFFICE_DATABASE_URL",
            secrecy::ExposeSecret::expose_secret(&s.database_url),
        )
        .env(
            "BOXOFFICE_REDIS_URL",
            secrecy::ExposeSecret::expose_secret(&s.redis_url),
        )
        .env("BOXOFFICE_REDIS_KEY_PREFIX", &s.redis_key_prefix)
        .env("BOXOFFICE_KAFKA_BROKERS", kafka)
        .env("BOXOFFICE_KAFKA_TOPIC", &s.kafka_topic)
        .env("BOXOFFICE_KAFKA_CONSUMER_GROUP", &s.kafka_consumer_group)
        .env("BOXOFFICE_QUEUE_TICK_MS", "20")
        .env("BOXOFFICE_LOG_FILTER", "warn")
        // The in-process app's join limit (off in tests: every fan is 127.0.0.1).
        .env(
            "BOXOFFICE_JOIN_LIMIT_PER_SECOND",
            s.join_limit_per_second.to_string(),
        )
        .envs(identity_env(s))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log_file(command, port))
        .spawn()
        .map(Running)
        .expect("the boxoffice binary runs")
}

/// Where a process's log goes: nowhere, or a file in `$TEST_PROCESS_LOGS`
/// (`<command>-<port>.log`) when a failing test needs reading.
fn log_file(command: &str, port: u16) -> Stdio {
    std::env::var_os("TEST_PROCESS_LOGS")
        .and_then(|dir| {
            std::fs::File::create(PathBuf::from(dir).join(format!("{command}-{port}.log"))).ok()
        })
        .map_or_else(Stdio::null, Stdio::from)
}

/// The `BOXOFFICE_IDENTITY_*` variables of `settings`, so a process trusts the
/// same login service as the in-process app it runs beside.
fn identity_env(settings: &infra::Settings) -> Vec<(&'static str, String)> {
    let mode = match settings.identity_mode {
        Some(infra::config::IdentityMode::Jwt) => "jwt",
        Some(infra::config::IdentityMode::Development) => "development",
        None => return Vec::new(),
    };
    let mut env = vec![("BOXOFFICE_IDENTITY_MODE", mode.to_owned())];
    for (name, value) in [
        ("BOXOFFICE_IDENTITY_ISSUER", &settings.identity_issuer),
        ("BOXOFFICE_IDENTITY_AUDIENCE", &settings.identity_audience),
        ("BOXOFFICE_IDENTITY_JWKS_URL", &settings.identity_jwks_url),
    ] {
        if let Some(value) = value {
            env.push((name, value.clone()));
        }
    }
    if let Some(file) = &settings.identity_jwks_file {
        env.push(("BOXOFFICE_IDENTITY_JWKS_FILE", file.display().to_string()));
    }
    env
}

impl Running {
    /// Sends SIGTERM, as Kubernetes and `docker stop` do.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "SIGTERM delivered");
    }

    /// Waits (at most `within`) for the process to exit; its exit status.
    pub async fn exited(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "still running after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `Child::kill` is SIGKILL: no shutdown, no last offset commit, no last publish.
pub fn sigkill(process: Running) {
    drop(process);
}
