//! Who a fan is. The operator's login service signs a JWT for the fan; boxoffice
//! verifies it against the issuer's published keys (a JWKS document, fetched over
//! HTTP(S) and/or read from a file) and takes its `sub` as the fan's user id. The
//! signature, issuer, audience, expiry and not-before are all checked; only
//! asymmetric algorithms are accepted (a shared-secret `HS256` token, or one with
//! `alg: none`, is refused), so boxoffice never holds a secret that could mint tokens.
//!
//! Keys are cached. They are fetched again when they are older than
//! `identity_jwks_max_age_seconds`, and at once when a token names a key id that is
//! not cached (the issuer rotated its keys), at most once every
//! `identity_jwks_min_refresh_seconds` so forged key ids cannot flood the issuer.
//! A source that fails keeps its last good keys.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use domain::{IdentityError, UserId};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::{IdentityMode, Settings};
use crate::metrics::Metrics;

/// A JWKS document larger than this is refused: no issuer publishes megabytes of keys.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The algorithms a login service may sign with (issue: RS256, ES256 or EdDSA).
const ACCEPTED: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// How joins establish who the fan is.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No `identity_mode` set: `serve` refuses to start; other commands never join.
    Unset,
    /// Trust the client's `userId` (demos and tests only).
    Development,
    /// Verify a signed JWT.
    Jwt(Verifier),
}

impl Identity {
    /// Checks the identity settings (which go together) and builds the verifier
    /// without fetching anything yet.
    pub fn new(settings: &Settings, metrics: &Metrics) -> anyhow::Result<Self> {
        match settings.identity_mode {
            None => Ok(Self::Unset),
            Some(IdentityMode::Development) => Ok(Self::Development),
            Some(IdentityMode::Jwt) => Verifier::new(settings, metrics.clone()).map(Self::Jwt),
        }
    }

    /// Gets ready to serve joins, or says why `serve` must not start: no identity
    /// mode is a refusal, development mode a loud warning, and jwt mode loads the
    /// keys (an issuer that cannot be reached yet is retried at the first join).
    pub async fn prepare(&self) -> anyhow::Result<()> {
        match self {
            Self::Unset => anyhow::bail!(
                "no identity setting: set BOXOFFICE_IDENTITY_MODE=jwt with \
                 BOXOFFICE_IDENTITY_ISSUER, BOXOFFICE_IDENTITY_AUDIENCE and \
                 BOXOFFICE_IDENTITY_JWKS_URL (or BOXOFFICE_IDENTITY_JWKS_FILE), or \
                 BOXOFFICE_IDENTITY_MODE=development to trust any userId (demos only)"
            ),
            Self::Development => {
                tracing::warn!(
                    "identity_mode = development: joins trust whatever userId they send, \
                     so anyone can act as anyone; never run a real sale like this"
                );
                Ok(())
            }
            Self::Jwt(verifier) => {
                let keys = verifier.load().await;
                if keys == 0 {
                    tracing::warn!(
                        "no identity signing keys could be loaded yet; joins answer 503 until they can"
                    );
                } else {
                    tracing::info!(keys, issuer = %verifier.inner.issuer, "identity: verifying the login service's tokens");
                }
                Ok(())
            }
        }
    }

    /// The fan who joins: proven by `id_token` (jwt mode) or asserted by `user_id`
    /// (development mode). A `user_id` beside a token must name the token's subject.
    pub async fn fan(
        &self,
        id_token: Option<&str>,
        user_id: Option<&str>,
    ) -> Result<UserId, IdentityError> {
        match self {
            Self::Jwt(verifier) => {
                let token = id_token.ok_or(IdentityError::Missing)?;
                let fan = verifier.verify(token).await?;
                match user_id {
                    Some(claimed) if claimed != fan.as_str() => Err(IdentityError::Mismatch),
                    _ => Ok(fan),
                }
            }
            Self::Development => {
                let claimed = user_id.ok_or(IdentityError::Missing)?;
                UserId::parse(claimed).map_err(IdentityError::from)
            }
            Self::Unset => Err(IdentityError::Unavailable(anyhow::anyhow!(
                "identity_mode is not set"
            ))),
        }
    }
}

