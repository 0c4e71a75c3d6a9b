//! Secondary zones: followed from their primaries by zone transfer rather than read from files.
//!
//! ```text
//! start: the copy in state_dir/dns/secondary (served at once), else SERVFAIL until the first
//!        transfer
//! loop:  NOTIFY from a primary, or the SOA refresh timer (retry after a failure)
//!        ──▶ SOA query to each primary in turn ──▶ newer serial (RFC 1982)?
//!        ──▶ IXFR from our serial (the whole zone when there is none yet, or the primary
//!            answers with the whole zone) ──▶ checked like a zone file ──▶ kept in state_dir,
//!            served, journaled, and announced to our own secondaries
//!        no primary answers for the SOA expire time ──▶ SERVFAIL until one does
//! ```

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use foobar_state::Access as FileAccess;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    sync::Notify,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{TransferError, Transferred};
use crate::{
    transfer::journal::{self, Diff},
    transfer::notify::{Sources, primary_serial, unix_now},
    transfer::tls::{self, TlsAuth},
    transfer::tsig::{self, Key, StreamVerifier},
    wire::Class,
    wire::Flags,
    wire::Rcode,
    wire::Rtype,
    wire::bytes,
    wire::name,
    wire::read,
    wire::rtype,
    wire::write::{Owner, Section, Writer},
    zone::Rr,
    zone::Zone,
    zone::catalog::Zones,
    zone::snapshot,
};

/// Timers for a zone with no SOA yet (RFC 1912's suggestions are hours; a zone we do not have
/// is worth asking for often).
const FIRST_RETRY: Duration = Duration::from_secs(10);
/// Bounds on the SOA timers a primary sets, so that a zone is neither hammered nor forgotten.
const MIN_TIMER: Duration = Duration::from_secs(5);
const MAX_TIMER: Duration = Duration::from_secs(7 * 86_400);
/// How long one transfer may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(300);

/// A primary of a secondary zone: where it is, the key that signs what we ask it, and how it
/// is reached over TLS if it is.
#[derive(Debug, Clone)]
pub struct Primary {
    pub address: SocketAddr,
    pub key: Option<Arc<Key>>,
    pub tls: Option<Arc<TlsAuth>>,
}

/// One secondary zone and how to follow it.
#[derive(Debug)]
pub struct Secondary {
    /// The origin in wire form.
    pub origin: Vec<u8>,
    pub primaries: Vec<Primary>,
    /// The addresses this server's queries to them come from.
    pub sources: Sources,
    /// Where the last transferred copy is kept.
    pub copy: PathBuf,
    /// Woken by a NOTIFY from a primary.
    pub notified: Notify,
}

impl Secondary {
    pub fn name(&self) -> String {
        name::to_text(&self.origin)
    }

