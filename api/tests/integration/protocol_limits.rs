//! What a hostile client meets at the door: a head sent slowly (or never) is cut off
//! after the header timeout while everyone else is served as usual; an idle
//! kept-alive connection is closed after the same timeout; one connection too many
//! is told 503 and closed; running out of file descriptors pauses accepting instead
//! of spinning a core; and `/metrics` can live on an address of its own.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::broker::free_port;
use crate::helpers::{TestApp, until};

const GET_LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: boxoffice\r\n\r\n";

/// Waits (at most `within`) until the server closes `stream` (EOF or reset); what it
/// sent until then, or `None` if it is still open.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    });
    read.await.ok().map(|()| received)
}

/// Reads one whole response (head and a `content-length` body) off `stream`.
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("read");
        assert!(n > 0, "closed before a whole response");
        received.extend_from_slice(&buf[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(received[..end].to_vec()).unwrap();
            let length: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
            if received.len() >= end + 4 + length {
                return (head, received[end + 4..end + 4 + length].to_vec());
            }
        }
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

fn open_connections(app: &TestApp) -> i64 {
    app.svc
        .metrics
        .http_connections_open
        .with_label_values(&["api"])
        .get()
}

/// How a slowloris client sends its head.
#[derive(Clone, Copy, Debug)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends part of a head, then nothing.
    Partial,
    /// Sends a head a byte at a time, never finishing it.
    Trickle,
}

