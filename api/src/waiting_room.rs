//! The waiting room's live side: `GET /v1/queue/ws?token=` pushes a waiter's place
//! in line, `admitted` the moment they are let in and `expired` at the end.
//!
//! Each instance keeps its own sockets in a [`Hub`]. Admission ticks (on any
//! instance) publish what moved over Redis pub/sub; every instance's hub hears it
//! and tells its own sockets: `admitted` at once, new positions in one pipelined
//! Redis round trip per concert, at most four times a second. No socket polls
//! Redis. Connected waiters are marked seen in batches, so they never count as
//! having abandoned the line.
//!
//! Redis may lose the line (a restart without persistence, a flush). Whenever the
//! hub's subscription is re-established it asks where every local socket stands,
//! admitted ones too, in one batch per concert; the periodic "seen" round also
//! counts the tokens Redis still knows. A token Redis has forgotten gets `expired`
//! and close 4401, so the page joins again. While Redis is out of reach, sockets
//! wait; after [`OUTAGE_GRACE`] they are closed with 1013 (reconnect later).
//!
//! Messages (JSON text frames, server to client):
//! - `{"type":"prequeue","opensAt":"2026-11-29T20:00:00Z"}` in the pre-queue of a
//!   sale not yet open; at the opening every pre-queued socket gets its position
//! - `{"type":"position","position":12,"peopleAhead":11,"etaSeconds":6}`
//! - `{"type":"admitted","activeUntil":"2026-11-24T21:58:57Z"}`
//! - `{"type":"expired"}`
//! - `{"type":"closed"}`: the operator closed the line; `{"type":"soldOut"}`: every
//!   seat is sold. Either ends the wait (close 4410); joining again is refused.
//!
//! Close codes: 4401 unknown token (never issued, or forgotten by a Redis that
//! lost its data: join again), 4410 token expired or ended, 1008 the client sent
//! too much (too many messages, or one over 4 KiB), 1002 a broken frame, 1013 a
//! dependency is down (reconnect later), 1012 the server is restarting (reconnect
//! at once: another instance takes the socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use domain::SaleState;
use domain::token::Grant;
use domain::{ConcertId, TokenError, TokenState};
use futures::{SinkExt as _, StreamExt as _};
use infra::Services;
use infra::service::sale::{FanView, Sale};
use infra::service::waiting_room::{self, LineEnd, QueueEvent, Standing};
use poem::web::websocket::{CloseCode, Message, WebSocket, WebSocketStream};
use poem::web::{Data, Query};
use poem::{IntoResponse, handler};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Position updates for one concert are at least this far apart.
const REFRESH_GAP: Duration = Duration::from_millis(250);
/// Pings keep proxies from closing an idle socket.
const PING_EVERY: Duration = Duration::from_secs(20);
/// The reason sent with close code 1012 when the server stops.
const RESTARTING: &str = "server restarting; reconnect";
/// The reason sent with close code 4401.
const UNKNOWN: &str = "unknown token; join again";
/// The reason sent with close code 1013.
const UNAVAILABLE: &str = "try again later";
/// A client may send this many messages per [`FLOOD_WINDOW`] (it needs none).
const FLOOD_LIMIT: u32 = 20;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// How long Redis may stay out of reach before open sockets are closed with 1013:
/// a restart quicker than this goes unnoticed by fans whose places survived it.
const OUTAGE_GRACE: Duration = Duration::from_secs(5);
/// After refusing an oversized or broken frame, how long the connection is kept
/// before it is dropped: dropping it with unread bytes makes the kernel reset it,
/// which can destroy the close frame before the client reads it.
const LINGER: Duration = Duration::from_millis(500);

/// What a socket is told, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    #[serde(rename_all = "camelCase")]
    Position {
        position: u64,
        people_ahead: u64,
        eta_seconds: Option<u64>,
    },
    #[serde(rename_all = "camelCase")]
    Admitted {
        active_until: Option<DateTime<Utc>>,
    },
    Expired,
    #[serde(rename_all = "camelCase")]
    Prequeue {
        opens_at: Option<DateTime<Utc>>,
    },
    Closed,
    SoldOut,
}