/// Verifies the login service's tokens. Cheap to clone: clones share the key cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .finish_non_exhaustive()
    }
}

struct Inner {
    issuer: String,
    audience: String,
    leeway: u64,
    url: Option<String>,
    file: Option<PathBuf>,
    max_age: Duration,
    min_refresh: Duration,
    http: reqwest::Client,
    metrics: Metrics,
    keys: RwLock<KeyRing>,
    /// One refresh at a time; the others wait for it and use its keys.
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyRing {
    from_url: Vec<Arc<Key>>,
    from_file: Vec<Arc<Key>>,
    /// When the keys were last refreshed (successfully or not).
    refreshed: Option<Instant>,
    /// When a token with an unknown key id last caused a refresh.
    refreshed_for_unknown_kid: Option<Instant>,
}

impl KeyRing {
    fn keys(&self) -> impl Iterator<Item = &Arc<Key>> {
        self.from_url.iter().chain(&self.from_file)
    }

    /// The key that may have signed a token with this header: the one with its key
    /// id, or (for a token without `kid`) the only key of its algorithm.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Arc<Key>> {
        let mut fitting = self.keys().filter(|k| k.alg == alg);
        if let Some(kid) = kid {
            return fitting.find(|k| k.kid.as_deref() == Some(kid)).cloned();
        }
        let only = fitting.next()?;
        fitting.next().is_none().then(|| only.clone())
    }
}

/// Why the keys are loaded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refresh {
    Start,
    Stale,
    UnknownKeyId,
}

/// One usable signing key; shared (`Arc`), so a verification copies no key material.
struct Key {
    kid: Option<String>,
    alg: Algorithm,
    decoding: DecodingKey,
}

/// The registered claims boxoffice reads; the validation checks the others.
#[derive(Deserialize)]
struct Claims {
    sub: String,
}

impl Verifier {
    fn new(settings: &Settings, metrics: Metrics) -> anyhow::Result<Self> {
        let required = |value: &Option<String>, name: &str| {
            value.clone().filter(|v| !v.is_empty()).with_context(|| {
                format!(
                    "identity_mode = jwt needs {name} (BOXOFFICE_{})",
                    name.to_uppercase()
                )
            })
        };
        let issuer = required(&settings.identity_issuer, "identity_issuer")?;
        let audience = required(&settings.identity_audience, "identity_audience")?;
        anyhow::ensure!(
            settings.identity_jwks_url.is_some() || settings.identity_jwks_file.is_some(),
            "identity_mode = jwt needs identity_jwks_url (BOXOFFICE_IDENTITY_JWKS_URL) or \
             identity_jwks_file (BOXOFFICE_IDENTITY_JWKS_FILE)"
        );
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .context("building the JWKS client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                issuer,
                audience,
                leeway: settings.identity_leeway_seconds,
                url: settings.identity_jwks_url.clone(),
                file: settings.identity_jwks_file.clone(),
                max_age: Duration::from_secs(settings.identity_jwks_max_age_seconds),
                min_refresh: Duration::from_secs(settings.identity_jwks_min_refresh_seconds),
                http,
                metrics,
                keys: RwLock::default(),
                refreshing: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// Loads the keys now (at start), so the first joins need not wait for them.
    /// Returns how many keys are usable.
    pub async fn load(&self) -> usize {
        self.refresh(Refresh::Start).await;
        self.inner.keys.read().map_or(0, |ring| ring.keys().count())
    }

    /// The fan a token proves, or why it proves nothing.
    pub async fn verify(&self, token: &str) -> Result<UserId, IdentityError> {
        let verified = self.check(token).await;
        let result = match &verified {
            Ok(_) => "ok",
            Err(IdentityError::Expired) => "expired",
            Err(IdentityError::Unavailable(_)) => "unavailable",
            Err(_) => "invalid",
        };
        self.inner
            .metrics
            .identity_verifications
            .with_label_values(&[result])
            .inc();
        verified
    }

    async fn check(&self, token: &str) -> Result<UserId, IdentityError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| IdentityError::Invalid("not a signed JWT"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(IdentityError::Invalid(
                "signed with an algorithm other than RS256, ES256 or EdDSA",
            ));
        }
        let kid = header.kid.as_deref();
        let key = self.key(kid, header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.inner.issuer]);
        validation.set_audience(&[&self.inner.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = self.inner.leeway;
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => IdentityError::Expired,
                ErrorKind::InvalidSignature => IdentityError::Invalid("the signature is wrong"),
                ErrorKind::InvalidIssuer => IdentityError::Invalid("issued by another issuer"),
                ErrorKind::InvalidAudience => IdentityError::Invalid("issued for another audience"),
                ErrorKind::ImmatureSignature => IdentityError::Invalid("not valid yet (nbf)"),
                ErrorKind::MissingRequiredClaim(_) => {
                    IdentityError::Invalid("a required claim (exp, iss, aud, sub) is missing")
                }
                _ => IdentityError::Invalid("not a well-formed JWT"),
            })?
            .claims;
        UserId::parse(&claims.sub)
            .map_err(|_| IdentityError::Invalid("sub is not a usable user id"))
    }

