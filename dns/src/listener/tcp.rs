//! TCP (RFC 7766), and TLS over it (RFC 7858, DNS over TLS): connections bounded in all and
//! per address, pipelined queries answered in order, transfers streamed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use foobar_net::PerAddress;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::TcpListener,
    sync::Semaphore,
    task::JoinSet,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{MAX_MESSAGE, Serving, Shared, Transfer, unix_now};
use crate::answer::{Client, Outcome, Transport};

/// The TCP connection bounds in force, and the settings they were made for.
struct Bounds {
    limit: Arc<Semaphore>,
    per_address: PerAddress,
    made_for: (usize, usize),
}

impl Bounds {
    fn of(shared: &Shared) -> Bounds {
        Bounds {
            limit: Arc::new(Semaphore::new(shared.max_tcp_connections)),
            per_address: PerAddress::new(shared.max_tcp_connections_per_address),
            made_for: (
                shared.max_tcp_connections,
                shared.max_tcp_connections_per_address,
            ),
        }
    }

    /// Whether these bounds are still the ones `shared` asks for.
    fn follow(&self, shared: &Shared) -> bool {
        self.made_for
            == (
                shared.max_tcp_connections,
                shared.max_tcp_connections_per_address,
            )
    }
}

/// When stopping, how long a TCP connection that has not sent its first query is waited for.
const FIRST_QUERY_GRACE: Duration = Duration::from_secs(1);

