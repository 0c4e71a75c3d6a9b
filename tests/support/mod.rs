//! Harness for end-to-end tests: the real `foobar` binary on port 0, its log, a DNS client, and
//! HTTP clients (`web`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod galera;
pub mod h2raw;
pub mod load;
pub mod pebble;
pub mod peers;
pub mod php;
pub mod upstream;
pub mod web;

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RecordType},
};

/// How long anything the server should do quickly may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// For a test that needs a tool a newcomer's machine may lack: says why the test is skipped, or
/// fails when FOOBAR_REQUIRE_INTEROP=1 (as in CI) makes the tool required.
pub fn skip_without(test: &str, tool: &str, install: &str) {
    assert!(
        std::env::var("FOOBAR_REQUIRE_INTEROP").as_deref() != Ok("1"),
        "{tool} is required (FOOBAR_REQUIRE_INTEROP=1) but missing"
    );
    eprintln!("SKIPPED {test}: {tool} not installed ({install})");
}

/// The MySQL/MariaDB server URL the MySQL tests use (FOOBAR_TEST_MYSQL_URL); without it the
/// test says why it is skipped, or fails when FOOBAR_REQUIRE_INTEROP=1 (as in CI).
pub fn mysql_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var("FOOBAR_TEST_MYSQL_URL") {
        return Some(url);
    }
    skip_without(
        test,
        "a MySQL server (FOOBAR_TEST_MYSQL_URL)",
        "e.g. FOOBAR_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306/test",
    );
    None
}

/// Whether `program` runs (with `args`, e.g. a version flag).
pub fn installed(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_foobar")
}

/// The zone shipped in `zones/`.
pub fn shipped_zone() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("zones/foobar.com.zone"))
        .unwrap()
}

/// A running `foobar serve` with its own folder, config, zones and static root.
pub struct Foobar {
    pub dir: tempfile::TempDir,
    pub dns: SocketAddr,
    pub https: SocketAddr,
    pub http: SocketAddr,
    child: Child,
    log: Log,
}

/// The server's log lines, each as text and as sent, with a signal for new ones.
type Log = Arc<(Mutex<(Vec<String>, Vec<String>)>, Condvar)>;

/// The `addr=` field of a log line.
fn address_of(line: &str) -> SocketAddr {
    line.split("addr=")
        .nth(1)
        .and_then(|a| a.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap()
}

/// A JSON log line in the text format's shape: `LEVEL target: message key=value ...`.
fn as_text(line: &str) -> Option<String> {
    let serde_json::Value::Object(fields) = serde_json::from_str(line).ok()? else {
        return None;
    };
    let field = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    };
    let mut text = format!(
        "{} {} {}: {}",
        field("timestamp"),
        field("level"),
        field("target"),
        field("message")
    );
    for (key, value) in &fields {
        if !matches!(key.as_str(), "timestamp" | "level" | "target" | "message") {
            match value {
                serde_json::Value::String(s) => text.push_str(&format!(" {key}={s}")),
                other => text.push_str(&format!(" {key}={other}")),
            }
        }
    }
    Some(text)
}

/// What to start `foobar` with.
#[derive(Default)]
pub struct Setup {
    zones: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    dns: Vec<String>,
    edge: Vec<String>,
    app: Vec<String>,
    log: Vec<String>,
    /// Tables after all others (`[[site]]`...).
    tables: Vec<String>,
    shipped_site: bool,
    env: Vec<(String, String)>,
    /// Listen on this address with these DNS, HTTPS and HTTP ports, rather than 127.0.0.1 on
    /// ports the system picks.
    at: Option<(std::net::IpAddr, u16, u16, u16)>,
    /// No zone files at all (a node with secondary zones only).
    no_zone_files: bool,
}

impl Setup {
    pub fn zone(mut self, name: &str, text: &str) -> Self {
        self.zones.push((name.to_string(), text.to_string()));
        self
    }

    /// A file under the static root.
    pub fn file(mut self, path: &str, bytes: impl Into<Vec<u8>>) -> Self {
        self.files.push((path.to_string(), bytes.into()));
        self
    }

