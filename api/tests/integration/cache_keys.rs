//! The lookup cache as Redis Cluster needs it (issue 19): every key a script touches
//! is one it was given in `KEYS`, and all keys of one entry sit in one slot. Checked on
//! what Redis itself records (`MONITOR`, on a Redis of the test's own) while the app
//! serves, misses, stores, invalidates and serves again. Also: the cache's promise
//! never to serve or keep what was loaded before a write, and the seat map's max age.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use domain::ScheduleId;
use futures::StreamExt as _;
use infra::testing::cache::{Entry, Loaded};
use infra::testing::redis;
use reqwest::StatusCode;

use crate::broker::free_port;
use crate::helpers::{TestApp, until};
use crate::own_redis::OwnRedis;

/// A Redis Cluster hash slot: CRC16 (XMODEM) of the key's hash tag (the text between
/// the first `{` and the next `}`, if not empty) or else of the whole key, mod 16384.
fn slot(key: &str) -> u16 {
    let hashed = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for byte in hashed.bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc % 16_384
}

#[test]
fn slots_are_computed_as_the_cluster_specification_says() {
    // The cluster specification's CRC16 check value (0x31C3, below 16384), and the
    // answers of `CLUSTER KEYSLOT` in its documentation.
    assert_eq!(slot("123456789"), 0x31C3);
    assert_eq!(slot("somekey"), 11_058);
    assert_eq!(slot("foo{hash_tag}"), 2_515);
    assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
    assert_eq!(slot("foo{bar}{zap}"), slot("bar"));
    assert_eq!(slot("foo{{bar}}zap"), slot("{bar"));
    // An empty tag: the whole key is hashed.
    assert_ne!(slot("foo{}{bar}"), slot("bar"));
}

/// One line of `MONITOR`: who ran the command (a script, or a client) and its words.
#[derive(Debug)]
struct Logged {
    in_script: bool,
    words: Vec<String>,
}

/// Parses `1700000000.000000 [0 127.0.0.1:5000] "SET" "k" "v"`: words are quoted,
/// with `\"`, `\\`, `\n`, `\r`, `\t`, `\a`, `\b` and `\xNN` escapes.
fn parse_monitor_line(line: &str) -> Logged {
    let (source, rest) = line
        .split_once('[')
        .and_then(|(_, rest)| rest.split_once("] "))
        .unwrap_or_else(|| panic!("a monitor line: {line}"));
    let mut words = Vec::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c != '"' {
            continue;
        }
        let mut word = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('x') => {
                        let hex: String = chars.by_ref().take(2).collect();
                        word.push(char::from(u8::from_str_radix(&hex, 16).unwrap()));
                    }
                    Some('n') => word.push('\n'),
                    Some('r') => word.push('\r'),
                    Some('t') => word.push('\t'),
                    Some('a') => word.push('\u{7}'),
                    Some('b') => word.push('\u{8}'),
                    Some(other) => word.push(other),
                    None => break,
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
    Logged {
        in_script: source.ends_with(" lua"),
        words,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_a_cache_script_touches_is_given_in_keys_and_an_entrys_keys_share_a_slot() {
    let redis = OwnRedis::start(free_port());
    let url = redis.url();
    let app = TestApp::spawn_with(|s| s.redis_url = url.clone().into()).await;
    let cache_prefix = format!("{}:cache:", app.svc.keys.prefix());
    let monitor = redis::Client::open(url.as_str())
        .unwrap()
        .get_async_monitor()
        .await
        .unwrap();
    let mut logged = monitor.into_on_message::<String>();

    // Misses that store, hits, writes that invalidate, misses after them.
    let (concert, schedules) = app.create_concert(&[3], 100).await;
    let token = app.token(concert, "ann").await;
    for seat in 1..=2 {
        for path in [
            "/v1/concerts".to_owned(),
            format!("/v1/concerts/{concert}/schedules"),
            format!("/v1/schedules/{}/seats", schedules[0]),
        ] {
            assert_eq!(app.get(&path, None).await.status(), StatusCode::OK);
            assert_eq!(app.get(&path, None).await.status(), StatusCode::OK);
        }
        app.held(&token, schedules[0], seat).await;
        app.create_concert(&[1], 100).await;
    }

    // Everything the app sent came before this mark.
    let mark = format!("{}:end-of-test", app.svc.keys.prefix());
    let mut conn = infra::testing::conn(&app.svc.redis).await.unwrap();
    redis::cmd("ECHO")
        .arg(&mark)
        .query_async::<String>(&mut conn)
        .await
        .unwrap();
    let mut lines = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(10), logged.next())
            .await
            .expect("the mark in time")
            .expect("the monitor stays open");
        if line.contains(&mark) {
            break;
        }
        lines.push(parse_monitor_line(&line));
    }

    let mut given: Vec<String> = Vec::new();
    let mut script_calls = 0;
    let mut touched: HashMap<String, HashSet<String>> = HashMap::new();
    for line in &lines {
        if !line.in_script {
            given = match line
                .words
                .first()
                .map(|w| w.to_ascii_uppercase())
                .as_deref()
            {
                Some("EVAL" | "EVALSHA") => {
                    let count: usize = line.words[2].parse().unwrap();
                    line.words[3..3 + count].to_vec()
                }
                _ => Vec::new(),
            };
        }
        for key in line.words.iter().filter(|w| w.starts_with(&cache_prefix)) {
            if line.in_script {
                script_calls += 1;
                assert!(
                    given.contains(key),
                    "a script touched {key}, which is not among its KEYS {given:?}: {:?}",
                    line.words
                );
            }
            let entry = key.split_inclusive('}').next().unwrap().to_owned();
            touched.entry(entry).or_default().insert(key.clone());
        }
    }
    assert!(script_calls > 0, "no cache script ran: {lines:?}");
    for (entry, keys) in &touched {
        let slots: HashSet<u16> = keys.iter().map(|k| slot(k)).collect();
        assert_eq!(slots.len(), 1, "{entry}: {keys:?} span slots {slots:?}");
    }
    // The three lookups were read, stored and invalidated: more than one key each.
    let read = touched.values().filter(|keys| keys.len() > 1).count();
    assert_eq!(read, 3, "{touched:?}");
}

