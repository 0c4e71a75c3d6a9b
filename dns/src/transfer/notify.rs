//! Telling secondaries a zone changed (NOTIFY, RFC 1996), and asking a primary for its SOA:
//! small exchanges over UDP, retried, signed with TSIG where a key is set; over TLS with a
//! primary reached over TLS.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::TransferError;
use crate::{
    transfer::tls::{self, TlsAuth},
    transfer::tsig::{self, Key, StreamVerifier},
    wire::Rcode,
    wire::Rtype,
    wire::read,
    wire::rtype,
    wire::write::{Owner, Section, Writer},
    wire::{Class, Flags, Opcode},
    zone::Rr,
};

/// Tries per NOTIFY before giving up on a secondary; the wait doubles from one second.
const TRIES: u32 = 5;

/// Where this server's own queries come from: an address it listens on (of the family of the
/// server asked), so that a peer's rules by address see the address it knows this server by,
/// not whatever the system picks on a host with several.
#[derive(Debug, Clone, Default)]
pub struct Sources(pub Vec<std::net::IpAddr>);

impl Sources {
    /// The address to send from towards `to`, port 0.
    pub fn towards(&self, to: SocketAddr) -> SocketAddr {
        let ip = self
            .0
            .iter()
            .copied()
            .find(|ip| ip.is_ipv4() == to.is_ipv4() && !ip.is_unspecified())
            .unwrap_or(if to.is_ipv4() {
                std::net::IpAddr::from([0, 0, 0, 0])
            } else {
                std::net::IpAddr::from(std::net::Ipv6Addr::UNSPECIFIED)
            });
        SocketAddr::new(ip, 0)
    }

    /// A TCP connection to `to` from the address `towards` picks.
    pub async fn connect(&self, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
        let socket = if to.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(self.towards(to))?;
        socket.connect(to).await
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn random_id() -> u16 {
    let mut id = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    u16::from_be_bytes(id)
}

/// A NOTIFY for the zone with `soa` as its SOA record, signed with `key` if any: the message,
/// and its MAC when signed.
fn notify_message(id: u16, soa: &Rr, key: Option<&Key>) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut message = Vec::with_capacity(512);
    let mut w = Writer::new(
        &mut message,
        id,
        Flags::of_opcode(Opcode::NOTIFY) | Flags::AA,
        65_535,
    );
    w.question(&soa.owner, rtype::SOA, Class::IN);
    // The new SOA as a hint (RFC 1996 section 3.7).
    let _ = w.record(
        Section::Answer,
        Owner::At(12),
        rtype::SOA,
        soa.ttl,
        &soa.rdata,
    );
    let mac = key.map(|key| tsig::sign(&mut message, key, None, unix_now()));
    (message, mac)
}

/// Sends a NOTIFY for the zone of `soa` to `target`, retrying until it answers. Logs the
/// outcome; true if the secondary acknowledged it.
pub async fn send(soa: &Rr, target: SocketAddr, key: Option<Arc<Key>>, sources: &Sources) -> bool {
    let zone = crate::wire::name::to_text(&soa.owner);
    let serial = crate::zone::soa_serial_minimum(&soa.rdata).map_or(0, |(s, _)| s);
    let socket = match UdpSocket::bind(sources.towards(target)).await {
        Ok(socket) => socket,
        Err(e) => {
            warn!(%zone, %target, error = %e, "notify: no socket");
            return false;
        }
    };
    let id = random_id();
    let mut wait = Duration::from_secs(1);
    for _ in 0..TRIES {
        // Signed anew each try: the time in the signature must be fresh.
        let (message, mac) = notify_message(id, soa, key.as_deref());
        if let Err(e) = socket.send_to(&message, target).await {
            debug!(%zone, %target, error = %e, "notify send");
        }
        match tokio::time::timeout(wait, answer(&socket, id, target)).await {
            Ok(reply) => {
                let verdict = match (&key, &mac) {
                    (Some(key), Some(mac)) => {
                        StreamVerifier::new(key.clone(), mac.clone()).verify(&reply, unix_now())
                    }
                    _ => Ok(()),
                };
                let code = reply
                    .get(3)
                    .map_or(Rcode::SERVFAIL, |&flags| Rcode(u16::from(flags & 0xF)));
                match (verdict, code) {
                    (Ok(()), Rcode::NOERROR) => {
                        info!(%zone, %target, serial, "notify acknowledged");
                        crate::metrics::metrics().notified();
                        return true;
                    }
                    (Err(reason), _) => {
                        warn!(%zone, %target, %reason, "notify answer not trusted");
                        return false;
                    }
                    (Ok(()), code) => {
                        warn!(%zone, %target, rcode = %code, "notify refused");
                        return false;
                    }
                }
            }
            Err(_) => wait *= 2,
        }
    }
    warn!(%zone, %target, serial, tries = TRIES, "notify unanswered");
    false
}

/// The next reply to `id` from `from` on `socket`.
async fn answer(socket: &UdpSocket, id: u16, from: SocketAddr) -> Vec<u8> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if peer == from && len >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 {
            return buf[..len].to_vec();
        }
    }
}