    /// The repository's `public/` folder as the static root (copied).
    pub fn shipped_site(mut self) -> Self {
        self.shipped_site = true;
        self
    }

    /// A line for the `[edge]` table, e.g. `header_timeout = 1`.
    /// A line for the `[dns]` table of the config.
    pub fn dns(mut self, line: &str) -> Self {
        self.dns.push(line.to_string());
        self
    }

    /// A line for the `[edge]` table, e.g. `max_streams = 2`.
    pub fn edge(mut self, line: &str) -> Self {
        self.edge.push(line.to_string());
        self
    }

    /// A line for the `[log]` table, e.g. `format = "json"`.
    pub fn log(mut self, line: &str) -> Self {
        self.log.push(line.to_string());
        self
    }

    /// A line for the `[app]` table, e.g. `database = "mysql://..."`.
    pub fn app(mut self, line: &str) -> Self {
        self.app.push(line.to_string());
        self
    }

    /// TOML after every other table: `[[site]]` tables and their routes. `{dir}` stands for
    /// the server's folder.
    pub fn tables(mut self, text: &str) -> Self {
        self.tables.push(text.to_string());
        self
    }

    pub fn start(self) -> Foobar {
        let env = self.env.clone();
        Foobar::spawn_with(self.prepare(), &env)
    }

    /// Listens on `ip`, DNS on `dns`, HTTPS on `https`, plain HTTP on `http`.
    pub fn at(mut self, ip: std::net::IpAddr, dns: u16, https: u16, http: u16) -> Self {
        self.at = Some((ip, dns, https, http));
        self
    }

    /// Starts with an empty zones folder.
    pub fn without_zone_files(mut self) -> Self {
        self.no_zone_files = true;
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The folder with everything written (site, zones, `foobar.toml`), nothing started; the
    /// configuration's state_dir is `data/` in it, not created.
    pub fn prepare(self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("public");
        std::fs::create_dir_all(&root).unwrap();
        if self.shipped_site {
            let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("public");
            for entry in std::fs::read_dir(shipped).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), root.join(entry.file_name())).unwrap();
            }
        }
        for (path, bytes) in &self.files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
        std::fs::create_dir(dir.path().join("zones")).unwrap();
        let zones = if self.zones.is_empty() && !self.no_zone_files {
            vec![("foobar.com.zone".to_string(), shipped_zone())]
        } else {
            self.zones
        };
        for (name, text) in &zones {
            let path = dir.path().join("zones").join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let config = dir.path().join("foobar.toml");
        let (ip, dns_port, https_port, http_port) =
            self.at
                .unwrap_or((std::net::IpAddr::from([127, 0, 0, 1]), 0, 0, 0));
        let address = |port: u16| SocketAddr::new(ip, port);
        std::fs::write(
            &config,
            format!(
                "state_dir = \"{dir}/data\"\n\
                 [dns]\nlisten = [\"{dns_at}\"]\nzones = \"{dir}/zones\"\n{dns}\n\
                 [edge]\nhttp = \"{http_at}\"\nhttps = \"{https_at}\"\nroot = \"{dir}/public\"\n{edge}\n\
                 [app]\n{app}\n[admin]\nlisten = \"{admin_at}\"\n[log]\n{log}\n{tables}\n",
                log = self.log.join("\n"),
                tables = self
                    .tables
                    .join("\n")
                    .replace("{dir}", &dir.path().display().to_string()),
                admin_at = address(0),
                dns_at = address(dns_port),
                http_at = address(http_port),
                https_at = address(https_port),
                dir = dir.path().display(),
                dns = self.dns.join("\n"),
                edge = self.edge.join("\n"),
                app = self.app.join("\n"),
            ),
        )
        .unwrap();
        dir
    }
}

impl Foobar {
    /// Runs the binary on the configuration in `dir`.
    fn spawn(dir: tempfile::TempDir) -> Foobar {
        Foobar::spawn_with(dir, &[])
    }