/// Accepts TCP connections (RFC 7766) up to the configured bounds: in all, and per address;
/// with `tls`, each is a TLS connection (DNS over TLS, RFC 7858) whose handshake must end
/// within the I/O timeout.
pub async fn serve_tcp(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    live: Arc<ArcSwap<impl Serving>>,
    shutdown: CancellationToken,
    drain: Duration,
) {
    let mut bounds = Bounds::of(live.load().shared());
    let mut connections = JoinSet::new();
    loop {
        // The bounds follow a reloaded configuration; connections open keep their slots.
        if !bounds.follow(live.load().shared()) {
            bounds = Bounds::of(live.load().shared());
        }
        let (limit, per_address) = (&bounds.limit, &bounds.per_address);
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "tcp accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Some(slot) = per_address.take(peer.ip()) else {
            debug!(%peer, "tcp connection refused: too many from this address");
            continue;
        };
        // What serves now, taken once the connection is in: a reload while this loop waited
        // to accept must not leave the new connection on the replaced zones.
        let shared = live.load().shared().clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        crate::metrics::metrics().tcp_opened();
        connections.spawn(async move {
            let served = match tls {
                None => connection(stream, Transport::Tcp, peer, &shared, &shutdown).await,
                Some(tls) => match handshake(&tls, stream, shared.tcp_io_timeout).await {
                    Ok(stream) => {
                        connection(stream, Transport::Dot, peer, &shared, &shutdown).await
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                debug!(error = %e, %peer, "tcp connection");
            }
            crate::metrics::metrics().tcp_closed();
            drop((permit, slot));
        });
        while connections.try_join_next().is_some() {}
    }
    // Connections answer the query in hand and stop at their next read; a client that does not
    // take its answer is cut off by the I/O timeout, and this wait is bounded as well.
    let drain = drain.min(live.load().shared().tcp_io_timeout);
    let drained = tokio::time::timeout(drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

/// The TLS handshake of a DNS-over-TLS connection, within `timeout`.
async fn handshake(
    tls: &TlsAcceptor,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>> {
    stream.set_nodelay(true)?;
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(accepted) => accepted,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no TLS handshake within the I/O timeout",
        )),
    }
}

/// One connection's queries and answers, over TCP or TLS (`transport`).
async fn connection(
    mut stream: impl AsyncRead + AsyncWrite + Unpin + SetNodelay,
    transport: Transport,
    peer: SocketAddr,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> std::io::Result<()> {
    stream.set_nodelay()?;
    let io_timeout = shared.tcp_io_timeout;
    // What has arrived and is not answered yet: `input[start..end]`. Room for the largest
    // message and its length, and more, so that pipelined queries are read together.
    let mut input = vec![0u8; TCP_INPUT];
    let (mut start, mut end) = (0, 0);
    let mut out = Vec::with_capacity(4096);
    // Answers not written yet: every query that has arrived is answered, then all of them are
    // written at once (RFC 7766 section 6.2.1.1 pipelining).
    let mut pending = Vec::with_capacity(4096);
    let mut answered = 0u64;
    loop {
        // The queries that arrived together are answered from one version of the zones.
        let catalog = shared.catalog.load_full();
        let client = Client {
            transport,
            address: peer.ip(),
            now: unix_now(),
        };
        while let Some(len) = complete_frame(&input[start..end]) {
            let query = start + 2..start + 2 + len;
            start = query.end;
            answered += 1;
            let outcome =
                shared
                    .responder
                    .respond(&catalog, &input[query.clone()], client, &mut out);
            match outcome {
                Outcome::Reply => {
                    frame(&mut pending, &out);
                    if pending.len() >= TCP_INPUT {
                        write_pending(&mut stream, &mut pending, io_timeout).await?;
                    }
                }
                Outcome::Drop => {
                    write_pending(&mut stream, &mut pending, io_timeout).await?;
                    return Ok(());
                }
                Outcome::Transfer(request) => {
                    write_pending(&mut stream, &mut pending, io_timeout).await?;
                    let made = Transfer::make(shared, &catalog, request, &input[query], client.now);
                    let Some(transfer) = made.await? else {
                        return Ok(());
                    };
                    for message in &transfer.answer.messages {
                        frame(&mut pending, message);
                        write_pending(&mut stream, &mut pending, io_timeout).await?;
                    }
                    transfer.log(peer, transport == Transport::Dot);
                }
            }
        }
        write_pending(&mut stream, &mut pending, io_timeout).await?;
        // Keep what is left of a message at the front, with room after it for the rest.
        if start == end {
            (start, end) = (0, 0);
        } else if start > 0 {
            input.copy_within(start..end, 0);
            (start, end) = (0, end - start);
        }
        // A message begun must be finished within the I/O timeout. Before the next one: the idle
        // timeout; once stopping, only what has already arrived, except on a connection that
        // has not sent its first query yet, which is on its way and gets `FIRST_QUERY_GRACE`
        // (closing first would fail a query nothing else refused).
        let partial = end > 0;
        let wait = |stopping: bool| match (partial, stopping, answered) {
            (true, _, _) => io_timeout,
            (false, false, _) => shared.tcp_idle_timeout,
            (false, true, 0) => FIRST_QUERY_GRACE,
            (false, true, _) => Duration::ZERO,
        };
        let room = &mut input[end..];
        let read = tokio::select! {
            read = tokio::time::timeout(wait(shutdown.is_cancelled()), stream.read(room)) => read,
            () = shutdown.cancelled(), if !shutdown.is_cancelled() => {
                tokio::time::timeout(wait(true), stream.read(&mut input[end..])).await
            }
        };
        match read {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(n)) => end += n,
            Ok(Err(e)) => return Err(e),
        }
    }
}

/// Bytes read at once from a TCP connection: the largest message with its length, and more.
const TCP_INPUT: usize = 2 * (MAX_MESSAGE + 2);

/// The length of the message at the start of `input`, if all of it has arrived.
fn complete_frame(input: &[u8]) -> Option<usize> {
    let (length, rest) = input.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*length));
    (rest.len() >= len).then_some(len)
}

/// Appends `message` to `pending` with its two-byte length (RFC 1035 section 4.2.2).
fn frame(pending: &mut Vec<u8>, message: &[u8]) {
    pending.extend_from_slice(&(message.len() as u16).to_be_bytes());
    pending.extend_from_slice(message);
}

/// A stream whose writes go out at once (`TCP_NODELAY`): answers are written whole.
trait SetNodelay {
    fn set_nodelay(&self) -> std::io::Result<()>;
}

impl SetNodelay for tokio::net::TcpStream {
    fn set_nodelay(&self) -> std::io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, true)
    }
}

impl SetNodelay for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    /// Set on the TCP stream before the handshake.
    fn set_nodelay(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `bytes` (and empties it) within `timeout`.
async fn write_pending(
    stream: &mut (impl AsyncWrite + Unpin),
    bytes: &mut Vec<u8>,
    timeout: Duration,
) -> std::io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let written = match tokio::time::timeout(timeout, stream.write_all(bytes)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client does not read its answers",
        )),
    };
    bytes.clear();
    written
}
