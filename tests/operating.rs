//! Operating the server: `/metrics` on the admin listener counts exactly what was sent, in an
//! exposition `promtool` accepts.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use hickory_proto::rr::RecordType;
use support::{Foobar, admin_get};

/// The value of the series `name{labels}` (labels as written, in order), 0 when absent.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[test]
fn metrics_count_dns_queries_by_transport_type_rcode_and_zone() {
    let server = Foobar::start(&[("foobar.com.zone", &support::shipped_zone())]);
    let admin = server.admin();
    for _ in 0..7 {
        support::query_udp(server.dns, "www.foobar.com.", RecordType::A);
    }
    for _ in 0..3 {
        support::query_udp(server.dns, "foobar.com.", RecordType::MX);
    }
    for _ in 0..4 {
        support::query_tcp(server.dns, "www.foobar.com.", RecordType::AAAA);
    }
    for _ in 0..5 {
        support::query_udp(server.dns, "nothing.foobar.com.", RecordType::A);
    }
    for _ in 0..2 {
        support::query_udp(server.dns, "example.org.", RecordType::A);
    }
    // A type counted as "other".
    support::query_udp(server.dns, "www.foobar.com.", RecordType::Unknown(65280));

    let (status, metrics) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    let responses =
        |labels: &str| value(&metrics, &format!("foobar_dns_responses_total{{{labels}}}"));
    assert_eq!(
        responses(r#"transport="udp",type="A",rcode="NOERROR",zone="foobar.com.""#),
        7.0,
        "{metrics}"
    );
    assert_eq!(
        responses(r#"transport="udp",type="MX",rcode="NOERROR",zone="foobar.com.""#),
        3.0
    );
    assert_eq!(
        responses(r#"transport="tcp",type="AAAA",rcode="NOERROR",zone="foobar.com.""#),
        4.0
    );
    assert_eq!(
        responses(r#"transport="udp",type="A",rcode="NXDOMAIN",zone="foobar.com.""#),
        5.0
    );
    assert_eq!(
        responses(r#"transport="udp",type="A",rcode="REFUSED",zone="""#),
        2.0
    );
    assert_eq!(
        responses(r#"transport="udp",type="other",rcode="NOERROR",zone="foobar.com.""#),
        1.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"foobar_dns_response_size_bytes_count{transport="udp"}"#
        ),
        18.0
    );
    assert_eq!(
        value(
            &metrics,
            r#"foobar_dns_response_size_bytes_count{transport="tcp"}"#
        ),
        4.0
    );
    assert_eq!(value(&metrics, "foobar_dns_tcp_connections_total"), 4.0);
    assert_eq!(
        value(&metrics, r#"foobar_dns_zone_serial{zone="foobar.com."}"#),
        2026112901.0
    );
    assert_eq!(
        value(&metrics, r#"foobar_dns_zone_load_ok{zone="foobar.com."}"#),
        1.0
    );
    assert!(
        value(&metrics, "process_resident_memory_bytes") > 1e6,
        "{metrics}"
    );
    assert!(value(&metrics, "process_open_fds") > 5.0);

    // The exposition is what Prometheus reads.
    support::promtool_check(
        "metrics_count_dns_queries_by_transport_type_rcode_and_zone",
        &metrics,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_http_requests_by_protocol_method_and_status() {
    use support::web::{self, fetch};
    let server = Foobar::setup().shipped_site().start();
    let admin = server.admin();
    let pem = server.certificate_pem();
    for proto in web::ALL {
        for _ in 0..3 {
            let reply = fetch(proto, server.https, &pem, web::get("/", &[])).await;
            assert_eq!(reply.status, 200);
        }
        for _ in 0..2 {
            let reply = fetch(proto, server.https, &pem, web::get("/missing", &[])).await;
            assert_eq!(reply.status, 404);
        }
    }
    // A request is counted when its response is done, which the client may see first.
    let series = |proto: &str, status: &str| {
        format!(
            r#"foobar_http_requests_total{{protocol="{proto}",method="GET",status="{status}"}}"#
        )
    };
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = tokio::task::spawn_blocking(move || admin_get(admin, "/metrics").1)
            .await
            .unwrap();
        if ["h1", "h2", "h3"]
            .iter()
            .all(|p| value(&metrics, &series(p, "4xx")) >= 2.0)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    for proto in ["h1", "h2", "h3"] {
        assert_eq!(
            value(&metrics, &series(proto, "2xx")),
            3.0,
            "{proto}\n{metrics}"
        );
        assert_eq!(value(&metrics, &series(proto, "4xx")), 2.0, "{proto}");
        assert_eq!(
            value(
                &metrics,
                &format!(r#"foobar_http_request_duration_seconds_count{{protocol="{proto}"}}"#)
            ),
            5.0,
            "{proto}"
        );
        assert_eq!(
            value(
                &metrics,
                &format!(r#"foobar_http_connections_total{{protocol="{proto}"}}"#)
            ),
            5.0,
            "{proto}: one connection per request"
        );
    }
    assert_eq!(value(&metrics, "foobar_tls_handshakes_total"), 10.0);
    assert_eq!(
        value(
            &metrics,
            r#"foobar_quic_handshakes_total{outcome="accepted"}"#
        ),
        5.0
    );
    assert!(
        metrics.contains("foobar_quic_packets_dropped_total "),
        "{metrics}"
    );
    assert_eq!(value(&metrics, "foobar_tls_handshake_failures_total"), 0.0);
    assert!(
        metrics
            .contains(r#"foobar_tls_certificate_expiry_timestamp_seconds{name="www.foobar.com"}"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_app_requests_by_route_and_database_operations() {
    use bytes::Bytes;
    use support::web::{self, Proto, fetch};
    let server = Foobar::setup()
        .shipped_site()
        .app("api_token = \"metrics-token\"")
        .start();
    let admin = server.admin();
    let pem = server.certificate_pem();
    for i in 0..3 {
        let body = format!(r#"{{"title": "Post {i}", "body": "counted"}}"#);
        let request = http::Request::post("https://www.foobar.com/api/posts")
            .header("content-type", "application/json")
            .header("authorization", "Bearer metrics-token")
            .body(Bytes::from(body))
            .unwrap();
        assert_eq!(
            fetch(Proto::H2, server.https, &pem, request).await.status,
            201
        );
    }
    for _ in 0..2 {
        let missing = fetch(
            Proto::H1,
            server.https,
            &pem,
            web::get("/api/posts/999", &[]),
        )
        .await;
        assert_eq!(missing.status, 404);
    }
    // A kept read: made once (a miss), then kept (a hit), then a 304 to its ETag (a hit).
    let first = fetch(Proto::H2, server.https, &pem, web::get("/api/posts/1", &[])).await;
    assert_eq!(first.status, 200);
    let again = fetch(Proto::H1, server.https, &pem, web::get("/api/posts/1", &[])).await;
    assert_eq!(again.body, first.body);
    let etag = first.header("etag").unwrap().to_string();
    let not_modified = fetch(
        Proto::H3,
        server.https,
        &pem,
        web::get("/api/posts/1", &[("if-none-match", etag.as_str())]),
    )
    .await;
    assert_eq!(not_modified.status, 304);
    let ready = fetch(Proto::H3, server.https, &pem, web::get("/readyz", &[])).await;
    assert_eq!(ready.status, 200);

    let metrics = tokio::task::spawn_blocking(move || admin_get(admin, "/metrics").1)
        .await
        .unwrap();
    let requests = |route: &str, status: &str| {
        value(
            &metrics,
            &format!(r#"foobar_app_requests_total{{route="{route}",status="{status}"}}"#),
        )
    };
    assert_eq!(requests("/api/posts", "2xx"), 3.0, "{metrics}");
    assert_eq!(requests("/api/posts/{id}", "4xx"), 2.0);
    assert_eq!(requests("/api/posts/{id}", "2xx"), 2.0);
    assert_eq!(requests("/api/posts/{id}", "3xx"), 1.0);
    let lookups = |result: &str| {
        value(
            &metrics,
            &format!(r#"foobar_app_cache_lookups_total{{result="{result}"}}"#),
        )
    };
    assert_eq!(lookups("miss"), 3.0, "two 404s and the first read");
    assert_eq!(lookups("hit"), 2.0);
    assert_eq!(lookups("not_modified"), 1.0);
    assert_eq!(requests("/readyz", "2xx"), 1.0);
    let operations = |name: &str| {
        value(
            &metrics,
            &format!(r#"foobar_db_operation_duration_seconds_count{{operation="{name}"}}"#),
        )
    };
    assert_eq!(operations("create_post"), 3.0);
    assert_eq!(operations("get_post"), 3.0, "kept reads query nothing");
    assert_eq!(
        value(&metrics, r#"foobar_db_errors_total{kind="unavailable"}"#),
        0.0
    );
    assert!(
        metrics.contains("foobar_db_connections{state=\"idle\"}"),
        "{metrics}"
    );
}

/// Runs `foobar ctl --admin ADDR ARGS...`: success, stdout.
fn ctl(admin: SocketAddr, args: &[&str]) -> (bool, String) {
    let output = support::output_within(
        std::process::Command::new(support::binary())
            .args(["ctl", "--admin", &admin.to_string()])
            .args(args),
    );
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

fn serial_in(status: &str) -> u64 {
    let json: serde_json::Value = serde_json::from_str(status).unwrap();
    let zone = json["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["zone"] == "foobar.com.")
        .unwrap();
    assert_eq!(zone["state"], "loaded", "{zone}");
    zone["serial"].as_u64().unwrap()
}

#[test]
fn ctl_shows_zones_and_their_serials_and_reloads() {
    let server = Foobar::start(&[("foobar.com.zone", &support::shipped_zone())]);
    let admin = server.admin();
    let (ok, status) = ctl(admin, &["--json", "status"]);
    assert!(ok, "{status}");
    assert_eq!(serial_in(&status), 2026112901);
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["database"]["ready"], true, "{json}");
    assert!(json["uptime_seconds"].is_u64());

    // An edit: the status follows.
    support::save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &support::shipped_zone().replace("2026112901", "2026112902"),
    );
    support::wait_until("the edit is in ctl status", || {
        serial_in(&ctl(admin, &["--json", "status"]).1) == 2026112902
    });

    // `ctl reload` applies a changed configuration: another zones folder.
    let other = server.config_path().with_file_name("other-zones");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(
        other.join("foobar.com.zone"),
        support::shipped_zone().replace("2026112901", "2026113001"),
    )
    .unwrap();
    let config = std::fs::read_to_string(server.config_path()).unwrap();
    let zones_line = config.lines().find(|l| l.starts_with("zones = ")).unwrap();
    std::fs::write(
        server.config_path(),
        config.replace(zones_line, &format!("zones = \"{}\"", other.display())),
    )
    .unwrap();
    let (ok, said) = ctl(admin, &["reload"]);
    assert!(ok, "{said}");
    let (ok, zones) = ctl(admin, &["--json", "zone", "list"]);
    assert!(ok);
    assert_eq!(serial_in(&zones), 2026113001);

    // One zone again, by name; an unknown one is an error.
    let (ok, said) = ctl(admin, &["zone", "reload", "foobar.com"]);
    assert!(ok, "{said}");
    assert!(said.contains("serial 2026113001"), "{said}");
    let (ok, _) = ctl(admin, &["zone", "reload", "nothing.example"]);
    assert!(!ok);
    // The text for a person names the zone and its serial.
    let (ok, text) = ctl(admin, &["status"]);
    assert!(ok);
    assert!(
        text.contains("foobar.com.") && text.contains("2026113001"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_parse_with_access_fields_and_sampled_dns_queries() {
    use support::web::{self, Proto, fetch};
    let server = Foobar::setup()
        .shipped_site()
        .log("format = \"json\"\ndns_queries = 2")
        .start();
    let pem = server.certificate_pem();
    let request = http::Request::get("https://www.foobar.com/")
        .header("user-agent", "metrics-test/1")
        .header("referer", "https://example.org/from")
        .body(bytes::Bytes::new())
        .unwrap();
    assert_eq!(
        fetch(Proto::H2, server.https, &pem, request).await.status,
        200
    );
    let _ = fetch(Proto::H1, server.https, &pem, web::get("/", &[])).await;
    for _ in 0..4 {
        support::query_udp(server.dns, "www.foobar.com.", RecordType::A);
    }
    server.wait_for_log("metrics-test/1");
    // Access and query lines are written in batches: wait for both sampled queries.
    support::wait_until("two sampled query lines", || {
        server
            .raw_log()
            .iter()
            .filter(|line| line.contains("\"dns_query\""))
            .count()
            >= 2
    });

    let raw = server.raw_log();
    let lines: Vec<serde_json::Value> = raw
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "{field} in {line}");
        }
    }
    let access = lines
        .iter()
        .find(|l| l["target"] == "access" && l["user_agent"] == "metrics-test/1")
        .unwrap();
    assert_eq!(access["method"], "GET");
    assert_eq!(access["path"], "/");
    assert_eq!(access["status"], 200);
    assert_eq!(access["host"], "www.foobar.com");
    assert_eq!(access["referer"], "https://example.org/from");
    assert_eq!(access["protocol"], "HTTP/2.0");
    let id = access["request_id"].as_str().unwrap();
    assert_eq!(id.len(), 16, "{id}");
    let ids: std::collections::HashSet<&str> = lines
        .iter()
        .filter(|l| l["target"] == "access")
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "each request its own id");
    // One query in two is logged.
    let queries: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "dns_query")
        .collect();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert_eq!(queries[0]["name"], "www.foobar.com.");
    assert_eq!(queries[0]["qtype"], "A");
    assert_eq!(queries[0]["rcode"], 0);
}

/// `RUST_LOG=info,access=off` switches access lines off (the server decides once, at start)
/// and leaves the rest of the log as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_switched_off_by_the_filter_are_not_written() {
    use support::web::{self, Proto, fetch};
    let server = Foobar::setup()
        .shipped_site()
        .log("dns_queries = 1")
        .env("RUST_LOG", "info,access=off")
        .start();
    let pem = server.certificate_pem();
    for proto in [Proto::H1, Proto::H2] {
        let request = web::get("/", &[("user-agent", "unlogged-test/1")]);
        assert_eq!(fetch(proto, server.https, &pem, request).await.status, 200);
    }
    support::query_udp(server.dns, "www.foobar.com.", RecordType::A);
    // The query's line is gathered after any access line of the requests before it.
    support::wait_until("the sampled query line", || {
        server
            .raw_log()
            .iter()
            .any(|line| line.contains("dns_query"))
    });
    let raw = server.raw_log();
    assert!(
        !raw.iter()
            .any(|line| line.contains("access") || line.contains("unlogged-test")),
        "{raw:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_that_failed_to_load_is_reported_by_readyz_ctl_and_metrics() {
    use support::web::{self, Proto, fetch};
    let server = Foobar::setup()
        .shipped_site()
        .zone("foobar.com.zone", &support::shipped_zone())
        .start();
    let admin = server.admin();
    support::save_by_rename(
        &server.zone_path("foobar.com.zone"),
        &support::shipped_zone()
            .replace("2026112901", "2026112902")
            .replace("IN A    8.8.8.8", "IN A    8.8.8.888"),
    );
    server.wait_for_log("the previous version keeps serving");
    let (ok, zones) = ctl(admin, &["--json", "zone", "list"]);
    assert!(ok);
    let json: serde_json::Value = serde_json::from_str(&zones).unwrap();
    assert_eq!(json["zones"][0]["state"], "failed", "{json}");
    assert_eq!(
        json["zones"][0]["serial"], 2026112901,
        "the old version serves"
    );

    let ready = fetch(
        Proto::H1,
        server.https,
        &server.certificate_pem(),
        web::get("/readyz", &[]),
    )
    .await;
    assert_eq!(ready.status, 200, "still serving");
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    let degraded = body["degraded"][0].as_str().unwrap_or_default();
    assert!(degraded.contains("foobar.com."), "{body}");

    let metrics = tokio::task::spawn_blocking(move || admin_get(admin, "/metrics").1)
        .await
        .unwrap();
    assert_eq!(
        value(&metrics, r#"foobar_dns_zone_load_ok{zone="foobar.com."}"#),
        0.0
    );
    assert!(value(&metrics, "foobar_dns_reload_failures_total") >= 1.0);
}