    /// The key for a token's header, refreshing the keys when they are stale or do
    /// not know the key id.
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Arc<Key>, IdentityError> {
        let (found, stale) = {
            let ring =
                self.inner.keys.read().map_err(|_| {
                    IdentityError::Unavailable(anyhow::anyhow!("key cache poisoned"))
                })?;
            let stale = ring
                .refreshed
                .is_none_or(|at| at.elapsed() >= self.inner.max_age);
            (ring.find(kid, alg), stale)
        };
        if let Some(key) = found
            && !stale
        {
            return Ok(key);
        }
        // Stale keys: refresh. An unknown key id: refresh unless another unknown
        // key id did a moment ago. A failed refresh keeps the keys there were.
        self.refresh(if stale {
            Refresh::Stale
        } else {
            Refresh::UnknownKeyId
        })
        .await;
        let ring = self
            .inner
            .keys
            .read()
            .map_err(|_| IdentityError::Unavailable(anyhow::anyhow!("key cache poisoned")))?;
        match ring.find(kid, alg) {
            Some(key) => Ok(key),
            None if ring.keys().next().is_none() => Err(IdentityError::Unavailable(
                anyhow::anyhow!("no signing keys could be loaded from the identity provider"),
            )),
            None => Err(IdentityError::Invalid(
                "signed with a key the issuer does not publish",
            )),
        }
    }