    fn spawn_with(dir: tempfile::TempDir, env: &[(String, String)]) -> Foobar {
        let config = dir.path().join("foobar.toml");
        let mut child = Command::new(binary())
            .args(["serve", "--config"])
            .arg(&config)
            .env(
                "RUST_LOG",
                std::env::var("FOOBAR_TEST_LOG")
                    .unwrap_or_else(|_| "info,foobar_dns::zone::watch=debug".to_string()),
            )
            // After the default filter, so that a test can set its own.
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group: the processes that take over from it (upgrades) are in
            // it too, and all go when the test ends.
            .process_group(0)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new((Mutex::new((Vec::new(), Vec::new())), Condvar::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[foobar] {line}");
                // A JSON line ([log] format = "json") is kept as the text form would read,
                // so that what tests look for is found either way; `raw_log` has it as sent.
                let text = as_text(&line).unwrap_or_else(|| line.clone());
                let mut log = sink.0.lock().unwrap();
                log.0.push(text);
                log.1.push(line);
                drop(log);
                sink.1.notify_all();
            }
        });
        let unset: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut server = Foobar {
            dir,
            dns: unset,
            https: unset,
            http: unset,
            child,
            log,
        };
        server.dns = server.address_in("dns listening on udp");
        server.https = server.address_in("https listening on tcp");
        server.http = server.address_in("http listening on tcp");
        // Last of the start: the PID file is written.
        server.wait_for_log(" serving pid=");
        server
    }
}

impl Foobar {
    /// Starts the binary serving these zone files (name, text).
    pub fn start(zones: &[(&str, &str)]) -> Foobar {
        zones
            .iter()
            .fold(Setup::default(), |setup, (name, text)| {
                setup.zone(name, text)
            })
            .start()
    }

    pub fn setup() -> Setup {
        Setup::default()
    }

    /// The admin listener's address (`/metrics`, `foobar ctl`): the last one logged, which
    /// is the serving process's after an upgrade.
    pub fn admin(&self) -> SocketAddr {
        self.wait_for_log("admin listening");
        let log = self.log();
        let line = log
            .iter()
            .rev()
            .find(|line| line.contains("admin listening"))
            .unwrap();
        address_of(line)
    }

    pub fn address_in(&self, needle: &str) -> SocketAddr {
        address_of(&self.wait_for_log(needle))
    }

    /// Kills the server at once (SIGKILL, every process of its group), as a crash would.
    pub fn kill(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
    }

    /// Starts the server again on the same folder after `kill`.
    pub fn respawn(mut self) -> Foobar {
        let dir = tempfile::TempDir::new().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        drop(self);
        Foobar::spawn(dir)
    }

    /// Stops the server (SIGTERM) and starts it again on the same folder, config and data.
    pub fn restart(self) -> Foobar {
        self.restart_after(Duration::ZERO)
    }

    /// [`Foobar::restart`], the server stopped for `pause` in between.
    pub fn restart_after(mut self, pause: Duration) -> Foobar {
        self.signal("TERM");
        assert!(self.wait().success());
        std::thread::sleep(pause);
        let dir = tempfile::TempDir::new().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        drop(self);
        Foobar::spawn(dir)
    }