/// One slow client: how long after connecting the server closed on it.
async fn slowloris(addr: SocketAddr, how: Slow) -> Duration {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let connected = Instant::now();
    match how {
        Slow::Silent => {}
        Slow::Partial => stream
            .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("writes"),
        Slow::Trickle => {
            stream
                .write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .expect("writes");
            let mut buf = [0u8; 256];
            loop {
                tokio::select! {
                    read = stream.read(&mut buf) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            return connected.elapsed();
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(250)) => {
                        if stream.write_all(b"a").await.is_err() {
                            return connected.elapsed();
                        }
                    }
                }
                assert!(
                    connected.elapsed() < Duration::from_secs(10),
                    "never closed"
                );
            }
        }
    }
    let closed = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed.is_some(), "{how:?}: never closed");
    connected.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_heads_are_cut_off_after_the_timeout_while_others_are_served_fast() {
    // The header timeout configured below, give or take the connect.
    const EARLIEST: Duration = Duration::from_millis(900);
    const LATEST: Duration = Duration::from_millis(2500);
    let app = TestApp::spawn_with(|s| s.http_header_timeout_ms = 1_000).await;
    // Warm up the normal client's connection.
    assert_eq!(
        app.http
            .get(app.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let attack = (0..200).map(|i| {
        let how = [Slow::Silent, Slow::Partial, Slow::Trickle][i % 3];
        let addr = app.addr;
        tokio::spawn(async move { (how, slowloris(addr, how).await) })
    });
    let attack = tokio::spawn(join_all(attack.collect::<Vec<_>>()));

    // A normal client meanwhile, one request after the other until the attack ends.
    let mut latencies = Vec::new();
    while !attack.is_finished() {
        let started = Instant::now();
        let res = app.http.get(app.url("/health/live")).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        res.bytes().await.unwrap();
        latencies.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let closed: Vec<_> = attack
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    for (how, after) in &closed {
        assert!(*after >= EARLIEST, "{how:?} closed too early: {after:?}");
        assert!(*after < LATEST, "{how:?} closed too late: {after:?}");
    }
    let slowest_close = closed.iter().map(|(_, after)| *after).max().unwrap();
    let max = latencies.iter().max().unwrap();
    eprintln!(
        "200 slow clients closed after at most {slowest_close:?}; {} normal requests meanwhile, max {max:?}",
        latencies.len()
    );
    assert!(latencies.len() >= 20, "the normal client kept going");
    assert!(
        *max < Duration::from_millis(50),
        "a normal request took {max:?} during the attack"
    );
    until(
        "the slow clients' slots are free again",
        Duration::from_secs(2),
        async || open_connections(&app) <= 1,
    )
    .await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let app = TestApp::spawn_with(|s| s.http_header_timeout_ms = 1_000).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    for _ in 0..2 {
        stream.write_all(GET_LIVE).await.unwrap();
        let (head, _) = read_response(&mut stream).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(header(&head, "connection"), None, "kept alive");
    }
    let idle = Instant::now();
    let closed = read_until_closed(&mut stream, Duration::from_secs(3)).await;
    let after = idle.elapsed();
    assert_eq!(closed.as_deref(), Some(&[][..]), "closed, without a word");
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "closed {after:?} after the last response"
    );
}

#[tokio::test]
async fn without_keep_alive_the_server_closes_after_one_response() {
    // The default header timeout (10 s): only keep-alive off closes this soon.
    let app = TestApp::spawn_with(|s| s.http_keep_alive = false).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(GET_LIVE).await.unwrap();
    let (head, _) = read_response(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(header(&head, "connection"), Some("close"));
    let closed = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert_eq!(
        closed.as_deref(),
        Some(&[][..]),
        "closed after the response"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_too_many_is_told_503_and_closed_until_a_slot_frees() {
    type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;
    const MAX: usize = 3;
    let app = TestApp::spawn_with(|s| {
        s.http_max_connections = MAX as u32;
        // Frees the test client's pooled connection soon after the setup.
        s.http_header_timeout_ms = 1_000;
    })
    .await;
    let refused = || {
        app.svc
            .metrics
            .http_connections_refused
            .with_label_values(&["api"])
            .get()
    };
    let (concert, _) = app.create_concert(&[10], 100).await;
    let mut tokens = Vec::new();
    for i in 0..MAX {
        tokens.push(app.waiting_token(concert, &format!("fan-{i}")).await);
    }
    until(
        "the setup's connections are closed",
        Duration::from_secs(5),
        async || open_connections(&app) == 0,
    )
    .await;

    // Every slot taken by a WebSocket: upgraded connections count until they close.
    let mut sockets: Vec<Socket> = Vec::new();
    for token in &tokens {
        let url = format!("ws://{}/v1/queue/ws?token={token}", app.addr);
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let first = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
        assert!(matches!(first, Ok(Some(Ok(Message::Text(_))))));
        sockets.push(socket);
    }
    assert_eq!(open_connections(&app), MAX as i64);
    assert_eq!(
        app.svc
            .metrics
            .http_max_connections
            .with_label_values(&["api"])
            .get(),
        MAX as i64
    );

    let mut extra = TcpStream::connect(app.addr).await.unwrap();
    extra.write_all(GET_LIVE).await.unwrap();
    let answer = read_until_closed(&mut extra, Duration::from_secs(2))
        .await
        .expect("refused and closed");
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole response");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert_eq!(
        header(head, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(header(head, "retry-after"), Some("1"));
    assert_eq!(header(head, "connection"), Some("close"));
    let problem: Value = serde_json::from_str(body).unwrap();
    assert_eq!(problem["code"], "SERVICE_UNAVAILABLE");
    assert_eq!(problem["status"], 503);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("too many connections")
    );
    assert_eq!(refused(), 1);
    assert_eq!(
        open_connections(&app),
        MAX as i64,
        "the refused one never counted"
    );
    assert!(
        app.svc
            .metrics
            .render()
            .contains("boxoffice_http_connections_refused_total{listener=\"api\"} 1")
    );

    // One socket closes: its slot serves the next connection.
    let mut freed = sockets.pop().unwrap();
    freed.close(None).await.unwrap();
    drop(freed);
    until(
        "a freed slot serves a request",
        Duration::from_secs(5),
        async || {
            let mut stream = TcpStream::connect(app.addr).await.unwrap();
            stream.write_all(GET_LIVE).await.unwrap();
            let answer = read_until_closed(&mut stream, Duration::from_millis(500)).await;
            // Still open after an answer: kept alive, so served (not refused).
            answer.is_none()
        },
    )
    .await;
}

/// One HTTP/2 frame (RFC 9113 4.1).
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.extend([kind, flags]);
    frame.extend(stream.to_be_bytes());
    frame.extend(payload);
    frame
}

/// The next HTTP/2 frame: type, flags, stream and payload; `None` once closed.
async fn read_h2_frame(stream: &mut TcpStream) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    stream.read_exact(&mut payload).await.ok()?;
    let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    Some((head[3], head[4], id, payload))
}

/// h2c with prior knowledge (what poem's server allowed) still works, and an idle
/// HTTP/2 connection meets the header timeout too: GOAWAY, then closed.
#[tokio::test]
async fn http2_is_served_and_an_idle_http2_connection_ends_with_goaway() {
    const SETTINGS: u8 = 0x4;
    const HEADERS: u8 = 0x1;
    const GOAWAY: u8 = 0x7;
    let app = TestApp::spawn_with(|s| s.http_header_timeout_ms = 1_000).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // GET /health/live in HPACK without Huffman: :method GET, :scheme http (static
    // indexes 2 and 6), :path and :authority as literals with indexed names.
    let mut request = vec![0x82, 0x86, 0x44, 12];
    request.extend(b"/health/live");
    request.extend([0x41, 1, b'x']);
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(h2_frame(SETTINGS, 0, 0, &[]));
    // END_STREAM | END_HEADERS on stream 1.
    hello.extend(h2_frame(HEADERS, 0x5, 1, &request));
    stream.write_all(&hello).await.unwrap();

    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (kind, flags, id, payload) = read_h2_frame(&mut stream).await.expect("a frame");
            if kind == SETTINGS && flags & 0x1 == 0 {
                stream
                    .write_all(&h2_frame(SETTINGS, 0x1, 0, &[]))
                    .await
                    .unwrap();
            }
            if kind == HEADERS && id == 1 {
                return payload;
            }
        }
    });
    let head = answered.await.expect("an answer on stream 1");
    assert_eq!(head[0], 0x88, ":status 200 (static index 8)");

    let idle = Instant::now();
    let goaway = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some((kind, ..)) = read_h2_frame(&mut stream).await {
            if kind == GOAWAY {
                return true;
            }
        }
        false
    });
    assert!(goaway.await.expect("within 3 s"), "GOAWAY before closing");
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_millis(2500),
        "GOAWAY {after:?} after the response"
    );
    let closed = read_until_closed(&mut stream, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "closed after GOAWAY");
}

