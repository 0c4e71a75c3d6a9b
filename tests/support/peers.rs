//! DNS servers nobody here wrote, run by tests as peers of foobar: each from a temporary folder,
//! on the address and port given, stopped (its whole process group) when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    net::{IpAddr, SocketAddr},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use hickory_proto::rr::RecordType;

/// A peer server run by a test, stopped (its whole process group) when dropped.
pub struct Peer {
    pub child: Child,
    pub ip: IpAddr,
    pub port: u16,
    pub log: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Peer {
    /// Runs `command` (a server configured in `dir`, to answer DNS on `address`) in its own
    /// process group, its stderr in `dir`/`log`, and waits until it answers.
    pub fn start(
        mut command: Command,
        address: SocketAddr,
        dir: tempfile::TempDir,
        log: &str,
    ) -> Peer {
        let log = dir.path().join(log);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .process_group(0)
            .spawn()
            .unwrap();
        let peer = Peer {
            child,
            ip: address.ip(),
            port: address.port(),
            log,
            _dir: dir,
        };
        super::wait_until("the server answers", || answers(peer.address()));
        peer
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// knotd on 127.0.0.1 `port` with `zones` (its own configuration text for keys, remotes, ACLs,
/// zones).
pub fn knot(port: u16, config: &str, zone_files: &[(&str, &str)]) -> Peer {
    knot_at(SocketAddr::from(([127, 0, 0, 1], port)), config, zone_files)
}

/// knotd on `address`.
pub fn knot_at(address: SocketAddr, config: &str, zone_files: &[(&str, &str)]) -> Peer {
    let port = address.port();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["run", "db", "zones"] {
        std::fs::create_dir(root.join(sub)).unwrap();
    }
    for (name, text) in zone_files {
        std::fs::write(root.join("zones").join(name), text).unwrap();
    }
    let conf = root.join("knot.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    rundir: \"{root}/run\"\n    listen: {ip}@{port}\n\
             log:\n  - target: stderr\n    any: info\n\
             database:\n    storage: \"{root}/db\"\n\
             template:\n  - id: default\n    storage: \"{root}/zones\"\n    zonefile-sync: -1\n    \
             journal-content: changes\n    zonefile-load: difference\n{config}",
            root = root.display(),
            ip = address.ip()
        ),
    )
    .unwrap();
    let mut knotd = Command::new("knotd");
    knotd.arg("-c").arg(&conf);
    Peer::start(knotd, address, dir, "knot.log")
}

/// nsd on `port` (its own configuration text for keys and zones).
pub fn nsd(port: u16, config: &str) -> Peer {
    nsd_with(port, "", config)
}

/// [`nsd`] with more lines for its `server:` clause (each indented, ending in a newline).
pub fn nsd_with(port: u16, server: &str, config: &str) -> Peer {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let conf = root.join("nsd.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    ip-address: 127.0.0.1@{port}\n    port: {port}\n    username: \"\"\n    \
             chroot: \"\"\n    zonesdir: \"{root}\"\n    pidfile: \"{root}/nsd.pid\"\n    \
             database: \"\"\n    xfrdfile: \"{root}/xfrd.state\"\n    zonelistfile: \"{root}/zone.list\"\n    \
             logfile: \"{root}/nsd.log\"\n    verbosity: 2\n{server}\
             remote-control:\n    control-enable: no\n{config}",
            root = root.display()
        ),
    )
    .unwrap();
    let mut nsd = Command::new("nsd");
    nsd.args(["-d", "-c"]).arg(&conf);
    Peer::start(
        nsd,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        "nsd.log",
    )
}

/// Whether something answers DNS on `server`.
pub fn answers(server: SocketAddr) -> bool {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let query = super::query_message("example.invalid.", RecordType::SOA);
    socket.send_to(&query, server).unwrap();
    let mut buf = [0u8; 512];
    socket.recv_from(&mut buf).is_ok()
}

/// Unbound on 127.0.0.1 as a validating resolver: `zone` is asked of `server` (a stub zone),
/// and `trust_anchors` (DS records in zone-file form) are its only trust anchors. Aggressive
/// NSEC is off, so that each answer is what the server said to that question.
pub fn unbound(zone: &str, server: SocketAddr, trust_anchors: &[String]) -> Peer {
    unbound_stubs(&[(zone, server)], trust_anchors)
}

/// [`unbound`] with several stub zones, each asked of its server: a parent zone and its
/// children, validated down from the parent's trust anchor.
pub fn unbound_stubs(stubs: &[(&str, SocketAddr)], trust_anchors: &[String]) -> Peer {
    let port = super::free_port();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let anchors: String = trust_anchors
        .iter()
        .map(|ds| format!("    trust-anchor: \"{ds}\"\n"))
        .collect();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-daemonize: no\n    \
             username: \"\"\n    chroot: \"\"\n    directory: \"{root}\"\n    \
             pidfile: \"{root}/unbound.pid\"\n    use-syslog: no\n    logfile: \"\"\n    \
             verbosity: 1\n    val-log-level: 2\n    do-not-query-localhost: no\n    \
             module-config: \"validator iterator\"\n    qname-minimisation: no\n    \
             aggressive-nsec: no\n    harden-referral-path: no\n{anchors}{stubs}",
            stubs = stubs
                .iter()
                .map(|(zone, server)| format!(
                    "stub-zone:\n    name: \"{zone}\"\n    stub-addr: {}@{}\n",
                    server.ip(),
                    server.port()
                ))
                .collect::<String>(),
        ),
    )
    .unwrap();
    let mut command = Command::new("unbound");
    command.arg("-d").arg("-c").arg(&conf);
    Peer::start(
        command,
        SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        "unbound.log",
    )
}
