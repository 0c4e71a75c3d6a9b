//! Headless Chromium driven over the DevTools protocol, in its own process group and profile:
//! for tests that load pages as a browser does (over HTTP/3 among others).
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    net::TcpStream,
    os::unix::process::CommandExt,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

/// How long a page may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Chromium's command, if it is installed.
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// A running Chromium with one page, attached.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    /// The HOME it runs with, when it has its own (its NSS certificate database).
    _home: Option<tempfile::TempDir>,
    socket: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    session: Option<String>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        super::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts `binary` with `www.foobar.com` mapped to loopback, QUIC forced for `origin`
    /// (host:port), and the certificate whose key has the SHA-256 `spki` accepted.
    pub fn start(binary: &str, origin: &str, spki: &str) -> Browser {
        Browser::launch(
            binary,
            &[
                format!("--origin-to-force-quic-on={origin}"),
                format!("--ignore-certificate-errors-spki-list={spki}"),
                "--host-resolver-rules=MAP www.foobar.com 127.0.0.1,MAP * ~NOTFOUND".to_string(),
            ],
            None,
        )
    }

    /// Starts `binary` trusting the CA root `root_pem` as an operator would have it trust a
    /// private CA (in the NSS certificate database of a HOME of its own, made with NSS's
    /// `certutil`): certificates are verified, none is pinned. QUIC is forced for `quic_origin`
    /// (host:port) if given: Chromium speaks QUIC to a certificate from a root not built into
    /// it only there. `www.foobar.com` is mapped to loopback. `None` when certutil is missing.
    pub fn trusting(binary: &str, root_pem: &[u8], quic_origin: Option<&str>) -> Option<Browser> {
        let home = tempfile::tempdir().unwrap();
        let nssdb = home.path().join(".pki/nssdb");
        std::fs::create_dir_all(&nssdb).unwrap();
        let root = home.path().join("root.pem");
        std::fs::write(&root, root_pem).unwrap();
        let db = format!("sql:{}", nssdb.display());
        let certutil = |args: &[&str]| {
            Command::new("certutil")
                .args(args)
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !certutil(&["-N", "-d", &db, "--empty-password"]) {
            return None;
        }
        let root = root.display().to_string();
        assert!(certutil(&[
            "-A", "-d", &db, "-t", "C,,", "-n", "test CA", "-i", &root
        ]));
        let mut args =
            vec!["--host-resolver-rules=MAP www.foobar.com 127.0.0.1,MAP * ~NOTFOUND".to_string()];
        args.extend(quic_origin.map(|origin| format!("--origin-to-force-quic-on={origin}")));
        Some(Browser::launch(binary, &args, Some(home)))
    }

    fn launch(binary: &str, extra: &[String], home: Option<tempfile::TempDir>) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new(binary);
        if let Some(home) = &home {
            command.env("HOME", home.path());
        }
        let mut child = command
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
            .args(extra)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let browser_ws = match rx.recv_timeout(DEADLINE) {
            Ok(address) => address,
            Err(_) => {
                super::kill_group(child.id());
                panic!("Chromium did not print its DevTools address");
            }
        };
        let (mut socket, _) = tungstenite::connect(browser_ws.as_str()).unwrap();
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = socket.get_mut() {
            tcp.set_read_timeout(Some(DEADLINE)).unwrap();
        }
        let mut browser = Browser {
            child,
            _profile: profile,
            _home: home,
            socket,
            next_id: 0,
            session: None,
        };
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["result"]["targetId"].as_str().unwrap().to_string();
        let attached = browser.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        browser.session = attached["result"]["sessionId"].as_str().map(str::to_string);
        assert!(browser.session.is_some(), "{attached}");
        browser
    }

    /// One DevTools command on the page (once attached): its reply.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        self.socket
            .send(tungstenite::Message::text(message.to_string()))
            .unwrap();
        loop {
            let message = self.socket.read().unwrap();
            let Ok(text) = message.to_text() else {
                continue;
            };
            let value: Value = serde_json::from_str(text).unwrap();
            if value["id"] == id {
                return value;
            }
        }
    }

    /// The value of a JavaScript expression on the page.
    pub fn evaluate(&mut self, expression: &str) -> Value {
        let reply = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        reply["result"]["result"]["value"].clone()
    }

    /// Loads `url` and waits until it is complete: the URL it ended on, the protocol that
    /// carried it (`h3`, `h2`...), its title and text.
    pub fn load(&mut self, url: &str) -> Page {
        self.call("Page.navigate", json!({ "url": url }));
        let expression = "document.readyState === 'complete' && location.href !== 'about:blank' \
                          && JSON.stringify([location.href, \
                          performance.getEntriesByType('navigation')[0].nextHopProtocol, \
                          document.title, document.body.innerText])";
        let start = Instant::now();
        loop {
            if let Some(text) = self.evaluate(expression).as_str() {
                let [href, protocol, title, text]: [String; 4] =
                    serde_json::from_str(text).unwrap();
                return Page {
                    href,
                    protocol,
                    title,
                    text,
                };
            }
            assert!(start.elapsed() < DEADLINE, "{url} did not load");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A page as loaded.
#[derive(Debug)]
pub struct Page {
    pub href: String,
    pub protocol: String,
    pub title: String,
    pub text: String,
}
