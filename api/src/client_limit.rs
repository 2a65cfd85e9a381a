//! The per-client join limit: at most `join_limit_per_second` joins
//! (`POST /v1/queue/tokens`) per client on average, `join_limit_burst` at once,
//! on this instance. Past it the join is answered `429 RATE_LIMITED` with
//! `Retry-After`, before its body is read or its identity token checked, and counted
//! in `boxoffice_queue_joins_total{result="rate_limited"}`.
//!
//! **Who the client is.** The socket address of the connection ([`RemoteAddr`], set
//! by the HTTP server), an IPv6 one by its /64 (one subscriber's network: a client
//! given a /64 could otherwise take a fresh address for every join). Only when that
//! peer is one of `trusted_proxies` is `X-Forwarded-For` read: walking it from the
//! right over trusted proxies, the first address that is not one is the client. A
//! malformed entry ends the walk at the last hop known good, and a chain of nothing
//! but trusted proxies ends at its leftmost. From any other peer the header is
//! ignored, so a forged one gains nothing, and the left part of a header a proxy
//! passed on (what the client itself wrote) is never reached.
//!
//! **The limiter** is GCRA per client key (the generic cell rate algorithm, as in
//! the `governor` crate): one timestamp per key, the time its bucket is empty again.
//! Keys live in 64 mutex-guarded shards picked by a per-process random hash; each
//! shard drops its expired keys at most once a second when touched, and shrinks
//! its table after a flood. At most 3,584 keys per shard (229,376 in all, under
//! 20 MB) are kept: a new key at a full shard is let through untracked, since a
//! flood of distinct addresses gets each address's burst anyway; memory stays
//! bounded whatever arrives. A check costs two hashes, one uncontended lock and a
//! clock read: well under a microsecond beside a join's tens.
//!
//! [`RemoteAddr`]: poem::web::RemoteAddr

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::BuildHasher as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use infra::Settings;
use infra::metrics::Metrics;
use poem::http::{HeaderValue, Method};
use poem::{Endpoint, IntoResponse as _, Middleware, Request, Response};
use poem_openapi::OperationId;
use prometheus::IntCounter;

use crate::error::ApiError;

/// The one route the limit applies to, and its operation (for the HTTP metrics).
const JOIN_PATH: &str = "/v1/queue/tokens";
const JOIN_OPERATION: &str = "joinQueue";

const SHARDS: usize = 64;
/// Keys a shard keeps at most: what a table of 4,096 buckets holds (7/8), so a
/// full shard never grows past 8,192 buckets (hashbrown resizes only when more
/// than half full, and rehashes in place otherwise).
const KEYS_PER_SHARD: usize = 3_584;
/// How often a shard drops keys whose bucket has emptied (ns).
const SWEEP_EVERY: u64 = 1_000_000_000;
/// How soon a full shard may sweep again for a new key (ns), so a flood of new
/// keys at a full shard costs no sweep per request.
const SWEEP_WHEN_FULL: u64 = 100_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// A setting the join limit cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitSettingsError {
    #[error("BOXOFFICE_TRUSTED_PROXIES: `{entry}` {problem}")]
    Proxy { entry: String, problem: String },
    #[error(
        "BOXOFFICE_JOIN_LIMIT_BURST must be at least 1 while BOXOFFICE_JOIN_LIMIT_PER_SECOND is above 0 (set the rate to 0 to turn the limit off)"
    )]
    Burst,
}

