//! The HTTP server under the poem application: HTTP/1.1 and cleartext HTTP/2 (h2c,
//! with prior knowledge) on hyper, with the limits a hostile client must not get
//! around.
//!
//! - **Header timeout**: a client has `header_timeout` to send a request's head, from
//!   connecting and again from the end of each response, so it is also the idle
//!   keep-alive timeout. A connection that sends a head byte by byte, or nothing, is
//!   closed when it runs out. On HTTP/2 the same clock runs whenever no request is in
//!   flight, and the connection then ends with GOAWAY.
//! - **Connection limit**: at most `max_connections` open at once, WebSockets
//!   included until they close. One more is answered a canned `503` problem
//!   (`SERVICE_UNAVAILABLE`, `Retry-After: 1`) and closed, before anything is read.
//! - **Accept failures** (out of file descriptors or memory): a pause of 5 ms doubling
//!   to 1 s until an accept succeeds, logged once per streak, rather than a loop
//!   that spins a core.
//! - **Graceful shutdown**: stop accepting, let every connection finish the request
//!   it is serving (then close), and cut what is left after the grace period.
//!
//! Counted in `boxoffice_http_connections_open`, `..._refused_total` and
//! `boxoffice_http_accept_errors_total`, labelled by listener (`api`, `metrics`).

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf as _, Bytes};
use http_body_util::combinators::BoxBody;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use infra::metrics::Metrics;
use poem::Endpoint;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use prometheus::IntGauge;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ApiError, ErrorCode};

/// What a listener allows each client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time to send a request head: from connecting, and again from the end of each
    /// response (so also the idle keep-alive timeout).
    pub header_timeout: Duration,
    /// Keep HTTP/1.1 connections open between requests.
    pub keep_alive: bool,
    /// Connections open at once, upgraded WebSockets included.
    pub max_connections: usize,
}

impl Limits {
    /// The API port's limits, from `http_header_timeout_ms`, `http_keep_alive` and
    /// `http_max_connections`.
    pub fn from_settings(settings: &infra::Settings) -> Self {
        Self {
            header_timeout: Duration::from_millis(settings.http_header_timeout_ms),
            keep_alive: settings.http_keep_alive,
            max_connections: settings.http_max_connections as usize,
        }
    }
}

/// The first bytes of every HTTP/2 connection with prior knowledge (RFC 9113 3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a refused connection is given to read its 503 before it is closed.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// The most a refused client may send while its 503 is read (then it is closed).
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;
/// HTTP/2 streams per connection, as hyper's default (poem's server set no limit).
const H2_MAX_STREAMS: u32 = 200;
/// Reset streams a client may leave unaccepted before GOAWAY (the rapid-reset
/// defence; poem's server used the same).
const H2_MAX_PENDING_RESETS: usize = 20;
/// The largest HTTP/2 header list accepted (poem's server used the same).
const H2_MAX_HEADER_LIST: u32 = 16 * 1024;

/// A bound listening socket with its limits, not yet accepting.
#[derive(Debug)]
pub struct HttpListener {
    tcp: TcpListener,
    addr: SocketAddr,
    /// The `listener` label of its metrics.
    name: &'static str,
    limits: Limits,
}

