//! What the waiting room's sockets need: where their tokens stand, keeping
//! connected waiters in line, and hearing what every instance's admission ticks did.

use std::time::Duration;

use anyhow::Context as _;
use domain::ConcertId;
use domain::queue::AdmissionPolicy;
use futures::StreamExt as _;
use redis::aio::{PubSubSink, PubSubStream};

use super::Services;
use crate::redis::queue;
pub use crate::redis::queue::{LineEnd, QueueEvent, Standing};

/// How often a subscription pings Redis, so a silent outage (no reset, no answer)
/// is noticed too.
const LIVENESS_EVERY: Duration = Duration::from_secs(5);

/// Where each of `secrets` (waiting in `concert`'s line) stands, in their order:
/// [`Standing::Waiting`] or [`Standing::PreQueued`], or `None` if it is no longer
/// waiting.
pub async fn positions(
    svc: &Services,
    concert: ConcertId,
    secrets: &[String],
    policy: &AdmissionPolicy,
) -> anyhow::Result<Vec<Option<Standing>>> {
    Ok(queue::positions(&svc.redis, &svc.keys, concert, secrets, policy).await?)
}

/// Where each of `secrets` (tokens of `concert`, in any state) stands, in their
/// order. Asking does not count as being seen; a failure is an error, never
/// [`Standing::Unknown`].
pub async fn standings(
    svc: &Services,
    concert: ConcertId,
    secrets: &[String],
    policy: &AdmissionPolicy,
) -> anyhow::Result<Vec<Standing>> {
    Ok(queue::standings(&svc.redis, &svc.keys, concert, secrets, policy).await?)
}

/// How many of `secrets` (tokens of `concert`) Redis still has a record of: fewer
/// than asked means it lost some, and [`standings`] tells which.
pub async fn known(
    svc: &Services,
    concert: ConcertId,
    secrets: &[String],
) -> anyhow::Result<usize> {
    Ok(queue::known(&svc.redis, &svc.keys, concert, secrets).await?)
}

/// Marks `secrets` (their holders are connected) as seen now, so they keep their
/// places however long they wait.
pub async fn seen(svc: &Services, concert: ConcertId, secrets: &[String]) -> anyhow::Result<()> {
    Ok(queue::seen(&svc.redis, &svc.keys, concert, secrets).await?)
}

/// A subscription to what every instance announces about its lines, on a Redis
/// connection of its own.
pub struct QueueEvents {
    sink: PubSubSink,
    messages: PubSubStream,
    liveness: tokio::time::Interval,
    timeout: Duration,
}

impl std::fmt::Debug for QueueEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueEvents")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Subscribes to the waiting-room events, within the Redis timeout.
pub async fn subscribe(svc: &Services) -> anyhow::Result<QueueEvents> {
    let timeout = svc.settings.redis_timeout();
    let client = crate::redis::client(&svc.settings)?;
    let channel = svc.keys.queue_events();
    let (sink, messages) = tokio::time::timeout(timeout, async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(&channel).await?;
        anyhow::Ok(pubsub.split())
    })
    .await
    .context("subscribing timed out")??;
    let mut liveness = tokio::time::interval(LIVENESS_EVERY);
    liveness.reset();
    Ok(QueueEvents {
        sink,
        messages,
        liveness,
        timeout,
    })
}

impl QueueEvents {
    /// The next event; `None` once Redis closed the subscription, an error once it
    /// stopped answering. Unreadable events are logged and skipped.
    pub async fn next(&mut self) -> anyhow::Result<Option<QueueEvent>> {
        loop {
            tokio::select! {
                message = self.messages.next() => {
                    let Some(message) = message else { return Ok(None) };
                    let Ok(payload) = message.get_payload::<String>() else {
                        continue;
                    };
                    match serde_json::from_str::<QueueEvent>(&payload) {
                        Ok(event) => return Ok(Some(event)),
                        Err(e) => tracing::warn!(error = %e, "unreadable queue event"),
                    }
                }
                _ = self.liveness.tick() => {
                    tokio::time::timeout(self.timeout, self.sink.ping::<redis::Value>())
                        .await
                        .context("Redis did not answer a ping in time")??;
                }
            }
        }
    }
}