/// Checks the join limit's settings: `serve` refuses to start on an error.
pub fn validate(settings: &Settings) -> Result<(), LimitSettingsError> {
    settings.trusted_proxies.parse::<TrustedProxies>()?;
    if settings.join_limit_per_second > 0 && settings.join_limit_burst == 0 {
        return Err(LimitSettingsError::Burst);
    }
    Ok(())
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

/// One trusted address or range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cidr {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl FromStr for TrustedProxies {
    type Err = LimitSettingsError;

    /// Comma-separated IP addresses and CIDR ranges; blanks between commas are skipped.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(Cidr::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl Cidr {
    fn parse(entry: &str) -> Result<Self, LimitSettingsError> {
        let bad = |problem: String| LimitSettingsError::Proxy {
            entry: entry.to_owned(),
            problem,
        };
        let (addr, prefix) = match entry.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (entry, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            bad("is not an IP address or CIDR range (e.g. 10.0.0.7, 10.0.0.0/8, fd00::/8)".into())
        })?;
        let bits: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| p.bytes().all(|b| b.is_ascii_digit()) && *n <= bits)
                .ok_or_else(|| bad(format!("needs a prefix length from 0 to {bits} after `/`")))?,
        };
        let cidr = match addr {
            IpAddr::V4(v4) => Self::V4 {
                net: u32::from(v4),
                mask: u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0),
            },
            // An IPv4-mapped range (`::ffff:10.0.0.0/104`) is the IPv4 range it maps,
            // as peers are compared in their canonical form.
            IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => Self::V4 {
                net: u32::from(v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED)),
                mask: u32::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0),
            },
            IpAddr::V6(v6) => Self::V6 {
                net: u128::from(v6),
                mask: u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0),
            },
        };
        let (host_bits, network) = match cidr {
            Cidr::V4 { net, mask } => (net & !mask != 0, IpAddr::from(Ipv4Addr::from(net & mask))),
            Cidr::V6 { net, mask } => (net & !mask != 0, IpAddr::from(Ipv6Addr::from(net & mask))),
        };
        if host_bits {
            let bare = entry.split_once('/').map_or(entry, |(addr, _)| addr);
            return Err(bad(format!(
                "has bits set past its prefix: did you mean {network}/{prefix}, or {bare} alone?"
            )));
        }
        Ok(cidr)
    }

    fn contains(self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::V4 { net, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == net,
            (Self::V6 { net, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == net,
            _ => false,
        }
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` (canonical: an IPv4-mapped IPv6 address as IPv4) is trusted.
    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|cidr| cidr.contains(ip))
    }

    /// The client behind a request from `peer` carrying these `X-Forwarded-For`
    /// values (in the order received). See the module's rule.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl DoubleEndedIterator<Item = &'a HeaderValue>,
    ) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        for value in forwarded.rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for entry in value.rsplit(',') {
                let Some(hop) = parse_hop(entry.trim()) else {
                    return client;
                };
                client = hop;
                if !self.contains(hop) {
                    return hop;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: `203.0.113.7`, `203.0.113.7:5123`, `2001:db8::7`,
/// `[2001:db8::7]` or `[2001:db8::7]:5123`; anything else is malformed.
fn parse_hop(entry: &str) -> Option<IpAddr> {
    let ip = entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .or_else(|| {
            let bracketed = entry.strip_prefix('[')?.strip_suffix(']')?;
            bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The key a client is limited by: its IPv4 address, or its IPv6 /64.
fn client_key(ip: IpAddr) -> u128 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6) & !u128::from(u64::MAX),
    }
}

/// GCRA per key, in nanoseconds since the limiter was made.
#[derive(Debug)]
pub struct KeyedLimiter {
    /// Time between two joins at the steady rate.
    interval: u64,
    /// How far ahead of now a key's bucket may be and still take one more
    /// (`interval * (burst - 1)`).
    tolerance: u64,
    shards: Box<[Mutex<Shard>]>,
    pick: RandomState,
    epoch: Instant,
}

#[derive(Debug, Default)]
struct Shard {
    /// Key -> when its bucket is empty again (its theoretical arrival time).
    empty_at: HashMap<u128, u64>,
    swept: u64,
}

impl Shard {
    /// Drops the keys whose bucket has emptied (they are as good as new), then
    /// gives back most of a table a flood grew.
    fn sweep(&mut self, now: u64) {
        self.swept = now;
        self.empty_at.retain(|_, empty_at| *empty_at > now);
        let len = self.empty_at.len();
        if self.empty_at.capacity() > 64.max(len * 4) {
            self.empty_at.shrink_to(len * 2);
        }
    }
}

impl KeyedLimiter {
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let interval = (NANOS_PER_SECOND / u64::from(per_second.get())).max(1);
        Self {
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.get() - 1)),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            pick: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Takes one join for `key` now; `Err` carries how long until one would pass.
    pub fn check(&self, key: u128) -> Result<(), Duration> {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(key, now)
    }

    fn check_at(&self, key: u128, now: u64) -> Result<(), Duration> {
        let shard = usize::try_from(self.pick.hash_one(key) % SHARDS as u64).unwrap_or(0);
        let mut shard = self.shards[shard]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if now.saturating_sub(shard.swept) >= SWEEP_EVERY {
            shard.sweep(now);
        }
        if shard.empty_at.len() >= KEYS_PER_SHARD && !shard.empty_at.contains_key(&key) {
            if now.saturating_sub(shard.swept) >= SWEEP_WHEN_FULL {
                shard.sweep(now);
            }
            if shard.empty_at.len() >= KEYS_PER_SHARD {
                // Full of live keys: this one passes untracked (see the module docs).
                return Ok(());
            }
        }
        match shard.empty_at.entry(key) {
            Entry::Vacant(entry) => {
                entry.insert(now.saturating_add(self.interval));
                Ok(())
            }
            Entry::Occupied(mut entry) => {
                let empty_at = (*entry.get()).max(now);
                let ahead = empty_at - now;
                if ahead > self.tolerance {
                    return Err(Duration::from_nanos(ahead - self.tolerance));
                }
                entry.insert(empty_at.saturating_add(self.interval));
                Ok(())
            }
        }
    }

    /// Keys tracked now, over every shard.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .empty_at
                    .len()
            })
            .sum()
    }
}

/// The join limit at the door: a middleware for the whole app that acts only on
/// `POST /v1/queue/tokens`. Per instance: each instance counts its own joins.
#[derive(Debug, Clone)]
pub struct JoinLimit(Option<Arc<Door>>);

#[derive(Debug)]
struct Door {
    proxies: TrustedProxies,
    limiter: KeyedLimiter,
    refused: IntCounter,
}

impl JoinLimit {
    /// The limit `settings` ask for (nothing if `join_limit_per_second` is 0). Run
    /// [`validate`] first: here a bad proxy list trusts no proxy, so `X-Forwarded-For`
    /// is ignored, and a burst of 0 counts as 1.
    pub fn new(settings: &Settings, metrics: &Metrics) -> Self {
        let Some(per_second) = NonZeroU32::new(settings.join_limit_per_second) else {
            return Self(None);
        };
        let burst = NonZeroU32::new(settings.join_limit_burst).unwrap_or(NonZeroU32::MIN);
        Self(Some(Arc::new(Door {
            proxies: settings.trusted_proxies.parse().unwrap_or_default(),
            limiter: KeyedLimiter::new(per_second, burst),
            refused: metrics.queue_joins.with_label_values(&["rate_limited"]),
        })))
    }
}

impl Door {
    fn check(&self, req: &Request) -> Result<(), Duration> {
        // Only a server without sockets (an in-process test) has no peer address:
        // such requests share one key.
        let peer = req
            .remote_addr()
            .as_socket_addr()
            .map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), SocketAddr::ip);
        let forwarded = req.headers().get_all("x-forwarded-for");
        let client = self.proxies.client(peer, forwarded.iter());
        self.limiter.check(client_key(client))
    }
}

impl<E: Endpoint> Middleware<E> for JoinLimit {
    type Output = JoinLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        JoinLimitEndpoint {
            inner,
            door: self.0.clone(),
        }
    }
}

#[derive(Debug)]
pub struct JoinLimitEndpoint<E> {
    inner: E,
    door: Option<Arc<Door>>,
}

impl<E: Endpoint> Endpoint for JoinLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if let Some(door) = &self.door
            && req.method() == Method::POST
            && req.uri().path() == JOIN_PATH
            && let Err(wait) = door.check(&req)
        {
            door.refused.inc();
            let mut resp = ApiError::rate_limited(wait).into_response();
            // Labelled as the join in the HTTP metrics.
            resp.set_data(OperationId(JOIN_OPERATION));
            return Ok(resp);
        }
        self.inner
            .call(req)
            .await
            .map(poem::IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &str) -> TrustedProxies {
        list.parse().unwrap()
    }

    /// The client of a request from `peer` with these `X-Forwarded-For` lines.
    fn client(trusted: &str, peer: &str, lines: &[&str]) -> IpAddr {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_str(l).unwrap())
            .collect();
        proxies(trusted).client(ip(peer), values.iter())
    }

    fn problem(list: &str) -> String {
        list.parse::<TrustedProxies>().unwrap_err().to_string()
    }

    #[test]
    fn a_proxy_list_takes_addresses_and_ranges_of_both_families() {
        assert!(proxies("").is_empty());
        assert!(proxies(" , ").is_empty());
        let list = proxies(" 10.0.0.7, 10.1.0.0/16 ,fd00::/8,::1,");
        assert_eq!(list.0.len(), 4);
        assert!(list.contains(ip("10.0.0.7")));
        assert!(!list.contains(ip("10.0.0.8")));
        assert!(list.contains(ip("10.1.255.3")));
        assert!(list.contains(ip("fd12::9")));
        assert!(list.contains(ip("::1")));
        assert!(!list.contains(ip("fe80::1")));
        // Families never mix, and 0.0.0.0/0 is every IPv4 address.
        assert!(!proxies("0.0.0.0/0").contains(ip("::2")));
        assert!(proxies("0.0.0.0/0").contains(ip("198.51.100.1")));
        assert!(!proxies("::/0").contains(ip("198.51.100.1")));
        // A mapped range is its IPv4 range.
        assert!(proxies("::ffff:10.0.0.0/104").contains(ip("10.9.8.7")));
        assert!(proxies("::ffff:10.0.0.1").contains(ip("10.0.0.1")));
    }

    #[test]
    fn a_bad_proxy_entry_is_named_with_the_reason() {
        for (entry, reason) in [
            ("proxy.internal", "is not an IP address"),
            ("10.0.0.300", "is not an IP address"),
            ("10.0.0.0/33", "prefix length from 0 to 32"),
            ("fd00::/129", "prefix length from 0 to 128"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("/8", "is not an IP address"),
            ("fe80::1%eth0", "is not an IP address"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8, or 10.0.0.1 alone?"),
            ("fd00::1/8", "did you mean fd00::/8"),
        ] {
            let message = problem(&format!("10.0.0.7, {entry}"));
            assert!(
                message.starts_with(&format!("BOXOFFICE_TRUSTED_PROXIES: `{entry}` ")),
                "{entry}: {message}"
            );
            assert!(message.contains(reason), "{entry}: {message}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        assert_eq!(
            client("", "198.51.100.4", &["203.0.113.9"]),
            ip("198.51.100.4")
        );
        assert_eq!(
            client("10.0.0.0/8", "198.51.100.4", &["203.0.113.9, 10.0.0.3"]),
            ip("198.51.100.4")
        );
        // A trusted peer without the header is the client itself.
        assert_eq!(client("10.0.0.0/8", "10.0.0.1", &[]), ip("10.0.0.1"));
    }

    #[test]
    fn the_client_is_the_rightmost_address_that_is_no_trusted_proxy() {
        let trusted = "10.0.0.0/8, 2001:db8:ffff::/48";
        // One proxy.
        assert_eq!(
            client(trusted, "10.0.0.1", &["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A chain of proxies; what the client wrote itself (left) is never reached.
        assert_eq!(
            client(
                trusted,
                "10.0.0.1",
                &["1.1.1.1, 10.0.0.9, 203.0.113.9, 10.0.0.3, 10.0.0.2"]
            ),
            ip("203.0.113.9")
        );
        // Several header lines are one list, in order.
        assert_eq!(
            client(trusted, "10.0.0.1", &["1.1.1.1, 203.0.113.9", "10.0.0.3"]),
            ip("203.0.113.9")
        );
        // A chain of nothing but trusted proxies: its leftmost.
        assert_eq!(
            client(trusted, "10.0.0.1", &["10.0.0.5, 10.0.0.3"]),
            ip("10.0.0.5")
        );
        // IPv6, bracketed, with ports, and IPv4-mapped; the peer may be mapped too.
        assert_eq!(
            client(trusted, "10.0.0.1", &["[2001:db8::7]:443, 10.0.0.3"]),
            ip("2001:db8::7")
        );
        assert_eq!(
            client(trusted, "::ffff:10.0.0.1", &["203.0.113.9:5123"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            client(
                trusted,
                "2001:db8:ffff::1",
                &["[2001:db8::8], 2001:db8:ffff::2"]
            ),
            ip("2001:db8::8")
        );
        assert_eq!(
            client(trusted, "10.0.0.1", &["::ffff:203.0.113.9"]),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_malformed_entry_ends_the_walk_at_the_last_good_hop() {
        let trusted = "10.0.0.0/8";
        for garbage in [
            "unknown",
            "",
            " ",
            "203.0.113.9:99999",
            "203.0.113",
            "[2001:db8::7",
            "2001:db8::7]",
            "[203.0.113.9]",
            "fe80::1%eth0",
            "_hidden",
            "203.0.113.9 203.0.113.10",
        ] {
            // Right after the peer: the peer is the client.
            assert_eq!(
                client(trusted, "10.0.0.1", &[&format!("203.0.113.9, {garbage}")]),
                ip("10.0.0.1"),
                "{garbage:?}"
            );
            // After a trusted hop: that hop.
            assert_eq!(
                client(
                    trusted,
                    "10.0.0.1",
                    &[&format!("203.0.113.9, {garbage}, 10.0.0.3")]
                ),
                ip("10.0.0.3"),
                "{garbage:?}"
            );
        }
        // Left of the client it is never read.
        assert_eq!(
            client(trusted, "10.0.0.1", &["unknown, 203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A value that is not visible ASCII is malformed as a whole.
        let odd = HeaderValue::from_bytes(b"203.0.113.9, \xff").unwrap();
        assert_eq!(
            proxies(trusted).client(ip("10.0.0.1"), [&odd].into_iter()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            client_key(ip("::ffff:203.0.113.9")),
            client_key(ip("203.0.113.9"))
        );
        assert_ne!(
            client_key(ip("203.0.113.9")),
            client_key(ip("203.0.113.10"))
        );
    }

    const SECOND: u64 = NANOS_PER_SECOND;

    fn limiter(per_second: u32, burst: u32) -> KeyedLimiter {
        KeyedLimiter::new(
            NonZeroU32::new(per_second).unwrap(),
            NonZeroU32::new(burst).unwrap(),
        )
    }

    fn is_tracked(limiter: &KeyedLimiter, key: u128) -> bool {
        let shard = usize::try_from(limiter.pick.hash_one(key) % SHARDS as u64).unwrap();
        limiter.shards[shard]
            .lock()
            .unwrap()
            .empty_at
            .contains_key(&key)
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds() {
        let limiter = limiter(10, 20);
        let start = 5 * SECOND;
        for n in 0..20 {
            assert_eq!(limiter.check_at(1, start), Ok(()), "join {n}");
        }
        // The 21st at once waits one interval; a refused join takes nothing.
        for _ in 0..5 {
            assert_eq!(limiter.check_at(1, start), Err(Duration::from_millis(100)));
        }
        assert_eq!(
            limiter.check_at(1, start + 40_000_000),
            Err(Duration::from_millis(60))
        );
        // Another key has its own bucket.
        for _ in 0..20 {
            assert_eq!(limiter.check_at(2, start), Ok(()));
        }
        assert!(limiter.check_at(2, start).is_err());
        // Then one per 100 ms.
        assert_eq!(limiter.check_at(1, start + SECOND / 10), Ok(()));
        assert!(limiter.check_at(1, start + SECOND / 10).is_err());
        let mut passed = 0;
        for ms in (200..=10_100).step_by(10) {
            if limiter.check_at(1, start + ms * 1_000_000).is_ok() {
                passed += 1;
            }
        }
        assert_eq!(passed, 100);
        // A bucket idle long enough is full again.
        for _ in 0..20 {
            assert_eq!(limiter.check_at(1, start + 20 * SECOND), Ok(()));
        }
        assert!(limiter.check_at(1, start + 20 * SECOND).is_err());
    }

    #[test]
    fn a_burst_of_one_is_the_rate_alone() {
        let limiter = limiter(2, 1);
        assert_eq!(limiter.check_at(7, SECOND), Ok(()));
        assert_eq!(limiter.check_at(7, SECOND), Err(Duration::from_millis(500)));
        assert_eq!(limiter.check_at(7, SECOND + SECOND / 2), Ok(()));
    }

    #[test]
    fn emptied_buckets_are_dropped() {
        let limiter = limiter(10, 20);
        for key in 0..10_000 {
            assert_eq!(limiter.check_at(key, SECOND), Ok(()));
        }
        assert_eq!(limiter.tracked(), 10_000);
        // Two seconds on, each of those buckets has emptied (one join = 100 ms): the
        // first touch of a shard drops them. 2,000 new keys touch every shard.
        for key in 10_000..12_000 {
            assert_eq!(limiter.check_at(key, 3 * SECOND), Ok(()));
        }
        assert_eq!(limiter.tracked(), 2_000);
    }

    #[test]
    fn a_flood_of_distinct_clients_is_capped_and_its_memory_given_back() {
        let limiter = limiter(1, 100);
        let cap = SHARDS * KEYS_PER_SHARD;
        let flood = 0..u128::try_from(cap * 2).unwrap();
        for key in flood.clone() {
            assert_eq!(limiter.check_at(key, SECOND), Ok(()));
        }
        // Never more than the cap; the keys past it passed untracked.
        assert_eq!(limiter.tracked(), cap);
        for shard in &limiter.shards {
            assert!(shard.lock().unwrap().empty_at.capacity() < 2 * KEYS_PER_SHARD);
        }
        // Tracked keys are still limited.
        let key = flood
            .clone()
            .find(|&key| is_tracked(&limiter, key))
            .unwrap();
        for _ in 0..99 {
            assert_eq!(limiter.check_at(key, SECOND), Ok(()));
        }
        assert!(limiter.check_at(key, SECOND).is_err());
        // Once their buckets have emptied, the tables give the memory back.
        for key in 0..2_048 {
            assert_eq!(limiter.check_at(key, 200 * SECOND), Ok(()));
        }
        assert_eq!(limiter.tracked(), 2_048);
        let capacity: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().unwrap().empty_at.capacity())
            .sum();
        assert!(capacity < cap / 4, "capacity {capacity}");
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        for (wait, seconds) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(100), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1_001), 2),
            (Duration::from_secs(3), 3),
        ] {
            match ApiError::rate_limited(wait) {
                ApiError::RateLimited(problem, retry) => {
                    assert_eq!(retry, seconds, "{wait:?}");
                    assert_eq!(problem.0.status, 429);
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
