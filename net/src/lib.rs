//! Socket mechanics that the DNS and the web edge share, so that neither needs the other:
//! counting connections per client address, sizing UDP socket buffers, binding UDP and TCP
//! on one port (DNS serves both there; HTTPS is TCP, and HTTP/3 UDP, on one port), and QUIC
//! endpoints whose connections live through an upgrade (`quic`: HTTP/3 and DNS over QUIC).
//!
//! ```text
//! accept ──▶ PerAddress::take(ip) ──▶ Slot (counted until dropped) ──▶ the connection's task
//! bind UDP ──▶ udp_buffers(socket, bytes) ──▶ what the kernel granted, logged when capped
//! ```

#![warn(missing_docs)]

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr, TcpListener, UdpSocket},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use tracing::{info, warn};

pub mod quic;

/// Connections open per client address, up to a bound.
#[derive(Debug, Clone)]
pub struct PerAddress {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    most: Arc<AtomicUsize>,
}

/// One of an address's connections, counted until dropped.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
    address: IpAddr,
}

impl PerAddress {
    /// At most `most` connections from one address at once.
    pub fn new(most: usize) -> Self {
        PerAddress {
            counts: Arc::default(),
            most: Arc::new(AtomicUsize::new(most)),
        }
    }

    /// Changes the bound (a reloaded configuration); connections open keep their slots.
    pub fn set_most(&self, most: usize) {
        self.most.store(most, Ordering::Relaxed);
    }

    /// A slot for a new connection from `address`, or `None` if it has `most` already.
    pub fn take(&self, address: IpAddr) -> Option<Slot> {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = map.entry(address).or_default();
        if *count >= self.most.load(Ordering::Relaxed) {
            return None;
        }
        *count += 1;
        Some(Slot {
            counts: self.counts.clone(),
            address,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = map.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                map.remove(&self.address);
            }
        }
    }
}

/// Asks for `bytes` of receive and send buffer on a UDP socket: the default (about 208 KiB)
/// overflows when thousands of clients arrive at once. The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`; a cap below what was asked is logged with the sysctl that
/// lifts it. Returns the sizes granted.
pub fn udp_buffers(socket: &std::net::UdpSocket, bytes: usize, what: &str) -> (usize, usize) {
    let socket = socket2::SockRef::from(socket);
    let _ = socket.set_recv_buffer_size(bytes);
    let _ = socket.set_send_buffer_size(bytes);
    // Linux reports twice what it grants, the other half being its own bookkeeping.
    let granted = |size: std::io::Result<usize>| size.map_or(0, |size| size / 2);
    let (recv, send) = (
        granted(socket.recv_buffer_size()),
        granted(socket.send_buffer_size()),
    );
    if recv < bytes || send < bytes {
        warn!(
            socket = what,
            asked = bytes,
            receive = recv,
            send,
            "UDP buffers capped by the kernel; raise them with sysctl -w net.core.rmem_max={bytes} net.core.wmem_max={bytes}"
        );
    } else {
        info!(socket = what, receive = recv, send, "UDP buffers");
    }
    (recv, send)
}

/// A listening socket that could not be bound (or set up). The system's reason is part of the
/// message rather than a source, so that a printed chain (`{:#}`) does not say it twice.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {proto} {addr}: {reason}")]
pub struct BindError {
    /// `"udp"` or `"tcp"`.
    pub proto: &'static str,
    /// The address asked for, or the one bound when the other socket failed.
    pub addr: SocketAddr,
    /// Why.
    pub reason: std::io::Error,
}

impl BindError {
    /// `proto` on `addr` failed for `reason`.
    pub fn new(proto: &'static str, addr: SocketAddr, reason: std::io::Error) -> BindError {
        BindError {
            proto,
            addr,
            reason,
        }
    }
}

/// Binds UDP and TCP on `addr`, both non-blocking. With port 0 the system picks a port for
/// UDP and TCP is bound to the same one, with up to 16 tries when TCP's is taken.
pub fn bind_same_port(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), BindError> {
    let error = BindError::new;
    let attempts = if addr.port() == 0 { 16 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(addr).map_err(|e| error("udp", addr, e))?;
        let bound = udp.local_addr().map_err(|e| error("udp", addr, e))?;
        match TcpListener::bind(bound) {
            Ok(tcp) => {
                udp.set_nonblocking(true)
                    .map_err(|e| error("udp", bound, e))?;
                tcp.set_nonblocking(true)
                    .map_err(|e| error("tcp", bound, e))?;
                return Ok((udp, tcp));
            }
            Err(e) => last = Some(error("tcp", bound, e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        error(
            "tcp",
            addr,
            std::io::Error::other("no port free for both UDP and TCP"),
        )
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_address_gets_its_slots_back_when_they_drop() {
        let limit = PerAddress::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = limit.take(a).unwrap();
        let _second = limit.take(a).unwrap();
        assert!(limit.take(a).is_none());
        assert!(limit.take(b).is_some());
        drop(first);
        assert!(limit.take(a).is_some());
    }

    #[test]
    fn udp_buffers_are_raised_as_far_as_allowed() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (recv, send) = udp_buffers(&socket, 1 << 20, "test");
        assert!(recv > 0 && send > 0);
    }
}
