//! Who is at the door: joins take a token signed by the operator's login service,
//! verified against its published keys; nothing else names a fan.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use infra::config::IdentityMode;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::helpers::{TestApp, assert_problem};
use crate::issuer::{self, JwksServer, SigningKey, claims};

fn join_body(concert: u64, id_token: &str) -> Value {
    json!({"concertId": concert, "idToken": id_token})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_is_the_subject_of_a_verified_token_and_nobody_else() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let key = &issuer::default_key().0;

    let joined = app
        .join_with(&join_body(concert, &key.token_for("ann")))
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    let joined: Value = joined.json().await.unwrap();
    assert_eq!(joined["userId"], "ann");

    // A userId beside the token may repeat its subject, never change it.
    let same = json!({"concertId": concert, "idToken": key.token_for("ann"), "userId": "ann"});
    let again = app.join_with(&same).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(
        again.json::<Value>().await.unwrap()["token"],
        joined["token"]
    );
    let other = json!({"concertId": concert, "idToken": key.token_for("mallory"), "userId": "ann"});
    let body = assert_problem(
        app.join_with(&other).await,
        StatusCode::FORBIDDEN,
        "IDENTITY_MISMATCH",
    )
    .await;
    assert!(body.get("token").is_none());

    // Knowing ann's user id is not being ann.
    for claim in [
        json!({"concertId": concert, "userId": "ann"}),
        json!({"concertId": concert}),
    ] {
        let body = assert_problem(
            app.join_with(&claim).await,
            StatusCode::UNAUTHORIZED,
            "MISSING_IDENTITY",
        )
        .await;
        assert!(body.get("token").is_none(), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_foreign_and_unsigned_tokens_are_refused() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let key = &issuer::default_key().0;
    let now = chrono::Utc::now().timestamp();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims("victim");
        change(&mut c);
        key.sign(&c)
    };

    // Another key that claims the trusted key's id.
    let impostor = SigningKey::es256(&key.kid);
    let forged = impostor.token_for("victim");
    // A good token whose payload was edited after signing.
    let good = key.token_for("someone");
    let parts: Vec<&str> = good.split('.').collect();
    let edited_payload = URL_SAFE_NO_PAD.encode(claims("victim").to_string());
    let tampered = format!("{}.{edited_payload}.{}", parts[0], parts[2]);
    // `alg: none`, no signature at all.
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!("{none_header}.{edited_payload}.");
    // HS256 with the public key as the shared secret: the classic algorithm confusion.
    let public = serde_json::to_vec(key.public()).unwrap();
    let confused = jsonwebtoken::encode(
        &jsonwebtoken::Header {
            kid: Some(key.kid.clone()),
            ..jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256)
        },
        &claims("victim"),
        &jsonwebtoken::EncodingKey::from_secret(&public).unwrap(),
    )
    .unwrap();
    let unknown_kid = SigningKey::es256("never-published").token_for("victim");

    let invalid = [
        ("forged", forged),
        ("tampered", tampered),
        ("unsigned", unsigned),
        ("HS256", confused),
        ("unknown key id", unknown_kid),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "no expiry",
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
        ),
        (
            "no subject",
            with(&|c| drop(c.as_object_mut().unwrap().remove("sub"))),
        ),
        ("not yet valid", with(&|c| c["nbf"] = json!(now + 3_600))),
        ("unusable subject", with(&|c| c["sub"] = json!("has space"))),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (what, token) in invalid {
        let body = assert_problem(
            app.join_with(&join_body(concert, &token)).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_IDENTITY",
        )
        .await;
        assert!(body.get("token").is_none(), "{what}: {body}");
    }
    // Expired beyond the 30 s leeway; within it still good.
    let expired = with(&|c| c["exp"] = json!(now - 60));
    assert_problem(
        app.join_with(&join_body(concert, &expired)).await,
        StatusCode::UNAUTHORIZED,
        "IDENTITY_EXPIRED",
    )
    .await;
    // None of that gave the victim a place: their first real join creates one.
    let real = app.join(concert, "victim").await;
    assert_eq!(real.status(), StatusCode::CREATED);
    let metrics = app.get("/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains(r#"boxoffice_identity_verifications_total{result="invalid"} 12"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_on_its_first_use_without_a_restart() {
    let first = SigningKey::es256("2026-11");
    let jwks = JwksServer::start(&[&first]).await;
    let url = jwks.url.clone();
    let app = TestApp::spawn_with(|s| {
        s.identity_jwks_file = None;
        s.identity_jwks_url = Some(url);
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    assert_eq!(jwks.fetches(), 1, "keys are loaded at start");
    let joined = app
        .join_with(&join_body(concert, &first.token_for("ann")))
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    assert_eq!(jwks.fetches(), 1, "cached keys serve joins");

    // The issuer rotates to a new key (EdDSA this time) and retires the old one.
    let second = SigningKey::ed25519("2026-12");
    jwks.publish(&[&second]);
    let joined = app
        .join_with(&join_body(concert, &second.token_for("bob")))
        .await;
    assert_eq!(
        joined.status(),
        StatusCode::CREATED,
        "{}",
        joined.text().await.unwrap()
    );
    assert_eq!(jwks.fetches(), 2, "an unknown key id fetched the keys once");

    // Made-up key ids do not turn joins into a flood on the issuer.
    for i in 0..20 {
        let stranger = SigningKey::es256(&format!("made-up-{i}")).token_for("eve");
        assert_problem(
            app.join_with(&join_body(concert, &stranger)).await,
            StatusCode::UNAUTHORIZED,
            "INVALID_IDENTITY",
        )
        .await;
    }
    assert_eq!(jwks.fetches(), 2, "at most one fetch per refresh interval");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_works_offline_and_is_reread_on_rotation() {
    let dir = std::env::temp_dir().join(format!("boxoffice-jwks-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    let first = SigningKey::es256("file-1");
    issuer::write_jwks(&path, &[&first]);
    let file = path.clone();
    let app = TestApp::spawn_with(|s| {
        // The URL is down: the file's keys serve alone.
        s.identity_jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
        s.identity_jwks_file = Some(file);
        s.identity_jwks_min_refresh_seconds = 0;
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let joined = app
        .join_with(&join_body(concert, &first.token_for("ann")))
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);

    let second = SigningKey::ed25519("file-2");
    issuer::write_jwks(&path, &[&first, &second]);
    let joined = app
        .join_with(&join_body(concert, &second.token_for("bob")))
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reachable_keys_answer_503_not_401() {
    let app = TestApp::spawn_with(|s| {
        s.identity_jwks_file = None;
        s.identity_jwks_url = Some("http://127.0.0.1:9/jwks.json".into());
    })
    .await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    assert_problem(
        app.join(concert, "ann").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "SERVICE_UNAVAILABLE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_trusts_the_user_id_it_is_sent() {
    let app = TestApp::spawn_with(|s| s.identity_mode = Some(IdentityMode::Development)).await;
    let (concert, _) = app.create_concert(&[1], 100).await;
    let joined = app
        .join_with(&json!({"concertId": concert, "userId": "ann"}))
        .await;
    assert_eq!(joined.status(), StatusCode::CREATED);
    assert_eq!(joined.json::<Value>().await.unwrap()["userId"], "ann");
    assert_problem(
        app.join_with(&json!({"concertId": concert})).await,
        StatusCode::UNAUTHORIZED,
        "MISSING_IDENTITY",
    )
    .await;
    for bad in ["", "has space", "a:b", "{tag}", &"u".repeat(65)] {
        assert_problem(
            app.join_with(&json!({"concertId": concert, "userId": bad}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_USER_ID",
        )
        .await;
    }
}

/// `boxoffice serve` with these variables (and no config file), its stderr piped.
fn serve(env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .arg("serve")
        .current_dir(std::env::temp_dir())
        .env("BOXOFFICE_CONFIG", "/nonexistent/boxoffice.toml")
        .env("BOXOFFICE_LISTEN", "127.0.0.1:0")
        .env("BOXOFFICE_MIGRATE_ON_START", "false")
        .env("BOXOFFICE_OUTBOX_RELAY", "false")
        .env("BOXOFFICE_LOG_FILTER", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_to_start_without_a_complete_identity_setting() {
    for (env, names) in [
        (vec![], vec!["BOXOFFICE_IDENTITY_MODE"]),
        (
            vec![("BOXOFFICE_IDENTITY_MODE", "jwt")],
            vec!["BOXOFFICE_IDENTITY_ISSUER"],
        ),
        (
            vec![
                ("BOXOFFICE_IDENTITY_MODE", "jwt"),
                ("BOXOFFICE_IDENTITY_ISSUER", "https://login.example"),
                ("BOXOFFICE_IDENTITY_AUDIENCE", "boxoffice"),
            ],
            vec![
                "BOXOFFICE_IDENTITY_JWKS_URL",
                "BOXOFFICE_IDENTITY_JWKS_FILE",
            ],
        ),
    ] {
        let out = tokio::time::timeout(Duration::from_secs(30), serve(&env).wait_with_output())
            .await
            .expect("serve exits by itself")
            .unwrap();
        assert!(!out.status.success(), "{env:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for name in names {
            assert!(stderr.contains(name), "{env:?}: {stderr}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_is_announced_at_start() {
    let mut server = serve(&[("BOXOFFICE_IDENTITY_MODE", "development")]);
    let mut lines = tokio::io::BufReader::new(server.stderr.take().unwrap()).lines();
    let warned = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("WARN") && line.contains("identity_mode = development") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(warned, "serve in development mode warns at start");
    let _ = server.kill().await;
}
