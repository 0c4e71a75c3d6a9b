//! A MariaDB Galera cluster on loopback ports, for tests of several foobar nodes: each node's
//! datadir and sockets in a temporary folder, the first node bootstrapping the cluster and the
//! others joining it (state transfer by rsync). Every process is stopped when dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mysql_async::prelude::Queryable;

const PROVIDER: &str = "/usr/lib/galera/libgalera_smm.so";

/// One MariaDB node of the cluster.
struct Node {
    child: Option<Child>,
    datadir: PathBuf,
    port: u16,
    /// Group communication, incremental and full state transfer ports.
    gcomm: u16,
    ist: u16,
    sst: u16,
}

pub struct Galera {
    nodes: Vec<Node>,
    cluster: String,
    _dir: tempfile::TempDir,
}

impl Drop for Galera {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                    .stderr(Stdio::null())
                    .status();
                let _ = child.wait();
            }
        }
    }
}

/// Why a Galera cluster cannot run here, if it cannot.
pub fn missing() -> Option<&'static str> {
    if !Path::new(PROVIDER).exists() {
        return Some("galera-4");
    }
    if !super::installed("mariadbd", &["--version"])
        || !super::installed("mariadb-install-db", &["--version"])
    {
        return Some("mariadb-server");
    }
    if !super::installed("rsync", &["--version"]) {
        return Some("rsync");
    }
    let user = Command::new("id")
        .arg("mysql")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !user.is_ok_and(|status| status.success()) {
        return Some("a mysql user (mariadb-server makes it)");
    }
    None
}

impl Galera {
    /// A cluster of `size` nodes, all synced, with an empty database `foobar`.
    pub async fn start(size: usize) -> Galera {
        let dir = tempfile::tempdir().unwrap();
        // mariadbd runs as the mysql user (rsync's state transfer refuses to run as root).
        let open = |path: &Path| {
            Command::new("chmod").arg("755").arg(path).status().unwrap();
        };
        open(dir.path());
        let template = dir.path().join("template");
        let output = Command::new("mariadb-install-db")
            .args([
                "--no-defaults",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .arg(format!("--datadir={}", template.display()))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut nodes = Vec::new();
        for i in 0..size {
            let datadir = dir.path().join(format!("node{i}"));
            let copied = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&datadir)
                .status()
                .unwrap();
            assert!(copied.success());
            Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(&datadir)
                .status()
                .unwrap();
            nodes.push(Node {
                child: None,
                datadir,
                port: super::free_port(),
                gcomm: super::free_port(),
                ist: super::free_port(),
                sst: super::free_port(),
            });
        }
        let cluster = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.gcomm))
            .collect::<Vec<_>>()
            .join(",");
        let mut galera = Galera {
            nodes,
            cluster,
            _dir: dir,
        };
        galera.launch(0, true);
        galera.wait_synced(0, 1).await;
        for i in 1..size {
            galera.launch(i, false);
        }
        for i in 0..size {
            galera.wait_synced(i, size).await;
        }
        let server = format!("mysql://root@127.0.0.1:{}", galera.nodes[0].port);
        let pool = mysql_async::Pool::new(server.as_str());
        let mut conn = pool.get_conn().await.unwrap();
        conn.query_drop("CREATE DATABASE foobar CHARACTER SET utf8mb4")
            .await
            .unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
        galera
    }

    fn launch(&mut self, i: usize, bootstrap: bool) {
        let cluster = self.cluster.clone();
        let node = &mut self.nodes[i];
        let datadir = node.datadir.display().to_string();
        let mut command = Command::new("mariadbd");
        command
            .args(["--no-defaults", "--user=mysql", "--bind-address=127.0.0.1", "--skip-name-resolve"])
            .arg(format!("--datadir={datadir}"))
            .arg(format!("--socket={datadir}/sock"))
            .arg(format!("--pid-file={datadir}/pid"))
            .arg(format!("--log-error={datadir}/error.log"))
            .arg(format!("--port={}", node.port))
            .args([
                "--binlog-format=ROW",
                "--default-storage-engine=InnoDB",
                "--innodb-autoinc-lock-mode=2",
                "--innodb-buffer-pool-size=32M",
                "--wsrep-on=ON",
                "--wsrep-cluster-name=foobar-test",
                "--wsrep-sst-method=rsync",
                // Causal reads: a read on one node sees every write committed on any.
                "--wsrep-sync-wait=1",
            ])
            .arg(format!("--wsrep-provider={PROVIDER}"))
            .arg(format!("--wsrep-cluster-address=gcomm://{cluster}"))
            .arg(format!("--wsrep-node-address=127.0.0.1:{}", node.gcomm))
            .arg(format!("--wsrep-node-name=node{i}"))
            .arg(format!(
                "--wsrep-provider-options=gmcast.listen_addr=tcp://127.0.0.1:{g};ist.recv_addr=127.0.0.1:{ist};base_port={g}",
                g = node.gcomm,
                ist = node.ist
            ))
            .arg(format!("--wsrep-sst-receive-address=127.0.0.1:{}", node.sst))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        if bootstrap {
            command.arg("--wsrep-new-cluster");
        }
        node.child = Some(command.spawn().unwrap());
    }

    /// Waits until node `i` is synced in a cluster of `size`.
    async fn wait_synced(&self, i: usize, size: usize) {
        let start = Instant::now();
        let url = format!("mysql://root@127.0.0.1:{}", self.nodes[i].port);
        loop {
            let state = async {
                let pool = mysql_async::Pool::new(url.as_str());
                let mut conn = pool.get_conn().await.ok()?;
                let synced: Option<(String, String)> = conn
                    .query_first("SHOW STATUS LIKE 'wsrep_local_state_comment'")
                    .await
                    .ok()?;
                let members: Option<(String, String)> = conn
                    .query_first("SHOW STATUS LIKE 'wsrep_cluster_size'")
                    .await
                    .ok()?;
                drop(conn);
                let _ = pool.disconnect().await;
                Some((synced?.1, members?.1))
            }
            .await;
            if state
                .as_ref()
                .is_some_and(|(s, n)| s == "Synced" && n == &size.to_string())
            {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "galera node {i} not synced: {state:?}; {}",
                std::fs::read_to_string(self.nodes[i].datadir.join("error.log"))
                    .unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The URL of the `foobar` database on node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("mysql://root@127.0.0.1:{}/foobar", self.nodes[i].port)
    }

    /// Stops node `i` as an operator would (SIGTERM), waiting until it is gone.
    pub fn stop(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts node `i` again: it rejoins the cluster (catching up by incremental transfer).
    pub async fn rejoin(&mut self, i: usize) {
        self.launch(i, false);
        self.wait_synced(i, self.nodes.len()).await;
    }
}
