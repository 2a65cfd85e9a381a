//! What HTTP metrics cost on the hot path: a cached seat-map read served in-process
//! (no socket, so nothing hides the difference) with and without the metrics
//! middleware. Needs MariaDB and Redis as the tests do; uses its own database
//! `boxoffice_bench_metrics` and Redis prefix `bench-metrics`.
//!
//!   cargo bench -p boxoffice --bench http_metrics
//!
//! Compare the medians of each group; the goal is under 5% apart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use boxoffice::observe::HttpMetrics;
use boxoffice::route_table::RouteTable;
use criterion::{Criterion, criterion_group, criterion_main};
use domain::catalog::{NewConcert, NewSchedule};
use infra::{Services, Settings};
use poem::{Endpoint, EndpointExt as _, Request};

fn settings() -> Settings {
    let mysql =
        std::env::var("BOXTEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    Settings {
        database_url: format!("{mysql}/boxoffice_bench_metrics").into(),
        redis_key_prefix: "bench-metrics".into(),
        log_filter: "warn".into(),
        ..Settings::default()
    }
}

async fn read(endpoint: &impl Endpoint, uri: &str) -> usize {
    let resp = endpoint
        .call(Request::builder().uri(uri.parse().unwrap()).finish())
        .await
        .map_or_else(
            poem::Error::into_response,
            poem::IntoResponse::into_response,
        );
    assert!(resp.status().is_success());
    resp.into_body().into_bytes().await.unwrap().len()
}

fn cached_seat_map(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let settings = settings();
    let (svc, uri) = rt.block_on(async {
        infra::service::admin::migrate(&settings).await.unwrap();
        let svc = Services::new(settings, infra::metrics::Metrics::new()).unwrap();
        let concert = NewConcert {
            title: "Bench".into(),
            artist: "criterion".into(),
            schedules: vec![
                NewSchedule::priced("Hall", chrono::Utc::now(), vec![domain::Points(1_000); 50])
                    .unwrap(),
            ],
            cancellation: domain::CancellationPolicy::DEFAULT,
        };
        let sale =
            domain::SaleSettings::new(domain::sale::SaleChanges::default(), chrono::Utc::now())
                .unwrap();
        let (_, schedules) =
            infra::service::admin::create_concert(&svc, &concert, &sale, chrono::Utc::now())
                .await
                .unwrap();
        (svc, format!("/v1/schedules/{}/seats", schedules[0]))
    });
    let hub = boxoffice::waiting_room::Hub::new(svc.clone());
    let bare = boxoffice::routes(svc.clone(), std::sync::Arc::clone(&hub));
    let measured = boxoffice::app(svc, hub);
    rt.block_on(read(&bare, &uri)); // fills the cache

    let mut group = c.benchmark_group("cached seat map, in-process");
    group.bench_function("without metrics", |b| {
        b.to_async(&rt).iter(|| read(&bare, &uri));
    });
    group.bench_function("with metrics", |b| {
        b.to_async(&rt).iter(|| read(&measured, &uri));
    });
    group.finish();

    // The middleware alone, around an endpoint that does nothing: its cost without
    // the noise of a Redis round trip.
    let trivial = poem::endpoint::make_sync(|_| "ok");
    let wrapped = poem::endpoint::make_sync(|_| "ok").with(HttpMetrics::new(
        std::sync::Arc::new(RouteTable::default()),
        infra::metrics::Metrics::new(),
    ));
    let mut group = c.benchmark_group("an endpoint that does nothing");
    group.bench_function("without metrics", |b| {
        b.to_async(&rt).iter(|| read(&trivial, "/x"));
    });
    group.bench_function("with metrics", |b| {
        b.to_async(&rt).iter(|| read(&wrapped, "/x"));
    });
    group.finish();
}

criterion_group!(benches, cached_seat_map);
criterion_main!(benches);
