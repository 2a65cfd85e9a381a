//! How boxoffice is exposed: the poem + poem-openapi routes, the one error-to-HTTP
//! mapping, and the server that runs them beside the background workers.

pub mod auth;
pub mod client_limit;
pub mod error;
pub mod http_server;
pub mod observe;
pub mod route_table;
pub mod routes;
pub mod text;
pub mod waiting_room;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context as _;
use http_server::{HttpListener, Limits};
use infra::{Services, Settings};
use observe::HttpMetrics;
use poem::{
    Body, Endpoint, EndpointExt as _, IntoResponse, Request, Response, Route, get, handler,
    web::Data,
};
use poem_openapi::{ContactObject, LicenseObject, OpenApiService};
use route_table::RouteTable;
use routes::{
    admin::AdminApi, concerts::ConcertsApi, health::HealthApi, orders::OrdersApi,
    payments::PaymentsApi, points::PointsApi, queue::QueueApi, reservations::ReservationsApi,
    sale::SaleApi, shows::ShowsApi,
};
use waiting_room::Hub;

type Apis = (
    QueueApi,
    ConcertsApi,
    ReservationsApi,
    OrdersApi,
    PointsApi,
    PaymentsApi,
    AdminApi,
    ShowsApi,
    SaleApi,
    HealthApi,
);

/// Large enough for a 100,000-seat price list, small enough to refuse abuse.
const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

const DESCRIPTION: &str = "\
A concert booking backend built to survive a ticket-open rush.

**Flow**: join a concert's waiting room (`POST /v1/queue/tokens`) to get a bearer \
token; once it is ACTIVE, hold a seat (`POST /v1/reservations`), top up points \
(`POST /v1/points/charges`) and pay (`POST /v1/payments`) before the hold runs out.

**Errors** are `application/problem+json` with a stable `code` (see the `ErrorCode` \
schema). `409 SEAT_TAKEN` and `409 ALREADY_PAID` are expected outcomes in a rush, \
not failures.

**Retries**: money-moving calls take an `Idempotency-Key` header; retrying with the \
same key never acts twice and replays the first answer.

**Sales**: a concert's sale may open later (`sale.opensAt` when it is created): fans \
who join before wait in a pre-queue with no position and get places in a random order \
at the opening, ahead of everyone who joins later. Operators pause, resume, close and \
tune a sale through `/v1/admin/concerts/{concertId}/sale`; `GET \
/v1/concerts/{concertId}/sale` is its public status. A fan holds or buys at most the \
sale's `maxSeatsPerFan` seats (`409 SEAT_LIMIT`), and joins are limited per client \
(`429 RATE_LIMITED` with `Retry-After`).

**Waiting room over WebSocket**: `GET /v1/queue/ws?token=<token>` upgrades to a \
WebSocket that sends JSON text messages: `{\"type\":\"prequeue\",\"opensAt\":\"<RFC \
3339>\"}` before the sale opens, `{\"type\":\"position\",\"position\":12,\
\"peopleAhead\":11,\"etaSeconds\":6}` whenever the place changes (at most four a \
second), `{\"type\":\"admitted\",\"activeUntil\":\"<RFC 3339>\"}` the moment the token \
is let in, `{\"type\":\"expired\"}` when it ends, and `{\"type\":\"closed\"}` or \
`{\"type\":\"soldOut\"}` when the line ends for everyone. The first message comes at once \
on every (re)connect. Close codes: 4401 unknown token (never issued, or lost when \
Redis lost its data: join again), 4410 token expired or ended, 1008 the client sent \
too much (too many messages, or one over 4 KiB), 1002 a broken frame, 1013 a \
dependency is down (reconnect later), 1012 the server is restarting (reconnect). A waiter with neither a socket nor polling for the \
grace period leaves the line. `/waiting-room` is a page that does all this.";

/// The OpenAPI service: every route, documented. `boxoffice openapi` prints its spec.
pub fn api_service(svc: &Services) -> OpenApiService<Apis, ()> {
    let apis = (
        QueueApi { svc: svc.clone() },
        ConcertsApi { svc: svc.clone() },
        ReservationsApi { svc: svc.clone() },
        OrdersApi { svc: svc.clone() },
        PointsApi { svc: svc.clone() },
        PaymentsApi { svc: svc.clone() },
        AdminApi { svc: svc.clone() },
        ShowsApi { svc: svc.clone() },
        SaleApi { svc: svc.clone() },
        HealthApi { svc: svc.clone() },
    );
    OpenApiService::new(apis, "boxoffice", env!("CARGO_PKG_VERSION"))
        .description(DESCRIPTION)
        // Relative: Swagger UI's "Try it out" (and any client that resolves the
        // spec's URL) calls the host and port the spec was served from.
        .server("/")
        .contact(
            ContactObject::new()
                .name("boxoffice maintainers")
                .url("https://github.com/boxoffice-rs/boxoffice"),
        )
        .license(LicenseObject::new("MIT OR Apache-2.0"))
}

