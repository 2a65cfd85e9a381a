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
//! Messages (JSON text frames, server to client):
//! - `{"type":"position","position":12,"peopleAhead":11,"etaSeconds":6}`
//! - `{"type":"admitted","activeUntil":"2026-11-24T21:58:57Z"}`
//! - `{"type":"expired"}`
//!
//! Close codes: 4401 unknown token, 4410 token expired or ended, 1008 the client
//! sent too much, 1013 a dependency is down (reconnect later), 1012 the server is
//! restarting (reconnect at once: another instance takes the socket).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use domain::token::Grant;
use domain::{ConcertId, TokenError, TokenState};
use futures::{SinkExt as _, StreamExt as _};
use infra::Services;
use infra::redis::queue::{self, QueueEvent};
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
/// A client may send this many messages per [`FLOOD_WINDOW`] (it needs none).
const FLOOD_LIMIT: u32 = 20;
const FLOOD_WINDOW: Duration = Duration::from_secs(10);

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
}

/// What the hub hands a socket.
#[derive(Debug, Clone)]
enum Push {
    Send(ServerMessage),
    /// Admitted: ACTIVE until then.
    Admitted(Option<DateTime<Utc>>),
    /// The token ended (left, paid).
    Ended,
    /// The token left the line for a reason the hub did not hear: ask Redis.
    Recheck,
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

