//! A small harness: a real foobar-dns server on 127.0.0.1 port 0, and a DNS client on the wire.
#![allow(dead_code, clippy::unwrap_used)]

use std::{net::SocketAddr, path::Path, time::Duration};

use foobar_dns::{Config, Dns};
use hickory_proto::{
    op::{Edns, Message, Query},
    rr::{Name, RData, Record, RecordType},
    serialize::binary::{BinDecodable, BinDecoder},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(3);

pub struct Server {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Serves the given zone files (name, text) from a fresh folder.
    pub async fn start(files: &[(&str, &str)]) -> Server {
        Self::start_with(files, |_| {}).await
    }

    pub async fn start_with(files: &[(&str, &str)], tweak: impl FnOnce(&mut Config)) -> Server {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            zones: dir.path().to_path_buf(),
            ..Config::default()
        };
        tweak(&mut config);
        let dns = Dns::load(&config, &dir.path().join("state")).unwrap();
        let sockets = vec![foobar_dns::bind(config.listen[0]).unwrap()];
        let addr = sockets[0].local_addr().unwrap();
        let shutdown = CancellationToken::new();
        tokio::spawn(dns.run(
            sockets,
            foobar_dns::TlsSockets::default(),
            shutdown.clone(),
            Duration::from_secs(10),
        ));
        Server {
            addr,
            dir,
            shutdown,
        }
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Sends raw bytes over UDP; the reply, or `None` after a short wait.
    pub async fn udp_raw(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(self.addr).await.unwrap();
        socket.send(packet).await.unwrap();
        let mut buf = vec![0u8; 65535];
        match tokio::time::timeout(WAIT, socket.recv(&mut buf)).await {
            Ok(Ok(len)) => Some(buf[..len].to_vec()),
            _ => None,
        }
    }

    /// Sends `packet`, then a valid query from the same socket: true if the first reply is the
    /// valid query's, i.e. `packet` got no answer.
    pub async fn udp_dropped(&self, packet: &[u8]) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(self.addr).await.unwrap();
        socket.send(packet).await.unwrap();
        let mut probe = query("probe.invalid.", RecordType::A);
        probe.metadata.id = 0x4321;
        socket.send(&probe.to_vec().unwrap()).await.unwrap();
        let mut buf = vec![0u8; 65535];
        let len = tokio::time::timeout(WAIT, socket.recv(&mut buf))
            .await
            .expect("a reply to the probe")
            .unwrap();
        len >= 2 && buf[..2] == [0x43, 0x21]
    }

    pub async fn udp(&self, query: &Message) -> Message {
        let reply = self
            .udp_raw(&query.to_vec().unwrap())
            .await
            .expect("a UDP reply");
        Message::from_vec(&reply).unwrap()
    }

    /// Sends each message on one TCP connection and reads `replies` framed messages back.
    pub async fn tcp_raw(&self, packets: &[Vec<u8>], replies: usize) -> Vec<Vec<u8>> {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        for packet in packets {
            stream
                .write_all(&(packet.len() as u16).to_be_bytes())
                .await
                .unwrap();
            stream.write_all(packet).await.unwrap();
        }
        let mut out = Vec::new();
        for _ in 0..replies {
            let read = async {
                let len = stream.read_u16().await.ok()?;
                let mut buf = vec![0u8; usize::from(len)];
                stream.read_exact(&mut buf).await.ok()?;
                Some(buf)
            };
            match tokio::time::timeout(WAIT, read).await {
                Ok(Some(buf)) => out.push(buf),
                _ => break,
            }
        }
        out
    }

    pub async fn tcp(&self, query: &Message) -> Message {
        let replies = self.tcp_raw(&[query.to_vec().unwrap()], 1).await;
        Message::from_vec(replies.first().expect("a TCP reply")).unwrap()
    }
}

/// A query for `name`/`rtype` with EDNS (1232 bytes), as a stub resolver sends it.
pub fn query(name: &str, rtype: RecordType) -> Message {
    let mut message = plain_query(name, rtype);
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message
}

/// A query without EDNS.
pub fn plain_query(name: &str, rtype: RecordType) -> Message {
    let mut message = Message::query();
    message.metadata.id = 0x1234;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    message
}

/// Records as `owner ttl type rdata`, sorted, for comparisons.
pub fn render(records: &[Record]) -> Vec<String> {
    let mut lines: Vec<String> = records
        .iter()
        .filter(|r| r.record_type() != RecordType::OPT)
        .map(|r| format!("{} {} {} {}", r.name, r.ttl, r.record_type(), data(r)))
        .collect();
    lines.sort();
    lines
}

/// RDATA as text; hickory has no DNAME type, so its target is decoded here.
fn data(record: &Record) -> String {
    if let RData::Unknown { code, rdata } = &record.data
        && *code == RecordType::DNAME
        && let Ok(name) = Name::read(&mut BinDecoder::new(&rdata.anything))
    {
        return name.to_string();
    }
    record.data.to_string()
}

pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