/// The whole HTTP application: [`routes`], measured.
pub fn app(svc: Services, hub: Arc<Hub>) -> impl Endpoint {
    let registry = svc.metrics.clone();
    let (endpoint, table) = route(svc, hub);
    endpoint.with(HttpMetrics::new(table, registry))
}

/// Every route, with the edge rules, but without HTTP metrics (which the metrics
/// overhead benchmark compares against).
pub fn routes(svc: Services, hub: Arc<Hub>) -> impl Endpoint {
    route(svc, hub).0
}

/// The routes and their table, read from the spec once for both the edge rules and
/// the metrics.
fn route(svc: Services, hub: Arc<Hub>) -> (impl Endpoint, Arc<RouteTable>) {
    let api = api_service(&svc);
    let table = Arc::new(RouteTable::from_spec(&api.spec()));
    let docs = api.swagger_ui();
    let spec = api.spec_endpoint();
    let edge_table = Arc::clone(&table);
    let mut endpoint = Route::new()
        .nest("/", api)
        .nest("/docs", docs)
        .at("/openapi.json", spec);
    // With an address of its own, `/metrics` is served only there (404 here).
    if svc.settings.metrics_listen.is_none() {
        endpoint = endpoint.at("/metrics", get(metrics));
    }
    let endpoint = endpoint
        .at("/v1/queue/ws", get(waiting_room::queue_socket))
        .at("/waiting-room", get(waiting_room_page))
        .around(move |next, req| edge(next, req, Arc::clone(&edge_table)))
        // Outermost: a join over its client's limit is refused before anything else.
        .with(client_limit::JoinLimit::new(&svc.settings, &svc.metrics))
        .data(svc)
        .data(hub);
    (endpoint, table)
}

/// Wraps every request: refuses a declared oversized body with 413 (for an
/// operation that takes a body; any other never reads one) and cuts an undeclared
/// (chunked) one off at the limit, where it then fails to parse; turns
/// the framework's own errors into problems; and tells a 405 what is `Allow`ed.
async fn edge<E: Endpoint>(
    next: E,
    mut req: Request,
    routes: Arc<RouteTable>,
) -> poem::Result<Response> {
    let declared = req
        .header(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64)
        && routes.takes_body(req.method().as_str(), req.uri().path())
    {
        let too_large = error::ApiError::new(
            error::ErrorCode::PayloadTooLarge,
            "the body is larger than 2 MiB",
        );
        return Ok(too_large.into_response());
    }
    if declared.is_none()
        && req
            .headers()
            .contains_key(poem::http::header::TRANSFER_ENCODING)
    {
        use tokio::io::AsyncReadExt as _;
        let body = req
            .take_body()
            .into_async_read()
            .take(MAX_BODY_BYTES as u64);
        req.set_body(Body::from_async_read(body));
    }
    let admin = req.uri().path().starts_with("/v1/admin");
    // A clone shares the URI's bytes: no copy on every request for the rare 405.
    let uri = req.uri().clone();
    let mut resp = match next.call(req).await {
        Ok(resp) => resp.into_response(),
        Err(err) => {
            // Keep the matched operation for the metrics around us.
            let operation = err.data::<poem_openapi::OperationId>().copied();
            let mut resp = error::framework_error(err, admin);
            if let Some(operation) = operation {
                resp.set_data(operation);
            }
            resp
        }
    };
    if resp.status() == poem::http::StatusCode::METHOD_NOT_ALLOWED
        && let Some(allow) = routes.allowed(uri.path())
    {
        resp.headers_mut()
            .insert(poem::http::header::ALLOW, allow.clone());
    }
    Ok(resp)
}

#[handler]
fn waiting_room_page() -> poem::web::Html<&'static str> {
    poem::web::Html(include_str!("../static/waiting-room.html"))
}

/// Prometheus's scrape: the gauges read on demand, then everything.
#[handler]
async fn metrics(svc: Data<&Services>) -> String {
    infra::service::gauges::refresh(&svc, chrono::Utc::now()).await;
    svc.metrics.render()
}