/// What `fetch` gives for `entry` when a miss loads `body`.
async fn fetch(app: &TestApp, entry: Entry, body: &'static str) -> Bytes {
    app.svc
        .cache
        .fetch(entry, async {
            Ok::<_, Infallible>(Loaded {
                body: Bytes::from_static(body.as_bytes()),
                max_age: None,
            })
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_loaded_before_a_write_is_neither_served_nor_stored() {
    let app = TestApp::spawn().await;
    let cache = &app.svc.cache;
    let entry = Entry::SeatMap(ScheduleId(7));
    // A reader loads the old map; the write commits and invalidates during the load.
    let old = cache
        .fetch(entry, async {
            cache.invalidate(&[entry]).await;
            Ok::<_, Infallible>(Loaded {
                body: Bytes::from_static(b"before the write"),
                max_age: None,
            })
        })
        .await
        .unwrap();
    assert_eq!(old, "before the write", "the reader gets what it loaded");
    assert_eq!(
        fetch(&app, entry, "after the write").await,
        "after the write"
    );
    assert_eq!(
        fetch(&app, entry, "loaded again").await,
        "after the write",
        "a hit"
    );
    // A later write makes it unreachable too.
    cache.invalidate(&[entry]).await;
    assert_eq!(fetch(&app, entry, "after another").await, "after another");
    // Other entries are untouched by it.
    let other = Entry::SeatMap(ScheduleId(8));
    assert_eq!(fetch(&app, other, "eight").await, "eight");
    cache.invalidate(&[entry]).await;
    assert_eq!(fetch(&app, other, "loaded again").await, "eight");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_lives_no_longer_than_its_max_age() {
    // The default time to live (a minute) is far beyond what the test waits.
    let app = TestApp::spawn().await;
    let entry = Entry::SeatMap(ScheduleId(9));
    let first = app
        .svc
        .cache
        .fetch(entry, async {
            Ok::<_, Infallible>(Loaded {
                body: Bytes::from_static(b"a hold lapses in a second"),
                max_age: Some(Duration::from_secs(1)),
            })
        })
        .await
        .unwrap();
    assert_eq!(first, "a hold lapses in a second");
    let value = format!("{}:v", app.svc.keys.cache(&entry));
    let mut conn = infra::testing::conn(&app.svc.redis).await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&value)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(0 < ttl && ttl <= 1_000, "stored for {ttl} ms");
    until("the seat map lapses", Duration::from_secs(5), async || {
        fetch(&app, entry, "reloaded").await == "reloaded"
    })
    .await;
}
