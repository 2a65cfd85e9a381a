//! A real Kafka-compatible broker for the event tests: tansu, on a free loopback port,
//! keeping its log in SQLite in a temporary directory, so it can be stopped and
//! started again without losing what it had (`TANSU` names the binary).

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message as _};
use serde_json::Value;

pub struct Broker {
    pub addr: SocketAddr,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Broker {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("boxoffice-tansu-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut broker = Self {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            dir,
            child: None,
        };
        // Another test process may pick the same free port at the same moment; then
        // one tansu cannot bind and exits, and the port answers for the other's.
        for _ in 0..5 {
            broker.resume().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            if broker.alive() {
                return broker;
            }
            broker.addr.set_port(free_port());
        }
        panic!("tansu did not stay up on any port");
    }

    fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|exited| exited.is_none()))
    }

    /// `host:port`, for `kafka_brokers`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Kills the broker (its log stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and log, and waits until it listens.
    pub async fn resume(&mut self) {
        let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(bin)
            .current_dir(&self.dir)
            .args(["broker", "--storage-engine", "sqlite://tansu.db"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts (./dev deps installs it: see ensure_tansu in ./dev)");
        self.child = Some(child);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tansu did not listen on {}", self.addr);
    }

    /// Reads `topic` from the start until `done` says so (or 60 s pass), and returns
    /// every event (the JSON envelope) with its key, in the order each partition gave.
    pub async fn read_until(
        &self,
        topic: &str,
        mut done: impl FnMut(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("test-reader-{}", uuid::Uuid::now_v7()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done(&events) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "read {} events and gave up", events.len());
            if let Ok(Ok(message)) = tokio::time::timeout(left, consumer.recv()).await {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let body = serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("events are JSON");
                events.push((key, body));
            }
        }
        events
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