/// The metrics listener's whole application: `/metrics`, and problems for the rest.
fn metrics_only(svc: Services) -> impl Endpoint {
    Route::new()
        .at("/metrics", get(metrics))
        .around(|next, req| async move {
            Ok(match next.call(req).await {
                Ok(resp) => resp.into_response(),
                Err(err) => error::framework_error(err, false),
            })
        })
        .data(svc)
}

/// How long requests in flight may take to finish once shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Connections the metrics listener keeps open at once: a few scrapers and a person,
/// apart from the API's, so a flood there never blinds monitoring.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// A bound, not yet running server.
pub struct Server {
    api: HttpListener,
    /// `/metrics` on an address of its own (`metrics_listen`).
    metrics: Option<HttpListener>,
    svc: Services,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.local_addr())
            .field("metrics_addr", &self.metrics_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Migrates (unless disabled), builds the services and binds the listeners
    /// (`listen`, and `metrics_listen` if set).
    pub async fn bind(settings: Settings) -> anyhow::Result<Self> {
        client_limit::validate(&settings)?;
        if settings.migrate_on_start {
            infra::service::admin::migrate(&settings)
                .await
                .context("migrating the database")?;
        }
        let listen = settings.listen;
        let svc = Services::new(settings, infra::metrics::Metrics::new())?;
        svc.identity.prepare().await?;
        let limits = Limits::from_settings(&svc.settings);
        let api = HttpListener::bind(listen, "api", limits)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let metrics_listener = match svc.settings.metrics_listen {
            Some(addr) => {
                let limits = Limits {
                    max_connections: METRICS_MAX_CONNECTIONS,
                    ..limits
                };
                let listener = HttpListener::bind(addr, "metrics", limits)
                    .await
                    .with_context(|| format!("binding {addr} (metrics_listen)"))?;
                Some(listener)
            }
            None => None,
        };
        let hub = Hub::new(svc.clone());
        Ok(Self {
            api,
            metrics: metrics_listener,
            svc,
            hub,
        })
    }

    /// The API's address (`listen`, with the port chosen if it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.api.local_addr()
    }

    /// Where `/metrics` is served apart from the API, if `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(HttpListener::local_addr)
    }

    pub fn services(&self) -> &Services {
        &self.svc
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Serves until `shutdown` resolves, then stops accepting (on both listeners),
    /// closes every waiting-room socket with 1012 (reconnect), lets requests in
    /// flight finish (up to 30 s) and stops the background workers: hold expiry, the outbox relay
    /// (after the round it is in) and admission ticks (where enabled), and the
    /// waiting-room event listener.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_workers, workers_stopped) = tokio::sync::watch::channel(());
        let stopped = move || {
            let mut stopped = workers_stopped.clone();
            async move {
                let _ = stopped.changed().await;
            }
        };
        let mut workers = vec![
            tokio::spawn(infra::service::expiry::run(self.svc.clone(), stopped())),
            tokio::spawn(Arc::clone(&self.hub).listen(stopped())),
            tokio::spawn(Arc::clone(&self.hub).keep_alive(stopped())),
        ];
        if self.svc.settings.outbox_relay {
            workers.push(tokio::spawn(infra::service::relay::run(
                self.svc.clone(),
                stopped(),
            )));
        }
        if self.svc.settings.queue_admission {
            workers.push(tokio::spawn(infra::service::queue::run_admission(
                self.svc.clone(),
                stopped(),
            )));
        }
        tracing::info!(addr = %self.local_addr(), metrics_addr = ?self.metrics_addr(), "serving");
        let hub = Arc::clone(&self.hub);
        let stop = tokio_util::sync::CancellationToken::new();
        let draining = {
            let hub = Arc::clone(&hub);
            let stop = stop.clone();
            async move {
                shutdown.await;
                // Sockets hear 1012 at once, before the listeners stop.
                hub.close_all();
                stop.cancel();
            }
        };
        let registry = self.svc.metrics.clone();
        let scrapes = async {
            if let Some(listener) = self.metrics {
                let endpoint = metrics_only(self.svc.clone());
                listener
                    .serve(endpoint, &registry, stop.clone(), SHUTDOWN_GRACE)
                    .await;
            }
        };
        let api = self.api.serve(
            app(self.svc.clone(), self.hub),
            &registry,
            stop.clone(),
            SHUTDOWN_GRACE,
        );
        tokio::join!(draining, api, scrapes);
        // Upgraded sockets outlive the HTTP server: let their close frames go out.
        hub.until_closed(Duration::from_secs(5)).await;
        drop(stop_workers);
        for worker in workers {
            let _ = worker.await;
        }
        Ok(())
    }
}