/// What the hub hands a socket.
#[derive(Debug, Clone)]
enum Push {
    Send(ServerMessage),
    /// Admitted: ACTIVE until then, that is for `left` more (by Redis's clock).
    Admitted {
        until: Option<DateTime<Utc>>,
        left: Option<Duration>,
    },
    /// The token ended (left, paid, turn over, dropped for absence).
    Ended,
    /// Redis no longer knows the token (it lost its data): `expired`, then 4401 so
    /// the client joins again.
    Unknown,
    /// Redis has been out of reach for [`OUTAGE_GRACE`]: 1013, reconnect later.
    Unavailable,
    /// The sale ended (closed, sold out) and the line with it.
    LineEnded(LineEnd),
}

#[derive(Debug)]
struct Waiter {
    secret: String,
    tx: mpsc::Sender<Push>,
    position: Option<u64>,
    /// Let in: no more positions, but still told if the token ends.
    admitted: bool,
}

#[derive(Debug, Default)]
struct Room {
    waiters: HashMap<u64, Waiter>,
    refreshing: bool,
    dirty: bool,
}

/// This instance's waiting sockets, by concert.
#[derive(Debug)]
pub struct Hub {
    svc: Services,
    rooms: Mutex<HashMap<ConcertId, Room>>,
    next_id: AtomicU64,
    /// Set when the server stops: every socket closes with 1012.
    closing: watch::Sender<bool>,
}

impl Hub {
    pub fn new(svc: Services) -> Arc<Self> {
        Arc::new(Self {
            svc,
            rooms: Mutex::default(),
            next_id: AtomicU64::new(1),
            closing: watch::channel(false).0,
        })
    }

    /// Closes every socket, now and to come, with 1012 ("service restart"): clients
    /// reconnect, to another instance, and resume at their place, which is in Redis.
    pub fn close_all(&self) {
        self.closing.send_replace(true);
    }