/// Asks `primary` for the serial of the zone `origin` (wire form), over UDP, signed with `key`
/// if any; falls back to TCP when the answer is truncated. Over TLS with `tls`.
pub async fn primary_serial(
    origin: &[u8],
    primary: SocketAddr,
    key: Option<&Arc<Key>>,
    tls: Option<&TlsAuth>,
    sources: &Sources,
) -> Result<u32, TransferError> {
    let answers = ask(origin, rtype::SOA, primary, key, tls, sources).await?;
    for record in answers {
        if record.rtype == rtype::SOA && crate::wire::name::eq_ignore_case(&record.owner, origin) {
            return crate::zone::soa_serial_minimum(&record.rdata)
                .map(|(serial, _)| serial)
                .ok_or(TransferError::MalformedSoa);
        }
    }
    Err(TransferError::NoSoa)
}

/// The answer section `server` gives for `name` (wire form) and `qtype`, asked over UDP, signed
/// with `key` if any; over TCP when the answer is truncated; only over TLS with `tls`. An
/// RCODE other than NOERROR is an error.
pub async fn ask(
    name: &[u8],
    qtype: Rtype,
    server: SocketAddr,
    key: Option<&Arc<Key>>,
    tls: Option<&TlsAuth>,
    sources: &Sources,
) -> Result<Vec<read::Record>, TransferError> {
    let id = random_id();
    let mut message = Vec::with_capacity(512);
    Writer::new(&mut message, id, Flags::default(), 512).question(name, qtype, Class::IN);
    let mac = key.map(|key| tsig::sign(&mut message, key, None, unix_now()));
    let reply = if tls.is_some() {
        stream_exchange(&message, server, tls, sources).await?
    } else {
        let socket = UdpSocket::bind(sources.towards(server)).await?;
        let mut reply = None;
        for wait in [2, 4] {
            socket.send_to(&message, server).await?;
            if let Ok(got) =
                tokio::time::timeout(Duration::from_secs(wait), answer(&socket, id, server)).await
            {
                reply = Some(got);
                break;
            }
        }
        let reply = reply.ok_or(TransferError::NoAnswer(server))?;
        if reply[2] & 0x02 == 0 {
            reply
        } else {
            stream_exchange(&message, server, None, sources).await?
        }
    };
    if reply.len() < 12 {
        return Err(TransferError::Short);
    }
    if reply[..2] != id.to_be_bytes() {
        return Err(TransferError::OtherQuery);
    }
    if let (Some(key), Some(mac)) = (key, mac) {
        StreamVerifier::new(key.clone(), mac).verify(&reply, unix_now())?;
    }
    let code = Rcode(u16::from(reply[3] & 0xF));
    if code != Rcode::NOERROR {
        return Err(TransferError::Answered {
            server,
            rcode: code,
        });
    }
    let [_, answers, ..] = read::counts(&reply).ok_or(TransferError::Short)?;
    let mut at = read::after_question(&reply).ok_or(TransferError::Malformed)?;
    let mut records = Vec::with_capacity(usize::from(answers));
    for _ in 0..answers {
        let record = read::read_record(&reply, at).ok_or(TransferError::Malformed)?;
        at = record.end;
        records.push(record);
    }
    Ok(records)
}

/// One query and its answer over TCP, or TLS with `tls`.
async fn stream_exchange(
    message: &[u8],
    server: SocketAddr,
    tls: Option<&TlsAuth>,
    sources: &Sources,
) -> Result<Vec<u8>, TransferError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tls::open(sources, server, tls).await?;
        let mut framed = (message.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(message);
        stream.write_all(&framed).await?;
        let len = stream.read_u16().await?;
        let mut reply = vec![0u8; usize::from(len)];
        stream.read_exact(&mut reply).await?;
        Ok::<_, TransferError>(reply)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| TransferError::NoTcpAnswer)?
}