    /// The base64 SHA-256 of the certificate's key, as the server logged it (what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes).
    pub fn spki_sha256(&self) -> String {
        self.wait_for_log("spki_sha256=")
            .split("spki_sha256=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .unwrap()
            .to_string()
    }

    /// The API token the server generated.
    pub fn api_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/api-token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The self-signed certificate the server created, PEM.
    pub fn certificate_pem(&self) -> Vec<u8> {
        std::fs::read(self.dir.path().join("data/tls/self-signed.crt")).unwrap()
    }

    pub fn zone_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("zones").join(name)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process serving now, as the PID file names it (after an upgrade, not `pid()`).
    pub fn serving_pid(&self) -> u32 {
        let path = self.state_path("foobar.pid");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim()
            .parse()
            .unwrap()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("foobar.toml")
    }

    /// Runs `foobar COMMAND --config <this server's config>` (upgrade, reload).
    pub fn control(&self, command: &str) -> std::process::Output {
        output_within(
            Command::new(binary())
                .arg(command)
                .arg("--config")
                .arg(self.config_path()),
        )
    }

    /// Every log line so far.
    pub fn log(&self) -> Vec<String> {
        self.log.0.lock().unwrap().0.clone()
    }

    /// Every log line so far, as the server wrote it.
    pub fn raw_log(&self) -> Vec<String> {
        self.log.0.lock().unwrap().1.clone()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        self.wait_for_log_after(0, needle)
    }

    /// Waits for a log line containing `needle` among the lines after the first `skip`.
    pub fn wait_for_log_after(&self, skip: usize, needle: &str) -> String {
        let (lines, changed) = &*self.log;
        let start = Instant::now();
        let mut guard = lines.lock().unwrap();
        loop {
            if let Some(line) = guard.0.iter().skip(skip).find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = DEADLINE.checked_sub(start.elapsed()).unwrap_or_else(|| {
                panic!(
                    "no log line with {needle:?} within {DEADLINE:?}; log:\n{}",
                    guard.0.join("\n")
                )
            });
            guard = changed.wait_timeout(guard, left).unwrap().0;
        }
    }

    pub fn log_len(&self) -> usize {
        self.log.0.lock().unwrap().0.len()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < DEADLINE, "foobar did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn query(&self, name: &str, rtype: RecordType) -> Message {
        query_udp(self.dns, name, rtype)
    }

    /// The path of a file under the server's `state_dir`.
    pub fn state_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    /// Queries until `check` holds for the reply; returns how long it took.
    pub fn until(
        &self,
        name: &str,
        rtype: RecordType,
        check: impl Fn(&Message) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if check(&self.query(name, rtype)) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{name} {rtype} never changed; log:\n{}",
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs `command` to its end, killing it and failing after [`DEADLINE`] so that a command that
/// should exit but serves instead fails the test rather than hanging it.
pub fn output_within(command: &mut Command) -> std::process::Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match finished.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-s", "KILL", &id.to_string()])
                .status();
            panic!("the command did not exit within {DEADLINE:?}");
        }
    }
}

