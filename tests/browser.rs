//! A real browser over HTTP/3: headless Chromium loads the home page and the test reads, over
//! the DevTools protocol, which protocol carried the navigation. Skipped with a message when
//! Chromium is not installed, unless FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes it required.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use support::{Foobar, skip_without};

const DEADLINE: Duration = Duration::from_secs(60);

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Chromium in its own process group, so the test can stop everything it started.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The negative process ID names the group; `--` keeps `kill` from reading it as an option.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn chromium_loads_the_home_page_over_http3() {
    let Some(binary) = chromium() else {
        return skip_without(
            "chromium_loads_the_home_page_over_http3",
            "Chromium",
            "apt-get install chromium",
        );
    };
    let server = Foobar::setup().shipped_site().start();
    let spki = server
        .wait_for_log("spki_sha256=")
        .split("spki_sha256=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let origin = format!("www.foobar.com:{}", server.https.port());
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--origin-to-force-quic-on={origin}"))
        .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
        .arg("--host-resolver-rules=MAP www.foobar.com 127.0.0.1,MAP * ~NOTFOUND")
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let browser = Browser {
        child,
        _profile: profile,
    };
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("ws://") {
                let _ = tx.send(line[at..].trim().to_string());
            }
        }
    });
    let browser_ws = rx
        .recv_timeout(DEADLINE)
        .expect("Chromium printed its DevTools address");
    let (mut socket, _) = tungstenite::connect(browser_ws.as_str()).unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
        tcp.set_read_timeout(Some(DEADLINE)).unwrap();
    }
    let mut next_id = 0;
    let mut call = |method: &str, params: Value, session: &Option<String>| -> Value {
        next_id += 1;
        let id = next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let message = socket.read().unwrap();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let value: Value = serde_json::from_str(text).unwrap();
            if value["id"] == id {
                return value;
            }
        }
    };
    let url = format!("https://{origin}/");
    let target = call("Target.createTarget", json!({ "url": url }), &None);
    let target_id = target["result"]["targetId"].as_str().unwrap().to_string();
    let attached = call(
        "Target.attachToTarget",
        json!({ "targetId": target_id, "flatten": true }),
        &None,
    );
    let session = attached["result"]["sessionId"].as_str().map(str::to_string);
    assert!(session.is_some(), "{attached}");
    let expression = "document.readyState === 'complete' && location.href + ' ' + \
                      performance.getEntriesByType('navigation')[0].nextHopProtocol + ' ' + \
                      document.title";
    let start = Instant::now();
    let loaded = loop {
        let reply = call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
            &session,
        );
        if let Some(text) = reply["result"]["result"]["value"].as_str()
            && text.starts_with(&url)
        {
            break text.to_string();
        }
        assert!(start.elapsed() < DEADLINE, "the page did not load: {reply}");
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(browser);
    assert_eq!(
        loaded,
        format!("{url} h3 foobar.com"),
        "loaded, but not over HTTP/3"
    );
    // The edge logged the request as HTTP/3.
    let line = server.wait_for_log("protocol=HTTP/3.0");
    assert!(line.contains("path=/ "), "{line}");
}
