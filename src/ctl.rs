//! `foobar ctl`: asks the running server's admin listener (as `knotc` asks knotd) and prints
//! the answer for a person, or as JSON with `--json`.

use std::net::SocketAddr;

use anyhow::Context;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;

/// What to ask.
#[derive(Debug, Clone)]
pub enum Request {
    Status,
    Reload,
    ZoneList,
    ZoneReload(String),
    AcmeRenew,
    /// An algorithm rollover of a zone to an algorithm.
    AlgorithmRollover(String, String),
}

/// The admin address: `admin` if given, else the configuration's `[admin] listen`.
pub fn address(
    config: Option<&std::path::Path>,
    admin: Option<SocketAddr>,
) -> anyhow::Result<SocketAddr> {
    if let Some(admin) = admin {
        return Ok(admin);
    }
    let config = crate::config(config)?;
    config
        .admin
        .address()?
        .context("the admin listener is off ([admin] listen = \"\"); foobar ctl needs it")
}

/// Asks, prints; whether the server said yes.
pub fn run(admin: SocketAddr, request: Request, json: bool) -> anyhow::Result<bool> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (method, path) = match &request {
        Request::Status => ("GET", "/status".to_string()),
        Request::Reload => ("POST", "/reload".to_string()),
        Request::ZoneList => ("GET", "/zones".to_string()),
        Request::AcmeRenew => ("POST", "/acme/renew".to_string()),
        Request::ZoneReload(name) => (
            "POST",
            format!(
                "/zones/{}/reload",
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
            ),
        ),
        Request::AlgorithmRollover(name, algorithm) => (
            "POST",
            format!(
                "/zones/{}/dnssec/algorithm/{}",
                percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC),
                percent_encoding::utf8_percent_encode(
                    algorithm,
                    percent_encoding::NON_ALPHANUMERIC
                )
            ),
        ),
    };
    let (status, body) = runtime
        .block_on(ask(admin, method, &path))
        .with_context(|| format!("asking the server's admin listener at {admin}"))?;
    let value: Value = serde_json::from_slice(&body)
        .with_context(|| format!("the admin listener answered {status} with no JSON"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", human(&request, &value));
    }
    Ok(status.is_success())
}

async fn ask(
    admin: SocketAddr,
    method: &str,
    path: &str,
) -> anyhow::Result<(hyper::StatusCode, Bytes)> {
    let stream = tokio::net::TcpStream::connect(admin).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

fn human(request: &Request, value: &Value) -> String {
    match request {
        Request::Status => status_text(value),
        Request::ZoneList => zones_text(value),
        Request::Reload
        | Request::ZoneReload(_)
        | Request::AcmeRenew
        | Request::AlgorithmRollover(..) => match value["ok"].as_bool() {
            Some(true) => format!("{}\n", value["message"].as_str().unwrap_or("done")),
            _ => format!("failed: {}\n", value["error"].as_str().unwrap_or("unknown")),
        },
    }
}

fn zones_text(value: &Value) -> String {
    let mut out = String::new();
    for zone in value["zones"].as_array().into_iter().flatten() {
        let loaded = zone["loaded_at"]
            .as_u64()
            .map_or_else(|| "-".to_string(), time_text);
        out.push_str(&format!(
            "{:<30} serial {:<12} {:>8} records  {:<11} {}\n",
            zone["zone"].as_str().unwrap_or("?"),
            zone["serial"],
            zone["records"],
            zone["state"].as_str().unwrap_or("?"),
            loaded,
        ));
        let dnssec = &zone["dnssec"];
        if dnssec.is_object() {
            let keys: Vec<String> = dnssec["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|key| {
                    let next = match (key["next_event"].as_str(), key["next_event_at"].as_u64()) {
                        (Some(event), Some(at)) => format!(", {event} {}", time_text(at)),
                        _ => String::new(),
                    };
                    format!(
                        "key {} (algorithm {}, {}, {}{next})",
                        key["tag"],
                        key["algorithm"],
                        key["role"].as_str().unwrap_or("?"),
                        key["state"].as_str().unwrap_or("?"),
                    )
                })
                .collect();
            let time = |field: &str| {
                dnssec[field]
                    .as_u64()
                    .map_or_else(|| "-".to_string(), time_text)
            };
            out.push_str(&format!(
                "  signed: {}; signatures expire {}, signed again {}\n",
                keys.join(", "),
                time("signatures_expire"),
                time("next_signing"),
            ));
        }
    }
    if out.is_empty() {
        out.push_str("no zones\n");
    }
    out
}

fn status_text(value: &Value) -> String {
    let uptime = value["uptime_seconds"].as_u64().unwrap_or(0);
    let mut out = format!(
        "foobar {}, pid {}, up {}\n",
        value["version"].as_str().unwrap_or("?"),
        value["pid"],
        duration_text(uptime)
    );
    let listeners = &value["listeners"];
    let addresses = |key: &str| {
        listeners[key]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let mut encrypted = String::new();
    for (key, name) in [("dns_tls", "dns over tls"), ("dns_quic", "dns over quic")] {
        let list = addresses(key);
        if !list.is_empty() {
            encrypted.push_str(&format!(", {name} {list}"));
        }
    }
    if let Some(path) = listeners["dns_https"]
        .as_str()
        .filter(|path| !path.is_empty())
    {
        encrypted.push_str(&format!(", dns over https {path}"));
    }
    out.push_str(&format!(
        "listening: dns {}{encrypted}, https {} (h1, h2, h3), http {}, admin {}\n",
        addresses("dns"),
        listeners["https"].as_str().unwrap_or("-"),
        listeners["http"].as_str().unwrap_or("-"),
        listeners["admin"].as_str().unwrap_or("-"),
    ));
    let none = Vec::new();
    for certificate in value["certificates"].as_array().unwrap_or(&none) {
        let Some(expires) = certificate["expires"].as_i64().filter(|e| *e > 0) else {
            continue;
        };
        let now = crate::admin::unix_now() as i64;
        out.push_str(&format!(
            "certificate: {} (expires {}, in {} days)\n",
            certificate["names"]
                .as_array()
                .map(|names| names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            time_text(expires as u64),
            (expires - now) / 86_400
        ));
    }
    for acme in value["acme"].as_array().unwrap_or(&none) {
        let names = acme["names"]
            .as_array()
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let expiry = acme["not_after"].as_u64().map_or_else(
            || "not issued yet".to_string(),
            |t| format!("expires {}", time_text(t)),
        );
        let renew = acme["renew_at"]
            .as_u64()
            .map_or_else(String::new, |t| format!(", renews {}", time_text(t)));
        out.push_str(&format!(
            "acme: {names}: {expiry}{renew}; last order: {}\n",
            acme["last_result"].as_str().unwrap_or("none yet")
        ));
    }
    let database = &value["database"];
    if let Some(backend) = database["backend"].as_str() {
        match database["ready"].as_bool() {
            Some(true) => out.push_str(&format!("database: {backend}, ready\n")),
            _ => out.push_str(&format!(
                "database: {backend}, NOT READY: {}\n",
                database["error"].as_str().unwrap_or("?")
            )),
        }
    }
    out.push_str("zones:\n");
    for line in zones_text(value).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out
}

fn duration_text(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        s => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Unix seconds as RFC 3339 UTC.
fn time_text(seconds: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}
