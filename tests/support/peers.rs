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