impl HttpListener {
    /// Binds `addr`; `name` labels its metrics and logs (`api`, `metrics`).
    pub async fn bind(addr: SocketAddr, name: &'static str, limits: Limits) -> io::Result<Self> {
        let tcp = TcpListener::bind(addr).await?;
        let addr = tcp.local_addr()?;
        Ok(Self {
            tcp,
            addr,
            name,
            limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `endpoint` until `stop` is cancelled; then stops accepting, lets each
    /// connection finish the request it is serving and close, and cuts those still
    /// open after `grace`. Returns once every connection task has ended (upgraded
    /// WebSockets live on in their own tasks).
    pub async fn serve<E>(
        self,
        endpoint: E,
        metrics: &Metrics,
        stop: CancellationToken,
        grace: Duration,
    ) where
        E: Endpoint + 'static,
    {
        let Self {
            tcp,
            addr,
            name,
            limits,
        } = self;
        let endpoint = Arc::new(endpoint);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let open = metrics.http_connections_open.with_label_values(&[name]);
        let refused = metrics.http_connections_refused.with_label_values(&[name]);
        let accept_errors = metrics.http_accept_errors.with_label_values(&[name]);
        metrics
            .http_max_connections
            .with_label_values(&[name])
            .set(i64::try_from(limits.max_connections).unwrap_or(i64::MAX));
        let refusal = refusal();
        let connections = TaskTracker::new();
        let cut = CancellationToken::new();
        let mut backoff = Backoff::default();
        tracing::info!(listener = name, %addr, "listening");
        loop {
            let accepted = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = tcp.accept() => accepted,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                // About that one connection (reset before it was accepted): next.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    accept_errors.inc();
                    let pause = backoff.failed();
                    if backoff.failures() == 1 {
                        tracing::error!(
                            listener = name,
                            error = %e,
                            "accepting connections fails; pausing 5 ms doubling to 1 s until it works again"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            let failures = backoff.succeeded();
            if failures > 0 {
                tracing::warn!(listener = name, failures, "accepting connections again");
            }
            // A response written in two pieces (head, then body) must not wait for the
            // client's delayed ACK.
            if stream.set_nodelay(true).is_err() {
                continue;
            }
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                refused.inc();
                connections.spawn(refuse(stream, refusal.clone()));
                continue;
            };
            let connection = Connection {
                local: stream.local_addr().unwrap_or(addr),
                remote,
                io: ClientIo {
                    read_first: Bytes::new(),
                    stream,
                    _slot: Slot::new(permit, open.clone()),
                },
                limits,
                stop: stop.clone(),
            };
            let serving = connection.serve(Arc::clone(&endpoint));
            let cut = cut.clone();
            connections.spawn(async move {
                tokio::select! {
                    () = serving => {}
                    () = cut.cancelled() => {}
                }
            });
        }
        drop(tcp);
        connections.close();
        if tokio::time::timeout(grace, connections.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                listener = name,
                open = connections.len(),
                "connections still busy after the grace period; closing them"
            );
            cut.cancel();
            connections.wait().await;
        }
        tracing::info!(listener = name, "stopped");
    }
}

/// Errors `accept` reports about the one connection it was taking (the client gave
/// up first): not a reason to pause.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The pause after each failed accept in a row: 5 ms, doubling up to 1 s.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    /// One more failure; how long to pause before the next accept.
    fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let doublings = (self.failures - 1).min(16);
        Self::FIRST.saturating_mul(1 << doublings).min(Self::MAX)
    }

    fn failures(&self) -> u32 {
        self.failures
    }

    /// An accept worked: the streak of failures it ends (0 if none).
    fn succeeded(&mut self) -> u32 {
        std::mem::take(&mut self.failures)
    }
}

/// The answer to one connection too many: a canned `503` problem.
fn refusal() -> Bytes {
    let problem = ApiError::new(
        ErrorCode::ServiceUnavailable,
        "too many connections; retry in a second",
    )
    .into_problem();
    let body = poem_openapi::types::ToJSON::to_json_string(&problem);
    Bytes::from(format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/problem+json\r\n\
         content-length: {}\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         \r\n\
         {body}",
        body.len()
    ))
}

