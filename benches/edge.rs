//! Request routing through the edge's service stack without sockets: a static file (read from
//! disk, and kept in memory), an app route, and a 404, on the default site (the app in front of
//! the static root). Run with `cargo bench --bench edge`.

use std::hint::black_box;

use axum::body::Body;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use http_body_util::BodyExt;
use tower::ServiceExt;

fn routing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary folder");
    std::fs::write(dir.path().join("index.html"), "x".repeat(2048)).expect("page written");
    let edge = |cache_bytes| {
        runtime.block_on(async {
            let config = foobar_edge::Config {
                root: dir.path().to_path_buf(),
                file_cache_bytes: cache_bytes,
                ..Default::default()
            };
            let edge = foobar_edge::Edge::load(
                &config,
                &[],
                dir.path(),
                &["foobar.com".to_string()],
                false,
            )
            .expect("edge");
            let store = foobar_app::Store::open("sqlite://:memory:")
                .await
                .expect("store");
            let app = foobar_app::router(foobar_app::AppState::new(store, "token"))
                .fallback_service(foobar_edge::Fallthrough);
            edge.service(&foobar_edge::App::new(
                foobar_edge::EdgeService::new(app),
                foobar_app::PATHS,
            ))
            .expect("sites")
        })
    };
    let (from_disk, kept) = (edge(0), edge(1 << 20));
    let mut group = c.benchmark_group("edge");
    group.throughput(Throughput::Elements(1));
    for (label, service, path) in [
        ("static 2 KB page, from disk", &from_disk, "/"),
        ("static 2 KB page, kept in memory", &kept, "/"),
        ("app /healthz", &from_disk, "/healthz"),
        ("static 404", &from_disk, "/missing"),
    ] {
        group.bench_function(label, |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let request = Request::get(path).body(Body::empty()).expect("request");
                    let response = service.clone().oneshot(request).await.expect("infallible");
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map(|b| b.to_bytes().len());
                    black_box(body.unwrap_or_default())
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
