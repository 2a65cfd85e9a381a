//! A real Kafka-compatible broker for the event tests: tansu, on a free loopback port,
//! keeping its log in SQLite in a temporary directory, so it can be stopped and
//! started again without losing what it had (`TANSU` names the binary).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};
use serde_json::Value;

/// How long one metadata, watermark or offset request may take the broker.
const BROKER_ANSWERS_WITHIN: Duration = Duration::from_secs(10);

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
            if broker.launch().await {
                return broker;
            }
            broker.addr.set_port(free_port());
        }
        panic!("tansu found no port of its own");
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
        assert!(
            self.launch().await,
            "tansu could not listen on {} again",
            self.addr
        );
    }

    /// Starts tansu and waits until it is the one listening on `addr` (true), or until
    /// it exits because it could not bind it (false). The port answering is not
    /// enough: another test's tansu may be the one answering there.
    async fn launch(&mut self) -> bool {
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
        let pid = child.id();
        let child = self.child.insert(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if listens(pid, self.addr.port()) {
                return true;
            }
            if child.try_wait().expect("try_wait").is_some() {
                self.child = None;
                return false;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tansu neither listened on {} nor exited within 10 s",
                self.addr
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Reads `topic` from the start until `done` says so (or 60 s pass), and returns
    /// every event (the JSON envelope) with its key, in the order each partition gave.
    pub async fn read_until(
        &self,
        topic: &str,
        mut done: impl FnMut(&[(String, Value)]) -> bool,
    ) -> Vec<(String, Value)> {
        self.read(topic, |events, _| done(events)).await
    }

    /// Everything `topic` holds: read from the start to where each partition ended
    /// when called. Whatever a test then does not find there was never published.
    pub async fn read_all(&self, topic: &str) -> Vec<(String, Value)> {
        let ends = self.ends(topic).await;
        self.read(topic, |_, next| {
            ends.iter()
                .all(|(partition, end)| next.get(partition).copied().unwrap_or(0) >= *end)
        })
        .await
    }

    /// Whether consumer group `group` has committed the end of every partition of
    /// `topic`: it applied every event the topic holds (a consumer stores an event's
    /// offset for commit only once the event is applied).
    pub async fn caught_up(&self, topic: &str, group: &str) -> bool {
        let ends = self.ends(topic).await;
        let (bootstrap, topic, group) = (self.bootstrap(), topic.to_owned(), group.to_owned());
        let partitions: Vec<i32> = ends.keys().copied().collect();
        let committed = tokio::task::spawn_blocking(move || {
            // Never subscribed, so it does not join the group: it only reads its offsets.
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .set("group.id", group)
                .create()
                .expect("consumer");
            let mut list = TopicPartitionList::new();
            for partition in partitions {
                list.add_partition(&topic, partition);
            }
            consumer
                .committed_offsets(list, BROKER_ANSWERS_WITHIN)
                .expect("the group's committed offsets")
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect::<HashMap<_, _>>()
        })
        .await
        .expect("offsets task");
        ends.iter().all(|(partition, end)| {
            *end == 0 || committed.get(partition) == Some(&Offset::Offset(*end))
        })
    }

    /// Where each partition of `topic` ends now (its high watermark), by partition.
    async fn ends(&self, topic: &str) -> HashMap<i32, i64> {
        let (bootstrap, topic) = (self.bootstrap(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            let consumer: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", bootstrap)
                .create()
                .expect("consumer");
            let metadata = consumer
                .fetch_metadata(Some(&topic), BROKER_ANSWERS_WITHIN)
                .expect("topic metadata");
            let partitions: HashSet<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .map(rdkafka::metadata::MetadataPartition::id)
                })
                .collect();
            assert!(!partitions.is_empty(), "{topic} has no partitions");
            partitions
                .into_iter()
                .map(|partition| {
                    let (_, high) = consumer
                        .fetch_watermarks(&topic, partition, BROKER_ANSWERS_WITHIN)
                        .expect("watermarks");
                    (partition, high)
                })
                .collect()
        })
        .await
        .expect("watermarks task")
    }

    /// Reads `topic` from the start until `done` says so (or 60 s pass), given the
    /// events so far and, by partition, the offset after the last one read.
    async fn read(
        &self,
        topic: &str,
        mut done: impl FnMut(&[(String, Value)], &HashMap<i32, i64>) -> bool,
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
        let mut next = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !done(&events, &next) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "read {} events and gave up", events.len());
            if let Ok(Ok(message)) = tokio::time::timeout(left, consumer.recv()).await {
                let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
                let body = serde_json::from_slice(message.payload().unwrap_or_default())
                    .expect("events are JSON");
                events.push((key, body));
                next.insert(message.partition(), message.offset() + 1);
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

/// Whether process `pid` holds a socket listening on TCP `port`: a listening socket
/// on that port in `/proc/net/tcp{,6}`, found by its inode among the process's open
/// descriptors.
fn listens(pid: u32, port: u16) -> bool {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(table) else {
            continue;
        };
        // sl local_address rem_address st ... inode: `local_address` is HEXADDR:HEXPORT,
        // `st` 0A is LISTEN, `inode` the tenth field.
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port)
                && fields.get(3) == Some(&"0A")
                && let Some(inode) = fields.get(9)
            {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return false;
    }
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| inodes.contains(target.to_string_lossy().as_ref()))
        })
    })
}