/// Writes the refusal at once (without reading the request, which a slow client
/// could make last), then closes. Until the client closes too (at most
/// [`REFUSAL_LINGER`]), what it sends is read and dropped: closing a socket with
/// unread input resets the connection, and the client could lose the answer.
async fn refuse(mut stream: TcpStream, refusal: Bytes) {
    let answered = async {
        stream.write_all(&refusal).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES {
            match stream.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<_, io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, answered).await;
}

/// One of the listener's connection slots, held as long as the socket is open.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: IntGauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            open,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A client's socket, holding its slot: hyper hands it to the WebSocket on an
/// upgrade, so the slot stays taken until the socket itself is closed.
#[derive(Debug)]
struct ClientIo {
    /// Read while telling HTTP/1 from HTTP/2, given to hyper first.
    read_first: Bytes,
    stream: TcpStream,
    _slot: Slot,
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read_first.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.read_first.len().min(buf.remaining());
        buf.put_slice(&this.read_first[..n]);
        this.read_first.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    H1,
    H2,
}

/// Reads until the bytes stop matching the HTTP/2 preface (HTTP/1: almost always
/// the first byte) or match all of it; keeps them in `read_first`. `None` if the
/// client closed first.
async fn sniff(io: &mut ClientIo) -> io::Result<Option<Version>> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut filled = 0;
    while filled < buf.len() {
        let n = io.stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        if buf[..filled] != H2_PREFACE[..filled] {
            io.read_first = Bytes::copy_from_slice(&buf[..filled]);
            return Ok(Some(Version::H1));
        }
    }
    io.read_first = Bytes::copy_from_slice(&buf);
    Ok(Some(Version::H2))
}

/// Requests on one connection: how many are in flight (until their response body
/// has been sent) and whether one ever started.
#[derive(Debug, Clone)]
struct Activity(Arc<watch::Sender<Requests>>);

#[derive(Debug, Clone, Copy, Default)]
struct Requests {
    in_flight: usize,
    started: bool,
}

impl Activity {
    fn new() -> Self {
        Self(Arc::new(watch::Sender::new(Requests::default())))
    }

    fn start(&self) -> InFlight {
        self.0.send_modify(|r| {
            r.in_flight += 1;
            r.started = true;
        });
        InFlight(self.clone())
    }

    /// Resolves at `deadline` if no request has started by then; never otherwise.
    async fn no_request_by(&self, deadline: Instant) {
        let mut requests = self.0.subscribe();
        if tokio::time::timeout_at(deadline, requests.wait_for(|r| r.started))
            .await
            .is_ok()
        {
            std::future::pending::<()>().await;
        }
    }

    /// Resolves once no request has been in flight for `timeout`, counting from
    /// `opened` for the first.
    async fn idle_for(&self, timeout: Duration, opened: Instant) {
        let mut requests = self.0.subscribe();
        let mut idle_since = opened;
        loop {
            let in_flight = requests.borrow_and_update().in_flight;
            if in_flight == 0 {
                tokio::select! {
                    () = tokio::time::sleep_until(idle_since + timeout) => return,
                    _ = requests.changed() => {}
                }
            } else {
                let _ = requests.changed().await;
            }
            idle_since = Instant::now();
        }
    }
}

/// A request in flight; carried by its response body, so it ends when hyper has
/// sent (or dropped) the body.
#[derive(Debug)]
struct InFlight(Activity);

impl Drop for InFlight {
    fn drop(&mut self) {
        (self.0).0.send_modify(|r| r.in_flight -= 1);
    }
}