    /// Reloads every source; for an unknown key id, not again within
    /// `identity_jwks_min_refresh_seconds` of the last time one caused it.
    async fn refresh(&self, why: Refresh) {
        let _one_at_a_time = self.inner.refreshing.lock().await;
        if why == Refresh::UnknownKeyId {
            let recent = self.inner.keys.read().is_ok_and(|ring| {
                ring.refreshed_for_unknown_kid
                    .is_some_and(|at| at.elapsed() < self.inner.min_refresh)
            });
            if recent {
                return;
            }
        }
        let from_url = match &self.inner.url {
            Some(url) => Some(self.fetch(url).await),
            None => None,
        };
        let from_file = match &self.inner.file {
            Some(path) => Some(read_file(path).await),
            None => None,
        };
        let Ok(mut guard) = self.inner.keys.write() else {
            return;
        };
        let ring = &mut *guard;
        for (loaded, keys, source) in [
            (from_url, &mut ring.from_url, "url"),
            (from_file, &mut ring.from_file, "file"),
        ] {
            let result = match loaded {
                None => continue,
                Some(Ok(loaded)) => {
                    *keys = loaded;
                    "ok"
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        source,
                        error = format!("{e:#}"),
                        "could not load the identity provider's keys; keeping the last good ones"
                    );
                    "error"
                }
            };
            self.inner
                .metrics
                .identity_jwks_loads
                .with_label_values(&[source, result])
                .inc();
        }
        ring.refreshed = Some(Instant::now());
        if why == Refresh::UnknownKeyId {
            ring.refreshed_for_unknown_kid = ring.refreshed;
        }
    }

    async fn fetch(&self, url: &str) -> anyhow::Result<Vec<Arc<Key>>> {
        let response = self
            .inner
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .with_context(|| format!("fetching {url}"))?
            .error_for_status()
            .with_context(|| format!("fetching {url}"))?;
        anyhow::ensure!(
            response
                .content_length()
                .is_none_or(|len| len <= MAX_JWKS_BYTES as u64),
            "{url}: the JWKS document is larger than 1 MiB"
        );
        let body = response.bytes().await.context("reading the JWKS")?;
        anyhow::ensure!(
            body.len() <= MAX_JWKS_BYTES,
            "{url}: the JWKS document is larger than 1 MiB"
        );
        parse_jwks(&body).with_context(|| format!("reading the JWKS from {url}"))
    }
}

async fn read_file(path: &PathBuf) -> anyhow::Result<Vec<Arc<Key>>> {
    let body = tokio::fs::read(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    parse_jwks(&body).with_context(|| format!("reading the JWKS in {}", path.display()))
}

/// The signing keys of a JWKS document. Keys boxoffice cannot use (encryption keys,
/// symmetric keys, other curves) are skipped, not fatal: issuers publish those too.
fn parse_jwks(body: &[u8]) -> anyhow::Result<Vec<Arc<Key>>> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document = serde_json::from_slice(body).context("not a JWKS document")?;
    let keys: Vec<Arc<Key>> = document
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| signing_key(&jwk))
        .map(Arc::new)
        .collect();
    anyhow::ensure!(
        !keys.is_empty(),
        "no RS256, ES256 or EdDSA signing key in it"
    );
    Ok(keys)
}

fn signing_key(jwk: &Jwk) -> Option<Key> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let alg = match (&jwk.algorithm, jwk.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
        (AlgorithmParameters::EllipticCurve(ec), None | Some(KeyAlgorithm::ES256))
            if ec.curve == EllipticCurve::P256 =>
        {
            Algorithm::ES256
        }
        (AlgorithmParameters::OctetKeyPair(okp), None | Some(KeyAlgorithm::EdDSA))
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            Algorithm::EdDSA
        }
        _ => return None,
    };
    let decoding = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        decoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_keys_are_skipped_and_usable_ones_kept() {
        let jwks = br#"{"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "something-new"}
        ]}"#;
        let keys = parse_jwks(jwks).unwrap_or_default();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("sig"));
        assert_eq!(keys[0].alg, Algorithm::ES256);
    }

    #[test]
    fn a_document_without_signing_keys_is_an_error() {
        assert!(parse_jwks(br#"{"keys": []}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[test]
    fn a_token_without_kid_needs_exactly_one_key_of_its_algorithm() {
        let key = |kid: &str| {
            Arc::new(Key {
                kid: Some(kid.into()),
                alg: Algorithm::ES256,
                decoding: DecodingKey::from_ec_der(&[]),
            })
        };
        let mut ring = KeyRing {
            from_url: vec![key("a")],
            ..KeyRing::default()
        };
        assert!(ring.find(None, Algorithm::ES256).is_some());
        assert!(ring.find(None, Algorithm::EdDSA).is_none());
        assert!(ring.find(Some("a"), Algorithm::ES256).is_some());
        assert!(ring.find(Some("a"), Algorithm::RS256).is_none());
        ring.from_file.push(key("b"));
        assert!(ring.find(None, Algorithm::ES256).is_none());
        assert!(ring.find(Some("b"), Algorithm::ES256).is_some());
    }
}