/// GET `path` from the admin listener (plain HTTP): status and body.
pub fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// Checks a `/metrics` exposition with `promtool check metrics`, as Prometheus would read it;
/// says why it is skipped when promtool is missing (required when FOOBAR_REQUIRE_INTEROP=1).
pub fn promtool_check(test: &str, metrics: &str) {
    use std::io::Write;
    if !installed("promtool", &["--version"]) {
        return skip_without(
            &format!("{test} (promtool)"),
            "promtool",
            "apt-get install prometheus",
        );
    }
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Runs `foobar COMMAND` (upgrade, reload) against `server` off the async runtime: whether it
/// succeeded, its stdout and stderr.
pub async fn control_async(server: &Foobar, command: &'static str) -> (bool, String, String) {
    let path = server.config_path();
    let output = tokio::task::spawn_blocking(move || {
        output_within(
            Command::new(binary())
                .arg(command)
                .arg("--config")
                .arg(path),
        )
    })
    .await
    .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port free for both TCP and UDP on each of `ips` just now, for a process the test starts
/// with the port in its configuration (a peer, or foobar on several addresses).
///
/// The port is chosen below the kernel's ephemeral range (`ip_local_port_range`), from which
/// every connection's own port and every socket bound to port 0 is taken: a port learned by
/// binding port 0 and closing it could be handed to such a socket before the process binds it
/// (a CI run lost a test to that), where one below the range can only be taken by a socket
/// asking for it by number. Each call of this process gives another port.
pub fn free_port_on(ips: &[std::net::IpAddr]) -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOWEST: u32 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1);
    // Processes run one after another start at different places in the span.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let start = std::process::id().wrapping_mul(7_919) % span;
    let _ = NEXT.compare_exchange(u32::MAX, start, Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..span {
        let port = (LOWEST + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        let free = ips.iter().all(|&ip| {
            std::net::TcpListener::bind((ip, port)).is_ok() && UdpSocket::bind((ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
    panic!("no port below {ephemeral} is free on {ips:?}");
}

/// [`free_port_on`] 127.0.0.1.
pub fn free_port() -> u16 {
    free_port_on(&[std::net::IpAddr::from([127, 0, 0, 1])])
}

/// Kills process group `group` (a process started with `process_group(0)`, and all it started).
pub fn kill_group(group: u32) {
    // The negative process ID names the group; `--` keeps `kill` from reading it as an option.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{group}")])
        .stderr(Stdio::null())
        .status();
}

/// Polls `check` until it holds; fails after [`DEADLINE`] naming `what`.
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Bytes written on the IPv4 TCP connection `local` → `remote` and not yet taken by the peer
/// (the send queue in /proc/net/tcp); `None` when there is no such connection.
pub fn unsent_bytes(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |addr: SocketAddr| match addr {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (local, remote) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) || fields.get(2) != Some(&remote.as_str()) {
            return None;
        }
        let (tx, _rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(tx, 16).ok()
    })
}

impl Drop for Foobar {
    fn drop(&mut self) {
        // The group is the first process's: it and every process started by an upgrade.
        kill_group(self.child.id());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether process `pid` has exited (gone, or a zombie waiting to be reaped).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

/// The wire bytes of a query with EDNS, as a stub resolver sends it.
pub fn query_message(name: &str, rtype: RecordType) -> Vec<u8> {
    let mut message = Message::query();
    message.metadata.id = 0x1234;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message.to_vec().unwrap()
}

/// One query over UDP with EDNS, as a stub resolver sends it.
pub fn query_udp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    socket.send_to(&query_message(name, rtype), server).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).unwrap();
    Message::from_vec(&buf[..len]).unwrap()
}

/// One query over a new TCP connection.
pub fn query_tcp(server: SocketAddr, name: &str, rtype: RecordType) -> Message {
    message_tcp(server, &query_message(name, rtype))
}

/// One message (a query as wire bytes) over a new TCP connection; the reply.
pub fn message_tcp(server: SocketAddr, query: &[u8]) -> Message {
    let mut stream = std::net::TcpStream::connect(server).unwrap();
    Message::from_vec(&exchange_tcp(&mut stream, query)).unwrap()
}

/// Sends `query` on `stream` and reads one reply, with RFC 1035 section 4.2.2 framing.
pub fn exchange_tcp(stream: &mut std::net::TcpStream, query: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut framed = u16::try_from(query.len()).unwrap().to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).unwrap();
    reply
}

/// The A or AAAA addresses in the answer section, as text.
pub fn addresses(reply: &Message) -> Vec<String> {
    reply
        .answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect()
}

/// Replaces a file the way most editors save: write a sibling, then rename over.
pub fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A database of its own on the test's MySQL server, dropped at the end.
pub struct Database {
    pub server: String,
    pub name: String,
}

impl Database {
    /// `foobar_TAG_PID` on the server `url` names (any database in the URL is only where to
    /// connect), created empty.
    pub async fn create(url: &str, tag: &str) -> Database {
        let name = format!("foobar_{tag}_{}", std::process::id());
        let pool = mysql_async::Pool::new(url);
        let mut conn = pool.get_conn().await.unwrap();
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("DROP DATABASE IF EXISTS {name}"))
            .await
            .unwrap();
        conn.query_drop(format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
        Database {
            server: url.to_string(),
            name,
        }
    }
}

impl Database {
    /// The URL of this database, for `[app] database`.
    pub fn url(&self) -> String {
        let server = self
            .server
            .rsplit_once('/')
            .map_or(self.server.as_str(), |(s, _)| s);
        format!("{server}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (url, name) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let pool = mysql_async::Pool::new(url.as_str());
                if let Ok(mut conn) = pool.get_conn().await {
                    use mysql_async::prelude::Queryable;
                    let _ = conn.query_drop(format!("DROP DATABASE {name}")).await;
                }
                let _ = pool.disconnect().await;
            });
        })
        .join();
    }
}