/// poem's response body, ending its request's [`InFlight`] when dropped.
struct TrackedBody {
    body: BoxBody<Bytes, io::Error>,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// An accepted connection, holding its slot.
struct Connection {
    local: SocketAddr,
    remote: SocketAddr,
    io: ClientIo,
    limits: Limits,
    stop: CancellationToken,
}

impl Connection {
    async fn serve<E: Endpoint + 'static>(mut self, endpoint: Arc<E>) {
        let opened = Instant::now();
        let header_deadline = opened + self.limits.header_timeout;
        let version = tokio::select! {
            sniffed = tokio::time::timeout_at(header_deadline, sniff(&mut self.io)) => sniffed,
            () = self.stop.cancelled() => return,
        };
        let Ok(Ok(Some(version))) = version else {
            return;
        };
        let activity = Activity::new();
        let service = {
            let activity = activity.clone();
            let local = LocalAddr(poem::Addr::SocketAddr(self.local));
            let remote = RemoteAddr(poem::Addr::SocketAddr(self.remote));
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let in_flight = activity.start();
                let req = poem::Request::from((req, local.clone(), remote.clone(), Scheme::HTTP));
                let endpoint = Arc::clone(&endpoint);
                async move {
                    let resp: hyper::Response<BoxBody<Bytes, io::Error>> =
                        endpoint.get_response(req).await.into();
                    Ok::<_, Infallible>(resp.map(|body| TrackedBody {
                        body,
                        _in_flight: in_flight,
                    }))
                }
            })
        };
        let io = TokioIo::new(self.io);
        match version {
            Version::H1 => {
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(self.limits.header_timeout)
                    .keep_alive(self.limits.keep_alive)
                    .serve_connection(io, service)
                    .with_upgrades();
                let mut conn = std::pin::pin!(conn);
                // hyper's header timer starts when it first reads, after the sniff:
                // the first head must also arrive within the timeout of connecting.
                tokio::select! {
                    _ = conn.as_mut() => return,
                    () = activity.no_request_by(header_deadline) => return,
                    () = self.stop.cancelled() => {}
                }
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            Version::H2 => {
                let conn = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .max_concurrent_streams(H2_MAX_STREAMS)
                    .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
                    .max_header_list_size(H2_MAX_HEADER_LIST)
                    .serve_connection(io, service);
                let mut conn = std::pin::pin!(conn);
                // HTTP/2 has no header timer in hyper: the same limit, as idleness.
                let idle = tokio::select! {
                    _ = conn.as_mut() => return,
                    () = activity.idle_for(self.limits.header_timeout, opened) => true,
                    () = self.stop.cancelled() => false,
                };
                // GOAWAY, then the requests in flight finish. Idle, there are none:
                // a client that does not read the GOAWAY gets no longer than a head.
                conn.as_mut().graceful_shutdown();
                if idle {
                    let _ = tokio::time::timeout(self.limits.header_timeout, conn).await;
                } else {
                    let _ = conn.await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_pause_5ms_doubling_to_1s_and_a_success_resets() {
        let mut backoff = Backoff::default();
        let pauses: Vec<u128> = (0..10).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        for _ in 0..100 {
            assert_eq!(backoff.failed(), Duration::from_secs(1));
        }
        assert_eq!(backoff.succeeded(), 110, "the streak it ends");
        assert_eq!(backoff.succeeded(), 0);
        assert_eq!(backoff.failed(), Duration::from_millis(5));
    }

    #[test]
    fn the_refusal_is_a_complete_503_problem_that_closes() {
        let refusal = refusal();
        let text = std::str::from_utf8(&refusal).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains("\r\ncontent-type: application/problem+json\r\n"));
        assert!(head.contains("\r\nretry-after: 1\r\n"));
        assert!(head.ends_with("\r\nconnection: close"));
        assert!(head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())));
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["code"], "SERVICE_UNAVAILABLE");
        assert_eq!(problem["status"], 503);
        assert_eq!(problem["detail"], "too many connections; retry in a second");
    }

    #[test]
    fn only_a_connection_s_own_failures_are_skipped_without_a_pause() {
        assert!(is_connection_error(
            &io::ErrorKind::ConnectionAborted.into()
        ));
        // EMFILE, ENFILE, ENOBUFS, ENOMEM.
        for errno in [24, 23, 105, 12] {
            assert!(!is_connection_error(&io::Error::from_raw_os_error(errno)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_http2_connection_is_idle_only_with_no_request_in_flight() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let opened = Instant::now();
        let idle = activity.idle_for(timeout, opened);
        let mut idle = std::pin::pin!(idle);
        let request = activity.start();
        // A request (its response body unsent) for longer than the timeout.
        assert!(
            tokio::time::timeout(timeout * 3, idle.as_mut())
                .await
                .is_err()
        );
        drop(request);
        let ended = Instant::now();
        idle.await;
        assert_eq!(
            Instant::now() - ended,
            timeout,
            "counted from the end of the last"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_head_is_due_within_the_timeout_of_connecting() {
        let activity = Activity::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        activity.no_request_by(deadline).await;
        assert_eq!(Instant::now(), deadline);

        let activity = Activity::new();
        let _request = activity.start();
        let late = activity.no_request_by(Instant::now() + Duration::from_secs(10));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), late)
                .await
                .is_err(),
            "a request started: never"
        );
    }
}
