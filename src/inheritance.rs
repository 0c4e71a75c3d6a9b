//! Handing the listening sockets to a new process, for an upgrade without a gap.
//!
//! ```text
//!  old process                                         new process (the binary on disk)
//!  ───────────                                         ───────────
//!  spawn, passing by inheritance: every listening   ─▶ Inherited::from_env: takes them by name,
//!  socket (fds 3.., named in FOOBAR_FDS), a stream      loads and checks everything, binds what
//!  to talk over, a datagram link for QUIC packets       is new, serves (both accept meanwhile)
//!                                                   ◀─ "ready PID"   (or "failed REASON", or exit)
//!  passes new QUIC connections on, stops accepting  ─▶ "done": writes the PID file
//!  drains (bounded by shutdown_timeout), exits          the link closes: every packet is its own
//! ```
//!
//! Inheritance (fork and exec with the sockets mapped to fixed numbers, as systemd's socket
//! activation does) was chosen over passing descriptors on a Unix socket: the new process is
//! the old one's child, so it starts in the same cgroup and session (systemd keeps tracking it),
//! and a socket cannot be lost in transit. The sockets are the very same ones, so connections
//! waiting in a listen backlog or datagrams in a receive queue are served by whichever process
//! reads next: none is dropped.

use std::{
    collections::HashMap,
    io::{self, BufRead, BufReader, Write},
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::{UnixDatagram, UnixListener, UnixStream},
    },
    process::{Child, Command, Stdio},
};

use anyhow::{Context, anyhow, bail};
use command_fds::{CommandFdExt, FdMapping};
use foobar_net::quic::Generation;
use listenfd::ListenFd;

/// Names of the inherited descriptors, in order from fd 3, separated by ';'.
const FDS_ENV: &str = "FOOBAR_FDS";
/// The stream to the old process and the QUIC link, after the sockets.
const PARENT: &str = "parent";
const QUIC_LINK: &str = "quic-link";

/// The sockets a process listens on, each with the name it is handed over by: what it is and
/// the address the configuration asked for (with port 0 that is not the address bound, and a
/// new process must find the socket by what its configuration asks).
#[derive(Debug, Default)]
pub struct ListeningSockets {
    sockets: Vec<(String, OwnedFd)>,
}

impl ListeningSockets {
    /// Keeps a duplicate of `socket` to hand over by `name`.
    pub fn add(&mut self, name: String, socket: impl AsFd) -> io::Result<()> {
        let fd = socket.as_fd().try_clone_to_owned()?;
        self.sockets.push((name, fd));
        Ok(())
    }
}

/// What a process started by its predecessor takes over.
pub struct Inherited {
    fds: ListenFd,
    names: HashMap<String, usize>,
    /// The stream to the old process.
    pub parent: UnixStream,
    pub quic_link: UnixDatagram,
    /// This process's QUIC generation (the old one's, plus one).
    pub generation: Generation,
    pub predecessor: u32,
}

impl Inherited {
    /// The sockets handed over, if this process was started by its predecessor. Call before
    /// any thread starts: it reads and clears the environment that names them.
    pub fn from_env() -> anyhow::Result<Option<Inherited>> {
        let Ok(list) = std::env::var(FDS_ENV) else {
            return Ok(None);
        };
        let mut fds = ListenFd::from_env();
        let names: HashMap<String, usize> = list
            .split(';')
            .enumerate()
            .map(|(index, name)| (name.to_string(), index))
            .collect();
        if names.len() != fds.len() {
            bail!(
                "{FDS_ENV} names {} sockets, {} were passed",
                names.len(),
                fds.len()
            );
        }
        let index = |name: &str| {
            names
                .get(name)
                .copied()
                .ok_or_else(|| anyhow!("{FDS_ENV} has no {name}"))
        };
        let parent: UnixStream = fds
            .take_custom(
                index(PARENT)?,
                libc::AF_UNIX,
                libc::SOCK_STREAM,
                "unix stream",
            )?
            .ok_or_else(|| anyhow!("no stream to the old process"))?;
        let quic_link = fds
            .take_unix_datagram(index(QUIC_LINK)?)?
            .ok_or_else(|| anyhow!("no QUIC link to the old process"))?;
        // The old process wrote this before starting us.
        let mut line = String::new();
        BufReader::new(&parent)
            .read_line(&mut line)
            .context("reading from the old process")?;
        let (generation, predecessor) = parse_greeting(&line)?;
        Ok(Some(Inherited {
            fds,
            names,
            parent,
            quic_link,
            generation,
            predecessor,
        }))
    }