    /// The copy kept in `state_dir`, if it checks out, and when it was written (its last
    /// successful refresh, for the expire timer).
    pub fn load_copy(&self) -> Option<(Zone, SystemTime)> {
        let bytes = match std::fs::read(&self.copy) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(zone = %self.name(), file = %self.copy.display(), error = %e, "secondary copy unreadable");
                return None;
            }
        };
        match snapshot::decode(&bytes) {
            Ok(zone) if name::eq_ignore_case(zone.origin(), &self.origin) => {
                let written = std::fs::metadata(&self.copy)
                    .and_then(|m| m.modified())
                    .unwrap_or_else(|_| SystemTime::now());
                Some((zone, written))
            }
            Ok(_) => None,
            Err(reason) => {
                warn!(zone = %self.name(), file = %self.copy.display(), %reason, "secondary copy refused");
                None
            }
        }
    }

    /// Follows the zone until `shutdown`: every new version goes to `publish`.
    pub async fn run(
        self: Arc<Self>,
        zones: Arc<Zones>,
        publish: impl Fn(Option<Arc<Zone>>, Arc<Zone>) + Send + Sync + 'static,
        shutdown: CancellationToken,
    ) {
        let mut current: Option<Arc<Zone>> =
            zones.secondary(&self.origin).filter(|z| z.is_available());
        let mut last_success = match &current {
            Some(_) => self
                .copy
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|written| written.elapsed().ok())
                .map_or_else(Instant::now, |age| {
                    Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
                }),
            None => Instant::now(),
        };
        // Check at once: a primary may have moved on while we were down.
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.notified.notified() => info!(zone = %self.name(), "notify from a primary: refreshing"),
                () = shutdown.cancelled() => return,
            }
            let now = current.as_deref().and_then(timers);
            match self.refresh(current.as_deref()).await {
                Ok(Some(zone)) => {
                    crate::metrics::metrics().transferred_in(true);
                    let zone = Arc::new(zone);
                    self.keep(&zone);
                    publish(current.take(), zone.clone());
                    current = Some(zone);
                    last_success = Instant::now();
                    wait = current
                        .as_deref()
                        .and_then(timers)
                        .map_or(FIRST_RETRY, |t| t.refresh);
                }
                Ok(None) => {
                    last_success = Instant::now();
                    wait = now.map_or(FIRST_RETRY, |t| t.refresh);
                }
                Err(reason) => {
                    crate::metrics::metrics().transferred_in(false);
                    wait = now.map_or(FIRST_RETRY, |t| t.retry);
                    warn!(zone = %self.name(), %reason, retry_in = wait.as_secs(), "refresh failed");
                    if let (Some(zone), Some(soa_timers)) = (&current, now)
                        && last_success.elapsed() >= soa_timers.expire
                    {
                        error!(
                            zone = %self.name(),
                            expire = soa_timers.expire.as_secs(),
                            "no primary reached within the SOA expire time: answering SERVFAIL"
                        );
                        publish(
                            Some(zone.clone()),
                            Arc::new(Zone::unavailable(&self.origin)),
                        );
                        current = None;
                    }
                }
            }
        }
    }

    /// Asks each primary in turn: the new version if one has a newer serial, `None` if ours is
    /// current.
    async fn refresh(&self, current: Option<&Zone>) -> Result<Option<Zone>, TransferError> {
        let mut reasons = Vec::new();
        for primary in &self.primaries {
            let Primary { address, key, tls } = primary;
            let serial = match primary_serial(
                &self.origin,
                *address,
                key.as_ref(),
                tls.as_deref(),
                &self.sources,
            )
            .await
            {
                Ok(serial) => serial,
                Err(reason) => {
                    reasons.push((*address, reason));
                    continue;
                }
            };
            if current.is_some_and(|zone| !crate::zone::serial_newer(serial, zone.serial())) {
                return Ok(None);
            }
            let started = Instant::now();
            let transfer = tokio::time::timeout(
                TRANSFER_TIMEOUT,
                transfer_in(&self.origin, primary, current, &self.sources),
            )
            .await
            .unwrap_or(Err(TransferError::TookTooLong));
            match transfer {
                Ok(Transferred {
                    zone,
                    kind,
                    records,
                }) => {
                    info!(
                        zone = %self.name(),
                        peer = %address,
                        tls = tls.as_ref().map(|tls| tls.name()),
                        serial = zone.serial(),
                        kind,
                        records,
                        ms = started.elapsed().as_millis() as u64,
                        "transfer in"
                    );
                    return Ok(Some(zone));
                }
                Err(reason) => reasons.push((*address, reason)),
            }
        }
        Err(TransferError::Primaries(reasons))
    }

    /// Keeps `zone` in `state_dir` so that it is served after a restart.
    fn keep(&self, zone: &Zone) {
        let written = foobar_state::write_with(&self.copy, FileAccess::Public, |file| {
            snapshot::write(zone, file)
        });
        if let Err(e) = written {
            warn!(zone = %self.name(), file = %self.copy.display(), error = %e, "cannot keep the secondary copy");
        }
    }
}