#[tokio::test]
async fn metrics_on_their_own_address_are_gone_from_the_api_port() {
    let app = TestApp::spawn().await;
    let mut settings = (*app.svc.settings).clone();
    settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    settings.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = boxoffice::Server::bind(settings).await.unwrap();
    let api = server.local_addr();
    let metrics = server.metrics_addr().expect("a metrics address");
    assert_ne!(api, metrics);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run_until(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    let scrape = http
        .get(format!("http://{metrics}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    let text = scrape.text().await.unwrap();
    assert!(text.contains("boxoffice_http_connections_open{listener=\"metrics\"} 1"));
    assert!(text.contains("boxoffice_http_connections_refused_total{listener=\"api\"} 0"));

    for (addr, path) in [(api, "/metrics"), (metrics, "/health/live")] {
        let res = http
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND, "{path} on {addr}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "NOT_FOUND");
    }
    let live = http
        .get(format!("http://{api}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    // Both listeners stop with the server.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .unwrap()
        .unwrap();
    for addr in [api, metrics] {
        assert!(TcpStream::connect(addr).await.is_err(), "{addr} closed");
    }
}

/// A `boxoffice serve` process, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time `pid` has used, in clock ticks (1/100 s on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses: utime and stime are
    // fields 14 and 15 of the line, 12 and 13 after it.
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Out of file descriptors, a server pauses between accepts instead of retrying at
/// once; and serves again as soon as descriptors are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_the_server_pauses_instead_of_spinning() {
    const FILES: usize = 256;
    let app = TestApp::spawn().await;
    let s = &app.svc.settings;
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // `ulimit -n` in a shell that then becomes the server: the only way to lower
    // its limit without unsafe code.
    let child = Command::new("sh")
        .args(["-c", &format!("ulimit -n {FILES} && exec \"$0\" serve")])
        .arg(env!("CARGO_BIN_EXE_boxoffice"))
        .env("BOXOFFICE_LISTEN", addr.to_string())
        .env(
            "BOXOFFICE_DATABASE_URL",
            secrecy::ExposeSecret::expose_secret(&s.database_url),
        )
        .env(
            "BOXOFFICE_REDIS_URL",
            secrecy::ExposeSecret::expose_secret(&s.redis_url),
        )
        .env("BOXOFFICE_REDIS_KEY_PREFIX", &s.redis_key_prefix)
        .env("BOXOFFICE_IDENTITY_MODE", "development")
        .env("BOXOFFICE_OUTBOX_RELAY", "false")
        // The idle connections below must stay for the whole measurement.
        .env("BOXOFFICE_HTTP_HEADER_TIMEOUT_MS", "120000")
        .env("BOXOFFICE_LOG_FILTER", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh runs");
    let server = Serve(child);
    let pid = server.0.id();
    let http = reqwest::Client::new();
    let live = async || {
        http.get(format!("http://{addr}/health/live"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK)
    };
    until("the server is up", Duration::from_secs(20), live).await;

    // More idle connections than it has descriptors: it accepts until it has none
    // left; the rest wait in the listen backlog, and each accept fails with EMFILE.
    let mut idle = Vec::new();
    for _ in 0..FILES + 50 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    until(
        "the server has no descriptor left",
        Duration::from_secs(10),
        async || open_files(pid) >= FILES,
    )
    .await;

    // A measurement window, not a wait for something to happen.
    let before = cpu_ticks(pid);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = Duration::from_millis((cpu_ticks(pid) - before) * 10);
    let share = used.as_secs_f64() / started.elapsed().as_secs_f64();
    eprintln!(
        "out of descriptors: {used:?} of CPU in {:?} ({:.1}% of a core)",
        started.elapsed(),
        share * 100.0
    );
    assert!(
        share < 0.2,
        "the accept loop should pause, not spin: {:.0}% of a core",
        share * 100.0
    );

    // Descriptors free again: the server accepts and answers within its longest pause.
    drop(idle);
    until("the server answers again", Duration::from_secs(10), live).await;
    let text = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let errors: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("boxoffice_http_accept_errors_total{listener=\"api\"} "))
        .expect("the accept error counter")
        .parse()
        .unwrap();
    assert!(errors >= 1, "accept failures counted: {errors}");
    eprintln!("accept errors counted: {errors}");
}