    /// Registers a socket; `position` is `None` for one already admitted.
    fn join(
        &self,
        concert: ConcertId,
        secret: &str,
        position: Option<u64>,
    ) -> (u64, mpsc::Receiver<Push>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(4);
        if let Ok(mut rooms) = self.rooms.lock() {
            let waiter = Waiter {
                secret: secret.to_owned(),
                tx,
                position,
                admitted: position.is_none(),
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
        let active_until = event.active_until.and_then(DateTime::from_timestamp_millis);
        if let Ok(mut rooms) = self.rooms.lock()
            && let Some(room) = rooms.get_mut(&event.concert)
        {
            room.waiters.retain(|_, w| {
                if event.ended.contains(&w.secret) {
                    deliver(&w.tx, Push::Ended);
                    return false;
                }
                if !w.admitted && event.admitted.contains(&w.secret) {
                    w.admitted = true;
                    deliver(&w.tx, Push::Admitted(active_until));
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

    /// Asks Redis where every local waiter of `concert` stands, in one round trip,
    /// and tells those whose place changed.
    async fn refresh(&self, concert: ConcertId) {
        let (ids, secrets): (Vec<u64>, Vec<String>) = match self.rooms.lock() {
            Ok(rooms) => rooms
                .get(&concert)
                .map(|room| {
                    room.waiters
                        .iter()
                        .filter(|(_, w)| !w.admitted)
                        .map(|(id, w)| (*id, w.secret.clone()))
                        .unzip()
                })
                .unwrap_or_default(),
            Err(_) => return,
        };
        if ids.is_empty() {
            return;
        }
        let policy = self.svc.settings.admission_policy();
        let standings =
            match queue::positions(&self.svc.redis, &self.svc.keys, concert, &secrets, &policy)
                .await
            {
                Ok(standings) => standings,
                Err(e) => {
                    tracing::warn!(error = %e, "could not refresh queue positions");
                    return;
                }
            };
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        let Some(room) = rooms.get_mut(&concert) else {
            return;
        };
        for (id, (position, eta_seconds)) in ids.into_iter().zip(standings) {
            let Some(waiter) = room.waiters.get_mut(&id) else {
                continue;
            };
            match position {
                Some(p) if waiter.position != Some(p) => {
                    waiter.position = Some(p);
                    deliver(&waiter.tx, Push::Send(position_message(p, eta_seconds)));
                }
                Some(_) => {}
                None => deliver(&waiter.tx, Push::Recheck),
            }
        }
    }

    /// Follows the waiting-room events until `shutdown`, reconnecting as needed.
    pub async fn listen(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let channel = self.svc.keys.queue_events();
        let mut backoff = Duration::from_millis(100);
        loop {
            let session = async {
                let client = infra::redis::client(&self.svc.settings)?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                backoff = Duration::from_millis(100);
                // Whatever happened while we were not listening, find out now.
                let concerts: Vec<ConcertId> = self
                    .rooms
                    .lock()
                    .map(|r| r.keys().copied().collect())
                    .unwrap_or_default();
                for concert in concerts {
                    self.schedule_refresh(concert);
                }
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<QueueEvent>(&payload) {
                        Ok(event) => self.handle(&event),
                        Err(e) => tracing::warn!(error = %e, "unreadable queue event"),
                    }
                }
                anyhow::Ok(())
            };
            tokio::select! {
                () = &mut shutdown => return,
                ended = session => {
                    if let Err(e) = ended {
                        tracing::warn!(error = format!("{e:#}"), "queue events subscription lost");
                    }
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    /// Marks every connected waiter seen, often enough that the grace period never
    /// runs out on someone with an open socket.
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
            let rooms: Vec<(ConcertId, Vec<String>)> = match self.rooms.lock() {
                Ok(rooms) => rooms
                    .iter()
                    .map(|(c, room)| {
                        let waiting = room.waiters.values().filter(|w| !w.admitted);
                        (*c, waiting.map(|w| w.secret.clone()).collect())
                    })
                    .collect(),
                Err(_) => continue,
            };
            for (concert, secrets) in rooms {
                if let Err(e) =
                    queue::seen(&self.svc.redis, &self.svc.keys, concert, &secrets).await
                {
                    tracing::warn!(error = %e, "could not mark connected waiters seen");
                }
            }
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
        Err(TokenError::Invalid) => return close(&mut sink, 4401, "unknown token").await,
        Err(TokenError::Unavailable(_)) => return close(&mut sink, 1013, "try again later").await,
    };
    let concert = token.concert();
    let mut active_until = None;
    if !tell(&mut sink, &grant, &mut active_until).await {
        return;
    }
    let (id, mut pushes) = hub.join(concert, token.secret(), grant.position);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    let mut flood = (tokio::time::Instant::now(), 0u32);
    loop {
        let turn_ends = async {
            match active_until.and_then(|t: DateTime<Utc>| (t - Utc::now()).to_std().ok()) {
                Some(left) => tokio::time::sleep(left).await,
                None if active_until.is_some() => {}
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            push = pushes.recv() => match push {
                Some(Push::Send(message)) => {
                    if !send(&mut sink, &message).await { break }
                }
                Some(Push::Admitted(until)) => {
                    active_until = until.or_else(|| Some(Utc::now()));
                    if !send(&mut sink, &ServerMessage::Admitted { active_until: until }).await { break }
                }
                Some(Push::Ended) | None => {
                    send(&mut sink, &ServerMessage::Expired).await;
                    close(&mut sink, 4410, "token ended").await;
                    break;
                }
                Some(Push::Recheck) => {
                    let standing = infra::service::queue::authenticate(&hub.svc, &raw_token).await;
                    let open = if let Ok((_, grant)) = &standing {
                        tell(&mut sink, grant, &mut active_until).await
                    } else {
                        close(&mut sink, 1013, "try again later").await;
                        false
                    };
                    if !open { break }
                }
            },
            _ = closing.changed() => {
                close(&mut sink, 1012, RESTARTING).await;
                break;
            }
            () = turn_ends => {
                send(&mut sink, &ServerMessage::Expired).await;
                close(&mut sink, 4410, "token expired").await;
                break;
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Vec::new())).await.is_err() { break }
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
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

/// Tells the socket where `grant` stands; `false` when that ends the conversation.
async fn tell(sink: &mut Sink, grant: &Grant, active_until: &mut Option<DateTime<Utc>>) -> bool {
    match grant.state {
        TokenState::Waiting => {
            let message = position_message(grant.position.unwrap_or(1), grant.eta_seconds);
            send(sink, &message).await
        }
        TokenState::Active => {
            *active_until = grant.active_until.or_else(|| Some(Utc::now()));
            send(
                sink,
                &ServerMessage::Admitted {
                    active_until: grant.active_until,
                },
            )
            .await
        }
        TokenState::Expired => {
            send(sink, &ServerMessage::Expired).await;
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
}