    pub fn udp(&mut self, name: &str) -> io::Result<Option<std::net::UdpSocket>> {
        match self.names.get(name) {
            Some(&index) => self.fds.take_udp_socket(index),
            None => Ok(None),
        }
    }

    pub fn tcp(&mut self, name: &str) -> io::Result<Option<std::net::TcpListener>> {
        match self.names.get(name) {
            Some(&index) => self.fds.take_tcp_listener(index),
            None => Ok(None),
        }
    }

    pub fn unix(&mut self, name: &str) -> io::Result<Option<UnixListener>> {
        match self.names.get(name) {
            Some(&index) => self.fds.take_unix_listener(index),
            None => Ok(None),
        }
    }

    /// Tells the old process this one serves; its answer comes with [`Inherited::handed_over`].
    pub fn ready(&mut self) -> io::Result<()> {
        writeln!(self.parent, "ready {}", std::process::id())
    }

    /// Tells the old process why this one could not start.
    pub fn failed(&mut self, reason: &str) {
        let _ = writeln!(self.parent, "failed {}", reason.replace('\n', " | "));
    }

    /// Waits for the old process to stop accepting: then this one is the server.
    pub fn handed_over(&self) -> io::Result<()> {
        let mut line = String::new();
        BufReader::new(&self.parent).read_line(&mut line)?;
        match line.trim() {
            "done" => Ok(()),
            "" => Err(io::Error::other("the old process is gone")),
            other => Err(io::Error::other(format!("old process: {other}"))),
        }
    }
}

impl std::fmt::Debug for Inherited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inherited")
            .field("names", &self.names)
            .field("generation", &self.generation)
            .field("predecessor", &self.predecessor)
            .finish_non_exhaustive()
    }
}

fn parse_greeting(line: &str) -> anyhow::Result<(Generation, u32)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let ["generation", id, key, pid] = fields[..] else {
        bail!("unexpected greeting from the old process: {line:?}");
    };
    let key = data_encoding::HEXLOWER
        .decode(key.as_bytes())
        .ok()
        .and_then(|key| <[u8; 16]>::try_from(key).ok())
        .ok_or_else(|| anyhow!("bad QUIC key from the old process"))?;
    Ok((
        Generation {
            id: id.parse()?,
            key,
        },
        pid.parse()?,
    ))
}

/// A new process being started to take over.
#[derive(Debug)]
pub struct Successor {
    pub child: Child,
    /// The stream to it.
    pub stream: UnixStream,
    /// Its end of the QUIC link is in the child; this is ours.
    pub quic_link: UnixDatagram,
    pub generation: u16,
}

/// Starts `program args` with every socket of `handover`, as the successor of a process of
/// `generation`.
pub fn spawn(
    program: &std::path::Path,
    args: &[std::ffi::OsString],
    handover: &ListeningSockets,
    generation: &Generation,
) -> anyhow::Result<Successor> {
    let (mut stream, theirs) = UnixStream::pair()?;
    let (quic_link, quic_theirs) = UnixDatagram::pair()?;
    let next = generation.next();
    writeln!(
        stream,
        "generation {} {} {}",
        next.id,
        data_encoding::HEXLOWER.encode(&next.key),
        std::process::id()
    )?;
    let mut names = Vec::new();
    let mut mappings = Vec::new();
    let passed = handover
        .sockets
        .iter()
        .map(|(name, fd)| Ok((name.clone(), fd.try_clone()?)))
        .chain([
            Ok((PARENT.to_string(), OwnedFd::from(theirs))),
            Ok((QUIC_LINK.to_string(), OwnedFd::from(quic_theirs))),
        ]);
    for (child_fd, socket) in (3..).zip(passed) {
        let (name, parent_fd): (String, OwnedFd) = socket.map_err(|e: io::Error| anyhow!(e))?;
        names.push(name);
        mappings.push(FdMapping {
            parent_fd,
            child_fd,
        });
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env(FDS_ENV, names.join(";"))
        .env("LISTEN_FDS", names.len().to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .stdin(Stdio::null())
        .fd_mappings(mappings)
        .map_err(|e| anyhow!("{e}"))?;
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    // The command holds the descriptors mapped into the child; they close with it.
    drop(command);
    Ok(Successor {
        child,
        stream,
        quic_link,
        generation: next.id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_greeting_carries_generation_key_and_pid() {
        let key = [7u8; 16];
        let line = format!(
            "generation 513 {} 4242\n",
            data_encoding::HEXLOWER.encode(&key)
        );
        let (generation, pid) = parse_greeting(&line).unwrap();
        assert_eq!(generation, Generation { id: 513, key });
        assert_eq!(pid, 4242);
        assert!(parse_greeting("generation 1 abc 2").is_err());
        assert!(parse_greeting("hello").is_err());
    }
}