/// A zone's SOA timers.
#[derive(Debug, Clone, Copy)]
struct Timers {
    refresh: Duration,
    retry: Duration,
    expire: Duration,
}

fn timers(zone: &Zone) -> Option<Timers> {
    let soa = crate::zone::soa(zone)?;
    let fixed = soa.rdata.get(soa.rdata.len().checked_sub(20)?..)?;
    let field = |i: usize| {
        let seconds = bytes::u32_at(fixed, i).unwrap_or(0);
        Duration::from_secs(u64::from(seconds)).clamp(MIN_TIMER, MAX_TIMER)
    };
    Some(Timers {
        refresh: field(4),
        retry: field(8),
        expire: field(12),
    })
}

/// Transfers the zone `origin` from `primary` (over TLS if it is reached so): IXFR from
/// `current` when there is one, else AXFR. The new version, checked like a zone file; how it
/// came (`AXFR`, `IXFR`, `IXFR-as-AXFR`); and how many records were sent.
pub async fn transfer_in(
    origin: &[u8],
    primary: &Primary,
    current: Option<&Zone>,
    sources: &Sources,
) -> Result<Transferred, TransferError> {
    let key = primary.key.clone();
    let current_soa = current.and_then(crate::zone::soa);
    let qtype = if current_soa.is_some() {
        rtype::IXFR
    } else {
        rtype::AXFR
    };
    let id = u16::from_be_bytes({
        let mut id = [0u8; 2];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
        id
    });
    let mut request = Vec::with_capacity(512);
    {
        let mut w = Writer::new(&mut request, id, Flags::default(), 65_535);
        w.question(origin, qtype, Class::IN);
        if let Some(soa) = &current_soa {
            let _ = w.record(
                Section::Authority,
                Owner::At(12),
                rtype::SOA,
                soa.ttl,
                &soa.rdata,
            );
        }
    }
    let mac = key
        .as_ref()
        .map(|key| tsig::sign(&mut request, key, None, unix_now()));
    let mut verifier = key.zip(mac).map(|(key, mac)| StreamVerifier::new(key, mac));

    let mut stream = tokio::time::timeout(
        Duration::from_secs(10),
        tls::open(sources, primary.address, primary.tls.as_deref()),
    )
    .await
    .map_err(|_| TransferError::NoConnection)??;
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream.write_all(&framed).await?;

    let mut answer = Incoming::new(origin, current_soa);
    loop {
        let len = stream.read_u16().await.map_err(TransferError::Stopped)?;
        let mut message = vec![0u8; usize::from(len)];
        stream
            .read_exact(&mut message)
            .await
            .map_err(TransferError::Stopped)?;
        if message.len() < 12 || message[..2] != id.to_be_bytes() {
            return Err(TransferError::OtherQuery);
        }
        if let Some(verifier) = verifier.as_mut() {
            verifier.verify(&message, unix_now())?;
        }
        if answer.message(&message)? {
            return answer.finish(current);
        }
    }
}

/// A transfer's answer as its messages come: the records read and checked one by one, until
/// the answer is complete.
#[derive(Debug)]
pub struct Incoming<'o> {
    origin: &'o [u8],
    current_soa: Option<Rr>,
    records: Vec<Rr>,
    sequence: Sequence,
    complete: bool,
}