    /// Waits (at most `grace`) until every socket has sent its close frame.
    pub async fn until_closed(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.svc.metrics.websockets_open.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Open waiting sockets (for metrics and tests).
    pub fn waiting(&self) -> usize {
        self.rooms
            .lock()
            .map_or(0, |rooms| rooms.values().map(|r| r.waiters.len()).sum())
    }

    /// Registers a socket, with the place it is about to be told (if waiting).
    fn join(
        &self,
        concert: ConcertId,
        secret: &str,
        position: Option<u64>,
        admitted: bool,
    ) -> (u64, mpsc::Receiver<Push>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        if let Ok(mut rooms) = self.rooms.lock() {
            let waiter = Waiter {
                secret: secret.to_owned(),
                tx,
                position,
                admitted,
            };
            rooms.entry(concert).or_default().waiters.insert(id, waiter);
        }
        (id, rx)
    }

    fn leave(&self, concert: ConcertId, id: u64) {
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(room) = rooms.get_mut(&concert)
        {
            room.waiters.remove(&id);
            if room.waiters.is_empty() && !room.refreshing {
                rooms.remove(&concert);
            }
        }
    }

    /// What another instance (or this one) announced.
    fn handle(self: &Arc<Self>, event: &QueueEvent) {
        if event.line_ended == Some(LineEnd::SoldOut) {
            infra::service::sale::sold_out_heard(&self.svc, event.concert);
        }
        let until = event.active_until.and_then(DateTime::from_timestamp_millis);
        let left = event.active_for_ms.map(Duration::from_millis);
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(room) = rooms.get_mut(&event.concert)
        {
            room.waiters.retain(|_, w| {
                // Closing sends the line home; selling out everyone (nothing is
                // left for an admitted fan either).
                if let Some(end) = event.line_ended
                    && (!w.admitted || end == LineEnd::SoldOut)
                {
                    deliver(&w.tx, Push::LineEnded(end));
                    return false;
                }
                if event.ended.contains(&w.secret) {
                    deliver(&w.tx, Push::Ended);
                    return false;
                }
                if !w.admitted && event.admitted.contains(&w.secret) {
                    w.admitted = true;
                    deliver(&w.tx, Push::Admitted { until, left });
                }
                true
            });
        }
        if event.moved {
            self.schedule_refresh(event.concert);
        }
    }

    fn schedule_refresh(self: &Arc<Self>, concert: ConcertId) {
        {
            let Ok(mut rooms) = self.rooms.lock() else {
                return;
            };
            let Some(room) = rooms.get_mut(&concert) else {
                return;
            };
            if room.refreshing {
                room.dirty = true;
                return;
            }
            room.refreshing = true;
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                hub.refresh(concert).await;
                tokio::time::sleep(REFRESH_GAP).await;
                let Ok(mut rooms) = hub.rooms.lock() else {
                    return;
                };
                let Some(room) = rooms.get_mut(&concert) else {
                    return;
                };
                if room.dirty {
                    room.dirty = false;
                    continue;
                }
                room.refreshing = false;
                if room.waiters.is_empty() {
                    rooms.remove(&concert);
                }
                return;
            }
        });
    }

    /// The local sockets of `concert`: only those still waiting, unless `all`.
    fn sockets(&self, concert: ConcertId, all: bool) -> (Vec<u64>, Vec<String>) {
        self.rooms
            .lock()
            .ok()
            .and_then(|rooms| {
                rooms.get(&concert).map(|room| {
                    room.waiters
                        .iter()
                        .filter(|(_, w)| all || !w.admitted)
                        .map(|(id, w)| (*id, w.secret.clone()))
                        .unzip()
                })
            })
            .unwrap_or_default()
    }

    /// Asks Redis where every local waiter of `concert` stands, in one round trip,
    /// and tells those whose place changed. Those no longer in line are looked up
    /// together in one more.
    async fn refresh(&self, concert: ConcertId) {
        let (ids, secrets) = self.sockets(concert, false);
        if ids.is_empty() {
            return;
        }
        let Some(policy) = self.policy(concert).await else {
            return;
        };
        let positions = match waiting_room::positions(&self.svc, concert, &secrets, &policy).await {
            Ok(positions) => positions,
            Err(e) => {
                tracing::warn!(error = %e, "could not refresh queue positions");
                return;
            }
        };
        let (mut waiting, mut standings) = (Vec::new(), Vec::new());
        let (mut gone, mut gone_secrets) = (Vec::new(), Vec::new());
        for ((id, secret), standing) in ids.into_iter().zip(secrets).zip(positions) {
            if let Some(standing) = standing {
                waiting.push(id);
                standings.push(standing);
            } else {
                gone.push(id);
                gone_secrets.push(secret);
            }
        }
        self.apply(concert, &waiting, &standings);
        if gone.is_empty() {
            return;
        }
        // Out of the line for a reason the hub did not hear: admitted or ended while
        // it was not listening, dropped for absence, or forgotten by Redis.
        match waiting_room::standings(&self.svc, concert, &gone_secrets, &policy).await {
            Ok(standings) => self.apply(concert, &gone, &standings),
            Err(e) => tracing::warn!(error = %e, "could not look up tokens that left the line"),
        }
    }

    /// The admission policy of `concert`'s sale (for ETAs); `None`, logged, when it
    /// cannot be read.
    async fn policy(&self, concert: ConcertId) -> Option<domain::queue::AdmissionPolicy> {
        infra::service::queue::policy(&self.svc, concert)
            .await
            .inspect_err(|e| tracing::warn!(error = format!("{e:#}"), "could not read the sale"))
            .ok()
    }

    /// Tells the sockets `ids` of `concert` what Redis says of their tokens
    /// (`standings`, in the same order); those whose token is over leave the room.
    fn apply(&self, concert: ConcertId, ids: &[u64], standings: &[Standing]) {
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        let Some(room) = rooms.get_mut(&concert) else {
            return;
        };
        for (id, standing) in ids.iter().zip(standings) {
            let Some(waiter) = room.waiters.get_mut(id) else {
                continue;
            };
            let last_word = match *standing {
                Standing::Waiting {
                    position,
                    eta_seconds,
                } => {
                    if !waiter.admitted && waiter.position != Some(position) {
                        waiter.position = Some(position);
                        let message = position_message(position, eta_seconds);
                        deliver(&waiter.tx, Push::Send(message));
                    }
                    continue;
                }
                Standing::PreQueued => continue,
                Standing::Active { until, left } => {
                    if !waiter.admitted {
                        waiter.admitted = true;
                        let left = Some(left);
                        deliver(&waiter.tx, Push::Admitted { until, left });
                    }
                    continue;
                }
                Standing::Expired => Push::Ended,
                Standing::Unknown => Push::Unknown,
            };
            if let Some(waiter) = room.waiters.remove(id) {
                deliver(&waiter.tx, last_word);
            }
        }
        if room.waiters.is_empty() && !room.refreshing {
            rooms.remove(&concert);
        }
    }

    /// Asks Redis where every local socket of `concert` stands, admitted ones too,
    /// and tells each what changed.
    async fn sweep_concert(&self, concert: ConcertId) -> anyhow::Result<()> {
        let (ids, secrets) = self.sockets(concert, true);
        if ids.is_empty() {
            return Ok(());
        }
        let Some(policy) = self.policy(concert).await else {
            return Ok(());
        };
        let standings = waiting_room::standings(&self.svc, concert, &secrets, &policy).await?;
        self.apply(concert, &ids, &standings);
        Ok(())
    }

    /// [`Self::sweep_concert`] for every concert with local sockets.
    async fn sweep(&self) -> anyhow::Result<()> {
        let concerts: Vec<ConcertId> = self
            .rooms
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default();
        for concert in concerts {
            self.sweep_concert(concert).await?;
        }
        Ok(())
    }

    /// Closes every socket with 1013: Redis has been out of reach too long for
    /// their places to be followed. They reconnect later and find out then.
    fn give_up(&self) {
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        for room in rooms.values_mut() {
            for (_, waiter) in room.waiters.drain() {
                deliver(&waiter.tx, Push::Unavailable);
            }
        }
        rooms.retain(|_, room| room.refreshing);
    }

    /// Follows the waiting-room events until `shutdown`, reconnecting as needed.
    /// Each (re)subscription first sweeps every local socket (see the module docs);
    /// Redis out of reach for [`OUTAGE_GRACE`] closes them all with 1013.
    pub async fn listen(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = Duration::from_millis(100);
        // Since when Redis has been out of reach (lost, or found but not yet swept).
        let mut lost_since: Option<tokio::time::Instant> = None;
        loop {
            let session = async {
                let mut events = waiting_room::subscribe(&self.svc).await?;
                // Whatever happened while we were not listening (admissions, ends, or
                // Redis coming back empty), find out now.
                self.sweep().await.context("sweeping the sockets")?;
                lost_since = None;
                backoff = Duration::from_millis(100);
                while let Some(event) = events.next().await? {
                    self.handle(&event);
                }
                anyhow::Ok(())
            };
            tokio::select! {
                () = &mut shutdown => return,
                ended = session => {
                    let reason = ended.err().map_or_else(|| "closed".to_owned(), |e| format!("{e:#}"));
                    tracing::warn!(error = reason, "queue events subscription lost");
                }
            }
            let since = *lost_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() >= OUTAGE_GRACE {
                self.give_up();
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Marks every connected waiter seen, often enough that the grace period never
    /// runs out on someone with an open socket, and notices tokens Redis forgot.
    pub async fn keep_alive(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let grace = Duration::from_secs(self.svc.settings.queue_grace_seconds);
        let every = (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(30));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            let concerts: Vec<ConcertId> = match self.rooms.lock() {
                Ok(rooms) => rooms.keys().copied().collect(),
                Err(_) => continue,
            };
            for concert in concerts {
                self.check_in(concert).await;
            }
        }
    }
}

/// One concert's share of [`Hub::keep_alive`]: its waiters are seen, and if Redis
/// knows fewer of its sockets' tokens than there are sockets (it lost data without
/// dropping the subscription: a flush, an eviction), every socket is looked up.
impl Hub {
    async fn check_in(&self, concert: ConcertId) {
        let (_, waiting) = self.sockets(concert, false);
        if let Err(e) = waiting_room::seen(&self.svc, concert, &waiting).await {
            tracing::warn!(error = %e, "could not mark connected waiters seen");
            return;
        }
        let (_, all) = self.sockets(concert, true);
        match waiting_room::known(&self.svc, concert, &all).await {
            Ok(known) if known < all.len() => {
                if let Err(e) = self.sweep_concert(concert).await {
                    tracing::warn!(error = %e, "could not look up forgotten tokens");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not count known tokens"),
        }
    }
}

fn position_message(position: u64, eta_seconds: Option<u64>) -> ServerMessage {
    ServerMessage::Position {
        position,
        people_ahead: position - 1,
        eta_seconds,
    }
}

/// Hands `push` to a socket without ever blocking the hub. A position update for a
/// socket too slow to take it is dropped (a newer one follows); a final word is
/// handed over by a task of its own.
fn deliver(tx: &mpsc::Sender<Push>, push: Push) {
    match tx.try_send(push) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(push)) => {
            if !matches!(push, Push::Send(_)) {
                let tx = tx.clone();
                tokio::spawn(async move { tx.send(push).await });
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SocketQuery {
    token: String,
}

/// Idle waiting sockets must be cheap: small buffers, tiny messages.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(64 * 1024)
        .max_message_size(Some(4 * 1024))
        .max_frame_size(Some(4 * 1024))
}

/// `GET /v1/queue/ws?token=`
#[handler]
pub async fn queue_socket(
    ws: WebSocket,
    query: Query<SocketQuery>,
    hub: Data<&Arc<Hub>>,
) -> impl IntoResponse {
    let hub = Arc::clone(&hub);
    let token = query.0.token;
    ws.config(socket_config())
        .on_upgrade(move |socket| follow(hub, token, socket))
}

type Sink = futures::stream::SplitSink<WebSocketStream, Message>;

async fn send(sink: &mut Sink, message: &ServerMessage) -> bool {
    match serde_json::to_string(message) {
        Ok(text) => sink.send(Message::Text(text)).await.is_ok(),
        Err(_) => false,
    }
}

async fn close(sink: &mut Sink, code: u16, reason: &str) {
    let _ = sink
        .send(Message::Close(Some((
            CloseCode::from(code),
            reason.to_owned(),
        ))))
        .await;
    let _ = sink.close().await;
}

/// One socket, from the first message to the close frame.
async fn follow(hub: Arc<Hub>, raw_token: String, socket: WebSocketStream) {
    let _open = OpenSocket::count(&hub.svc.metrics.websockets_open);
    let (mut sink, mut incoming) = socket.split();
    let mut closing = hub.closing.subscribe();
    if *closing.borrow_and_update() {
        return close(&mut sink, 1012, RESTARTING).await;
    }
    let (token, grant) = match infra::service::queue::authenticate(&hub.svc, &raw_token).await {
        Ok(found) => found,
        Err(TokenError::Invalid) => return close(&mut sink, 4401, UNKNOWN).await,
        Err(TokenError::Unavailable(_)) => return close(&mut sink, 1013, UNAVAILABLE).await,
    };
    let concert = token.concert();
    let Ok(sale) = infra::service::sale::current(&hub.svc, concert).await else {
        return close(&mut sink, 1013, UNAVAILABLE).await;
    };
    // Registered before the first word, so nothing announced in between is missed.
    let admitted = grant.state != TokenState::Waiting;
    let (id, mut pushes) = hub.join(concert, token.secret(), grant.position, admitted);
    let mut turn_ends = None;
    if !tell(&mut sink, &grant, sale.as_ref(), &mut turn_ends).await {
        hub.leave(concert, id);
        return;
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut flood = (tokio::time::Instant::now(), 0u32);
    loop {
        let turn_over = async {
            match turn_ends {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            push = pushes.recv() => match push {
                Some(Push::Send(message)) => {
                    if !send(&mut sink, &message).await { break }
                }
                Some(Push::Admitted { until, left }) => {
                    turn_ends = Some(deadline(until, left));
                    if !send(&mut sink, &ServerMessage::Admitted { active_until: until }).await { break }
                }
                Some(Push::Ended) | None => {
                    send(&mut sink, &ServerMessage::Expired).await;
                    close(&mut sink, 4410, "token ended").await;
                    break;
                }
                Some(Push::Unknown) => {
                    send(&mut sink, &ServerMessage::Expired).await;
                    close(&mut sink, 4401, UNKNOWN).await;
                    break;
                }
                Some(Push::Unavailable) => {
                    close(&mut sink, 1013, UNAVAILABLE).await;
                    break;
                }
                Some(Push::LineEnded(end)) => {
                    send(&mut sink, &line_ended(end)).await;
                    close(&mut sink, 4410, "the line has ended").await;
                    break;
                }
            },
            _ = closing.changed() => {
                close(&mut sink, 1012, RESTARTING).await;
                break;
            }
            () = turn_over => {
                send(&mut sink, &ServerMessage::Expired).await;
                close(&mut sink, 4410, "token expired").await;
                break;
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new())).await.is_err() { break }
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(e)) => {
                    if let Some((code, reason)) = refusal(&e) {
                        close(&mut sink, code, reason).await;
                        tokio::time::sleep(LINGER).await;
                    }
                    break;
                }
                Some(Ok(_)) => {
                    let now = tokio::time::Instant::now();
                    if now.duration_since(flood.0) > FLOOD_WINDOW {
                        flood = (now, 0);
                    }
                    flood.1 += 1;
                    if flood.1 > FLOOD_LIMIT {
                        close(&mut sink, 1008, "too many messages").await;
                        break;
                    }
                }
            },
        }
    }
    hub.leave(concert, id);
}

/// The close frame owed for an incoming frame that could not be read: 1008 for one
/// over the size limit, 1002 for any other protocol violation; none when the
/// connection itself failed.
fn refusal(e: &std::io::Error) -> Option<(u16, &'static str)> {
    // poem hands tungstenite's own errors on as `Other`, carrying their message.
    if e.kind() != std::io::ErrorKind::Other || e.raw_os_error().is_some() {
        return None;
    }
    if e.to_string().starts_with("Space limit exceeded") {
        Some((1008, "message too big"))
    } else {
        Some((1002, "protocol error"))
    }
}

/// Counts a socket in `boxoffice_websockets_open` for as long as it is followed.
struct OpenSocket(prometheus::IntGauge);

impl OpenSocket {
    fn count(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn line_ended(end: LineEnd) -> ServerMessage {
    match end {
        LineEnd::Closed => ServerMessage::Closed,
        LineEnd::SoldOut => ServerMessage::SoldOut,
    }
}

/// When a turn ends on this instance's monotonic clock: after what Redis said is
/// `left` of it. Only an announcement from an instance of an older version lacks
/// `left`; then this clock measures the time `until`.
fn deadline(until: Option<DateTime<Utc>>, left: Option<Duration>) -> tokio::time::Instant {
    let left = left
        .or_else(|| until.and_then(|t| (t - infra::now()).to_std().ok()))
        .unwrap_or_default();
    tokio::time::Instant::now() + left
}

/// Tells the socket where `grant` stands; `false` when that ends the conversation.
async fn tell(
    sink: &mut Sink,
    grant: &Grant,
    sale: Option<&Sale>,
    turn_ends: &mut Option<tokio::time::Instant>,
) -> bool {
    let ended = sale.and_then(|sale| match sale.fan_view(infra::now()) {
        FanView::SoldOut => Some(LineEnd::SoldOut),
        FanView::State(SaleState::Closed) => Some(LineEnd::Closed),
        FanView::State(_) => None,
    });
    match grant.state {
        TokenState::Waiting if grant.prequeued => {
            let opens_at = sale.and_then(|s| s.settings.opens_at);
            send(sink, &ServerMessage::Prequeue { opens_at }).await
        }
        TokenState::Waiting => {
            let message = position_message(grant.position.unwrap_or(1), grant.eta_seconds);
            send(sink, &message).await
        }
        TokenState::Active => {
            *turn_ends = Some(deadline(grant.active_until, grant.active_for));
            send(
                sink,
                &ServerMessage::Admitted {
                    active_until: grant.active_until,
                },
            )
            .await
        }
        TokenState::Expired => {
            send(sink, &ended.map_or(ServerMessage::Expired, line_ended)).await;
            close(sink, 4410, "token expired").await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_the_documented_shape() {
        let position = serde_json::to_value(position_message(12, Some(6))).unwrap();
        assert_eq!(
            position,
            serde_json::json!({"type": "position", "position": 12, "peopleAhead": 11, "etaSeconds": 6})
        );
        let admitted = ServerMessage::Admitted {
            active_until: DateTime::from_timestamp(1_700_000_000, 0),
        };
        assert_eq!(
            serde_json::to_value(admitted).unwrap(),
            serde_json::json!({"type": "admitted", "activeUntil": "2023-11-14T22:13:20Z"})
        );
        assert_eq!(
            serde_json::to_value(ServerMessage::Expired).unwrap(),
            serde_json::json!({"type": "expired"})
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_with_1008_and_a_dead_connection_with_nothing() {
        use tokio_tungstenite::tungstenite::error::{CapacityError, Error, ProtocolError};
        // As poem hands tungstenite's errors on.
        let as_poem = |e: Error| std::io::Error::other(e.to_string());
        let too_long = Error::Capacity(CapacityError::MessageTooLong {
            size: 1 << 20,
            max_size: 4096,
        });
        assert_eq!(refusal(&as_poem(too_long)), Some((1008, "message too big")));
        let unmasked = Error::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(refusal(&as_poem(unmasked)), Some((1002, "protocol error")));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(refusal(&reset), None);
        assert_eq!(refusal(&std::io::Error::from_raw_os_error(104)), None);
    }
}
