//! Who is calling. Users send the queue token as a bearer token; operators send
//! the admin API key. Both are checked here, before any handler runs.

use domain::QueueToken;
use domain::token::Grant;
use infra::Services;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::{ApiKey, Bearer};
use secrecy::ExposeSecret as _;

use crate::error::{ApiError, ErrorCode};

/// The queue token from `POST /v1/queue/tokens`. It names the user: no call takes a
/// user id after that, so nobody can act for someone else.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "opaque", checker = "resolve_token")]
pub struct QueueAuth(pub Caller);

/// The resolved caller: their token and what it grants (possibly no longer ACTIVE;
/// use cases that book check that themselves).
#[derive(Debug)]
pub struct Caller {
    pub token: QueueToken,
    pub grant: Grant,
}

async fn resolve_token(req: &Request, bearer: Bearer) -> poem::Result<Caller> {
    let svc = services(req)?;
    let (token, grant) = infra::service::queue::authenticate(svc, &bearer.token)
        .await
        .map_err(|e| as_poem(ApiError::from(e)))?;
    Ok(Caller { token, grant })
}

/// The operator API key (`admin_api_key` in the configuration).
#[derive(Debug, SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "X-Api-Key",
    key_in = "header",
    checker = "check_admin_key"
)]
pub struct AdminAuth(());

async fn check_admin_key(req: &Request, key: ApiKey) -> poem::Result<()> {
    let svc = services(req)?;
    let expected = svc
        .settings
        .admin_api_key
        .as_ref()
        .map(|k| k.expose_secret().as_bytes());
    match expected {
        Some(expected) if constant_time_eq(expected, key.key.as_bytes()) => Ok(()),
        _ => Err(as_poem(ApiError::new(
            ErrorCode::InvalidApiKey,
            "missing or wrong X-Api-Key",
        ))),
    }
}

/// Compares without stopping at the first difference, so timing tells nothing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn services(req: &Request) -> poem::Result<&Services> {
    req.data::<Services>().ok_or_else(|| {
        as_poem(ApiError::from(anyhow::anyhow!(
            "Services missing from request data"
        )))
    })
}

fn as_poem(e: ApiError) -> poem::Error {
    use poem::IntoResponse as _;
    poem::Error::from_response(e.into_response())
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn keys_compare_exactly() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(!constant_time_eq(b"", b"x"));
    }
}