impl<'o> Incoming<'o> {
    /// An answer for `origin`, to a request made with `current_soa` (an IXFR) or none (AXFR).
    pub fn new(origin: &'o [u8], current_soa: Option<Rr>) -> Incoming<'o> {
        Incoming {
            origin,
            current_soa,
            records: Vec::new(),
            sequence: Sequence::default(),
            complete: false,
        }
    }

    /// Reads one message; true once the answer is complete.
    pub fn message(&mut self, message: &[u8]) -> Result<bool, TransferError> {
        if self.complete {
            return Err(TransferError::AfterTheEnd);
        }
        let code = Rcode(u16::from(message.get(3).ok_or(TransferError::Short)? & 0xF));
        if code != Rcode::NOERROR {
            return Err(TransferError::Refused(code));
        }
        let [_, answers, ..] = read::counts(message).ok_or(TransferError::Short)?;
        let mut at = read::after_question(message).ok_or(TransferError::Malformed)?;
        for _ in 0..answers {
            let record = read::read_record(message, at).ok_or(TransferError::MalformedRecord)?;
            at = record.end;
            if self.complete {
                return Err(TransferError::AfterTheEnd);
            }
            if record.class != Class::IN {
                return Err(TransferError::OtherClass);
            }
            if !name::is_subdomain(&record.owner, self.origin) {
                return Err(TransferError::OutsideZone(name::to_text(&record.owner)));
            }
            if !well_formed(record.rtype, &record.rdata) {
                return Err(TransferError::MalformedRdata {
                    rtype: record.rtype,
                    owner: name::to_text(&record.owner),
                });
            }
            if self.records.is_empty() && record.rtype != rtype::SOA {
                return Err(TransferError::NoSoaFirst);
            }
            self.records.push(Rr {
                owner: record.owner,
                rtype: record.rtype,
                ttl: record.ttl,
                rdata: record.rdata,
            });
            self.complete = self.sequence.take(&self.records, self.current_soa.as_ref());
        }
        Ok(self.complete)
    }

    /// The new version: the records of an AXFR, or the differences of an IXFR applied to
    /// `current`.
    pub fn finish(self, current: Option<&Zone>) -> Result<Transferred, TransferError> {
        if !self.complete {
            return Err(TransferError::EndedEarly);
        }
        build(
            self.origin,
            self.records,
            current,
            self.current_soa.as_ref(),
        )
    }
}

/// Where a transfer's answer stands: it is done when its SOA comes again (AXFR), or the SOA
/// of the new version ends the last difference (IXFR), or a lone SOA says we are current.
#[derive(Debug, Default)]
struct Sequence {
    soas: usize,
}

impl Sequence {
    /// Looks at the last record of `records`; true once the answer is complete.
    fn take(&mut self, records: &[Rr], current: Option<&Rr>) -> bool {
        let Some(last) = records.last() else {
            return false;
        };
        if last.rtype != rtype::SOA {
            return false;
        }
        self.soas += 1;
        let new_serial = soa_serial(&records[0]);
        if records.len() == 1 {
            // A lone SOA no newer than ours: we are current (RFC 1995 section 2).
            return current
                .is_some_and(|soa| !crate::zone::serial_newer(new_serial, soa_serial(soa)));
        }
        let incremental = records.len() > 1 && records[1].rtype == rtype::SOA && current.is_some();
        if !incremental {
            // AXFR style: the second SOA ends it.
            return self.soas == 2;
        }
        // IXFR: SOA(new), then pairs of SOA(old) ... SOA(next) ...; the final SOA(new) comes
        // where a difference would start (an odd count after the first).
        // The SOAs come as: the new one (1), then old/next for each difference (2, 3; 4, 5...),
        // then the new one again, at an even count where a difference would start.
        self.soas >= 4 && self.soas.is_multiple_of(2) && soa_serial(last) == new_serial
    }
}

fn soa_serial(soa: &Rr) -> u32 {
    crate::zone::soa_serial_minimum(&soa.rdata).map_or(0, |(serial, _)| serial)
}

/// Whether RDATA of these fixed-size types has their size (the types with names were checked
/// when they were read).
fn well_formed(rtype: Rtype, rdata: &[u8]) -> bool {
    match rtype {
        rtype::A => rdata.len() == 4,
        rtype::AAAA => rdata.len() == 16,
        rtype::SOA => crate::zone::soa_serial_minimum(rdata).is_some(),
        _ => true,
    }
}

/// The new version from a complete answer: the records of an AXFR, or the differences of an
/// IXFR applied to `current`.
fn build(
    origin: &[u8],
    records: Vec<Rr>,
    current: Option<&Zone>,
    current_soa: Option<&Rr>,
) -> Result<Transferred, TransferError> {
    let count = records.len();
    if count == 1 {
        return Err(TransferError::SoaAlone);
    }
    let incremental = records[1].rtype == rtype::SOA && current_soa.is_some();
    if !incremental {
        // SOA, the records, SOA: all but the closing SOA.
        let all = &records[..count - 1];
        let zone = snapshot::checked(origin, all)?;
        let kind = if current_soa.is_some() {
            "IXFR-as-AXFR"
        } else {
            "AXFR"
        };
        return Ok(Transferred {
            zone,
            kind,
            records: count,
        });
    }
    let (Some(zone), Some(current_soa)) = (current, current_soa) else {
        return Err(TransferError::IncrementalWithoutZone);
    };
    let mut all = snapshot::records(zone);
    // records: SOA(new), then for each difference SOA(old) removed... SOA(next) added...,
    // then SOA(new).
    let body = &records[1..count - 1];
    let mut at = 0;
    let mut expected_from = soa_serial(current_soa);
    while at < body.len() {
        let from_soa = body[at].clone();
        if from_soa.rtype != rtype::SOA || soa_serial(&from_soa) != expected_from {
            return Err(TransferError::NotFromOurVersion);
        }
        at += 1;
        let removed_end = at
            + body[at..]
                .iter()
                .position(|r| r.rtype == rtype::SOA)
                .ok_or(TransferError::NoNewSoa)?;
        let removed = body[at..removed_end].to_vec();
        let to_soa = body[removed_end].clone();
        at = removed_end + 1;
        let added_end = at
            + body[at..]
                .iter()
                .position(|r| r.rtype == rtype::SOA)
                .unwrap_or(body.len() - at);
        let added = body[at..added_end].to_vec();
        at = added_end;
        expected_from = soa_serial(&to_soa);
        let diff = Diff {
            from_soa,
            to_soa,
            removed,
            added,
        };
        all = journal::apply(&all, &diff).ok_or(TransferError::DoesNotApply)?;
    }
    let zone = snapshot::checked(origin, &all)?;
    Ok(Transferred {
        zone,
        kind: "IXFR",
        records: count,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn soa(serial: u32) -> Rr {
        let mut rdata = vec![0, 0];
        rdata.extend_from_slice(&serial.to_be_bytes());
        rdata.extend_from_slice(&[0; 16]);
        Rr {
            owner: vec![0],
            rtype: rtype::SOA,
            ttl: 60,
            rdata,
        }
    }

    fn a(n: u8) -> Rr {
        Rr {
            owner: vec![0],
            rtype: rtype::A,
            ttl: 60,
            rdata: vec![192, 0, 2, n],
        }
    }

    fn complete_after(records: &[Rr], current: Option<&Rr>) -> Option<usize> {
        let mut sequence = Sequence::default();
        (1..=records.len()).find(|&n| sequence.take(&records[..n], current))
    }

    #[test]
    fn the_end_of_an_answer_is_found_for_each_form() {
        // AXFR: SOA, records, SOA.
        let axfr = [soa(5), a(1), a(2), soa(5)];
        assert_eq!(complete_after(&axfr, None), Some(4));
        // IXFR, two differences: SOA(7) SOA(5) -a1 SOA(6) +a2 SOA(6) -a2 SOA(7) +a3 SOA(7).
        let ixfr = [
            soa(7),
            soa(5),
            a(1),
            soa(6),
            a(2),
            soa(6),
            a(2),
            soa(7),
            a(3),
            soa(7),
        ];
        assert_eq!(complete_after(&ixfr, Some(&soa(5))), Some(10));
        // Up to date: the lone SOA.
        assert_eq!(complete_after(&[soa(5)], Some(&soa(5))), Some(1));
        // An IXFR answered AXFR-style.
        let as_axfr = [soa(7), a(1), soa(7)];
        assert_eq!(complete_after(&as_axfr, Some(&soa(5))), Some(3));
    }
}
