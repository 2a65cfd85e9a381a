//! A login service for tests: signing keys made here (ES256 and EdDSA), tokens
//! signed with them, and their JWKS published as a file and over HTTP, so the
//! tests join through the same verified path production uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISSUER: &str = "https://login.boxoffice.test";
pub const AUDIENCE: &str = "boxoffice-tests";

/// One private key of the test login service.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    public: Jwk,
}

impl SigningKey {
    /// A fresh P-256 key.
    pub fn es256(kid: &str) -> Self {
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = loop {
            // 32 random bytes are a valid scalar unless at least the group order.
            if let Ok(secret) = p256::SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                break secret;
            }
        };
        let der = secret.to_pkcs8_der().unwrap();
        Self::new(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_der(der.as_bytes()),
        )
    }

    /// A fresh Ed25519 key: any 32 bytes are a seed, in a fixed PKCS#8 wrapping.
    pub fn ed25519(kid: &str) -> Self {
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend(rand::random::<[u8; 32]>());
        Self::new(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
    }

    fn new(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Self {
        let mut public = Jwk::from_encoding_key(&encoding, alg).unwrap();
        public.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            alg,
            encoding,
            public,
        }
    }

    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }

    /// A token for `sub` as the tests' login service issues it, valid for 10 minutes.
    pub fn token_for(&self, sub: &str) -> String {
        self.sign(&claims(sub))
    }

    pub fn public(&self) -> &Jwk {
        &self.public
    }
}

/// The claims of a good token for `sub`; tests spoil one to make a bad one.
pub fn claims(sub: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 600})
}

/// The key every `TestApp` trusts by default, published in a file.
pub fn default_key() -> &'static (SigningKey, PathBuf) {
    static KEY: OnceLock<(SigningKey, PathBuf)> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = SigningKey::es256("test-key-1");
        let dir = std::env::temp_dir().join(format!(
            "boxoffice-test-issuer-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        write_jwks(&path, &[&key]);
        (key, path)
    })
}

pub fn write_jwks(path: &PathBuf, keys: &[&SigningKey]) {
    let set = JwkSet {
        keys: keys.iter().map(|k| k.public.clone()).collect(),
    };
    // Write then rename, so a reader never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, serde_json::to_vec(&set).unwrap()).unwrap();
    std::fs::rename(partial, path).unwrap();
}

/// The login service's JWKS endpoint: serves whatever keys it is given now and
/// counts how often it was asked.
pub struct JwksServer {
    pub url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    fetches: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl JwksServer {
    pub async fn start(keys: &[&SigningKey]) -> Self {
        use poem::{EndpointExt as _, Route, get, handler, web::Data, web::Json};

        #[handler]
        fn jwks(
            Data(keys): Data<&Arc<Mutex<Vec<Jwk>>>>,
            Data(fetches): Data<&Arc<AtomicUsize>>,
        ) -> Json<JwkSet> {
            fetches.fetch_add(1, Ordering::SeqCst);
            Json(JwkSet {
                keys: keys.lock().unwrap().clone(),
            })
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        drop(listener);
        let shared = Arc::new(Mutex::new(keys.iter().map(|k| k.public.clone()).collect()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = Route::new()
            .at("/.well-known/jwks.json", get(jwks))
            .data(Arc::clone(&shared))
            .data(Arc::clone(&fetches));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = poem::Server::new(poem::listener::TcpListener::bind(addr));
        tokio::spawn(server.run_with_graceful_shutdown(
            app,
            async {
                let _ = stopped.await;
            },
            None,
        ));
        let url = format!("http://{addr}/.well-known/jwks.json");
        // Ready when it answers.
        for _ in 0..500 {
            if reqwest::get(&url).await.is_ok() {
                fetches.store(0, Ordering::SeqCst);
                return Self {
                    url,
                    keys: shared,
                    fetches,
                    _stop: stop,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the JWKS server never answered");
    }

    /// Publishes these keys from now on (the issuer rotated).
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.public.clone()).collect();
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
