//! A zone as bytes, to keep the last good version of each zone in `state_dir` and serve it when
//! its file is broken at start.
//!
//! ```text
//! "foobar-zone" 0, version u16, origin (len u8, wire), record count u32,
//! records (owner len u8, owner, type u16, ttl u32, rdata len u16, rdata)..., CRC-32 of all before
//! ```
//!
//! Our own format rather than a zone file: it is read back without parsing text, and a file that
//! was torn or altered fails the checksum and the same checks as a zone file, so it is refused
//! rather than trusted.

use std::io::{self, BufWriter, Write};

use crate::{
    wire::{Rtype, name, rtype},
    zone::Rr,
    zone::load::check,
    zone::{Records, Zone},
};

const MAGIC: &[u8] = b"foobar-zone\0";
const VERSION: u16 = 1;

/// The zone's records in the snapshot format, in memory.
pub fn encode(zone: &Zone) -> Vec<u8> {
    let mut out = Vec::with_capacity(zone.heap_size());
    // Writing into a vector cannot fail.
    let _ = write(zone, &mut out);
    out
}

/// One record as snapshots (and the IXFR journal's entries) hold it: the owner (its length,
/// then its wire form), type, TTL, RDATA length and RDATA.
pub(crate) fn write_record(
    out: &mut impl Write,
    owner: &[u8],
    rtype: Rtype,
    ttl: u32,
    rdata: &[u8],
) -> io::Result<()> {
    out.write_all(&[owner.len() as u8])?;
    out.write_all(owner)?;
    out.write_all(&rtype.to_be_bytes())?;
    out.write_all(&ttl.to_be_bytes())?;
    out.write_all(&(rdata.len() as u16).to_be_bytes())?;
    out.write_all(rdata)
}

/// Writes the zone's records in the snapshot format to `out` as they are read, so that a
/// large zone's copy is never whole in memory beside the zone (300,000 signed hosts make a
/// copy of 120 MB).
pub fn write(zone: &Zone, out: impl Write) -> io::Result<()> {
    // The checksum is taken over the buffer's flushes, not record by record.
    let mut out = BufWriter::with_capacity(
        1 << 16,
        Checksummed {
            inner: out,
            crc: crc32fast::Hasher::new(),
        },
    );
    out.write_all(MAGIC)?;
    out.write_all(&VERSION.to_be_bytes())?;
    let origin = zone.origin();
    out.write_all(&[origin.len() as u8])?;
    out.write_all(origin)?;
    out.write_all(&(zone.record_count() as u32).to_be_bytes())?;
    for node in zone.nodes() {
        let owner = zone.name(node);
        for set in zone.rrsets(node) {
            for rdata in set.rdatas() {
                write_record(&mut out, owner, set.rtype, set.ttl_of(rdata), rdata)?;
            }
        }
    }
    let Checksummed { mut inner, crc } =
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
    inner.write_all(&crc.finalize().to_be_bytes())?;
    inner.flush()
}

/// A writer that keeps the CRC-32 of what went through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Why a zone's copy (a snapshot), or the records of a transfer, cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("too short")]
    TooShort,
    #[error("checksum mismatch")]
    Checksum,
    #[error("not a zone snapshot")]
    NotASnapshot,
    #[error("snapshot version {0}, not {VERSION}")]
    Version(u16),
    #[error("truncated")]
    Truncated,
    #[error("a malformed name")]
    MalformedName,
    #[error("a record outside the zone: {0}")]
    OutsideZone(String),
    #[error("unexpected length")]
    Length,
    #[error("no records")]
    NoRecords,
    /// What the zone-file checks refuse (a second SOA, a CNAME beside other data...).
    #[error("{0}")]
    Check(String),
}

/// The zone in `bytes`, or why it cannot be trusted.
pub fn decode(bytes: &[u8]) -> Result<Zone, SnapshotError> {
    let Some((body, crc)) = bytes.split_last_chunk::<4>() else {
        return Err(SnapshotError::TooShort);
    };
    if crc32fast::hash(body) != u32::from_be_bytes(*crc) {
        return Err(SnapshotError::Checksum);
    }
    let mut reader = Reader { bytes: body, at: 0 };
    if reader.take(MAGIC.len())? != MAGIC {
        return Err(SnapshotError::NotASnapshot);
    }
    let version = reader.u16()?;
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let origin = reader.name()?.to_vec();
    let count = reader.u32()?;
    let mut records = Records::default();
    for _ in 0..count {
        let owner = reader.name()?;
        if !name::is_subdomain(owner, &origin) {
            return Err(SnapshotError::OutsideZone(name::to_text(owner)));
        }
        let rtype = Rtype(reader.u16()?);
        let ttl = reader.u32()?;
        let len = usize::from(reader.u16()?);
        let rdata = reader.take(len)?;
        records.push(owner, rtype, ttl, rdata);
    }
    if reader.at != body.len() || records.is_empty() {
        return Err(SnapshotError::Length);
    }
    build_checked(&origin, &records)
}

/// A zone of `origin` from `records` (a transfer's), checked as a zone file is: a record
/// outside the zone, a missing or second SOA, a CNAME beside other data... refuse it.
pub fn checked(origin: &[u8], records: &[Rr]) -> Result<Zone, SnapshotError> {
    let mut all = Records::default();
    for rr in records {
        if !name::is_subdomain(&rr.owner, origin) {
            return Err(SnapshotError::OutsideZone(name::to_text(&rr.owner)));
        }
        all.push(&rr.owner, rr.rtype, rr.ttl, &rr.rdata);
    }
    if all.is_empty() {
        return Err(SnapshotError::NoRecords);
    }
    build_checked(origin, &all)
}

/// Checks `records` as a zone of `origin` (as a zone file is checked) and builds it.
pub fn build_checked(origin: &[u8], records: &Records) -> Result<Zone, SnapshotError> {
    let sorted = records.sort();
    if let Some((_, reason)) = check::check(origin, records, &sorted).error {
        return Err(SnapshotError::Check(reason));
    }
    Ok(Zone::build(origin, records, &sorted))
}

/// `zone` with `added` records and its SOA serial set to `serial`: the version that carries
/// records the server adds at run time (ACME challenges) to the zone's secondaries by IXFR.
pub fn with_added(zone: &Zone, added: &[Rr], serial: u32) -> Result<Zone, SnapshotError> {
    let mut all: Vec<Rr> = zone
        .nodes()
        .flat_map(|node| crate::zone::node_records(zone, node))
        .filter(|rr| rr.rtype != rtype::SOA)
        .collect();
    let malformed = || SnapshotError::Check("no SOA, or a malformed one".to_string());
    let mut soa = crate::zone::soa(zone).ok_or_else(malformed)?;
    let mname = crate::wire::name::wire_len(&soa.rdata).ok_or_else(malformed)?;
    let rname = crate::wire::name::wire_len(soa.rdata.get(mname..).ok_or_else(malformed)?)
        .ok_or_else(malformed)?;
    let at = mname + rname;
    soa.rdata
        .get_mut(at..at + 4)
        .ok_or_else(malformed)?
        .copy_from_slice(&serial.to_be_bytes());
    all.push(soa);
    all.extend(added.iter().cloned());
    checked(zone.origin(), &all)
}

/// Every record of `zone`, its SOA included.
pub fn records(zone: &Zone) -> Vec<Rr> {
    zone.nodes()
        .flat_map(|node| crate::zone::node_records(zone, node))
        .collect()
}

/// The serial in a snapshot, read from its first records without decoding the rest (the SOA
/// is the apex's, which comes first); `None` if it cannot be found that way.
pub fn peek_serial(bytes: &[u8]) -> Option<u32> {
    let mut reader = Reader { bytes, at: 0 };
    if reader.take(MAGIC.len()).ok()? != MAGIC || reader.u16().ok()? != VERSION {
        return None;
    }
    reader.name().ok()?;
    let count = reader.u32().ok()?;
    for _ in 0..count.min(64) {
        reader.name().ok()?;
        let rtype = Rtype(reader.u16().ok()?);
        reader.u32().ok()?;
        let len = usize::from(reader.u16().ok()?);
        let rdata = reader.take(len).ok()?;
        if rtype == rtype::SOA {
            return crate::zone::soa_serial_minimum(rdata).map(|(serial, _)| serial);
        }
    }
    None
}

struct Reader<'b> {
    bytes: &'b [u8],
    at: usize,
}

impl<'b> Reader<'b> {
    fn take(&mut self, len: usize) -> Result<&'b [u8], SnapshotError> {
        let slice = self
            .bytes
            .get(self.at..self.at + len)
            .ok_or(SnapshotError::Truncated)?;
        self.at += len;
        Ok(slice)
    }

    fn u16(&mut self) -> Result<u16, SnapshotError> {
        let bytes = self.take(2)?;
        crate::wire::bytes::u16_at(bytes, 0).ok_or(SnapshotError::Truncated)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        let bytes = self.take(4)?;
        crate::wire::bytes::u32_at(bytes, 0).ok_or(SnapshotError::Truncated)
    }

    /// A length-prefixed wire name, checked to be well formed.
    fn name(&mut self) -> Result<&'b [u8], SnapshotError> {
        let len = usize::from(self.take(1)?[0]);
        let wire = self.take(len)?;
        if name::wire_len(wire) != Some(len) {
            return Err(SnapshotError::MalformedName);
        }
        Ok(wire)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::zone::load::load_zone;

    fn zone() -> Zone {
        zone_of(
            "$TTL 300\n@ SOA ns1 h 7 1 1 1 1\n NS ns1\nns1 A 192.0.2.1\nwww 60 TXT \"a\" \"b\"\nold DNAME new.example.net.\n",
        )
    }

    fn zone_of(text: &str) -> Zone {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.zone");
        std::fs::write(&path, text).unwrap();
        load_zone(&path, None).unwrap().zone
    }

    #[test]
    fn a_zone_larger_than_the_buffer_comes_back_whole() {
        let mut text = String::from("$TTL 300\n@ SOA ns1 h 7 1 1 1 1\n NS ns1\nns1 A 192.0.2.1\n");
        for host in 0..5000 {
            text.push_str(&format!("host{host} A 192.0.2.{}\n", host % 250));
        }
        let zone = zone_of(&text);
        let bytes = encode(&zone);
        // Two flushes of the 64 KiB buffer and part of a third.
        assert!(bytes.len() > 2 << 16, "{} bytes", bytes.len());
        let back = decode(&bytes).unwrap();
        assert_eq!(back.record_count(), 5003);
        let last = back.find(&name::key_of(&name::wire("host4999.example.com")));
        assert!(last.is_ok());
    }

    #[test]
    fn a_zone_comes_back_whole() {
        let zone = zone();
        let back = decode(&encode(&zone)).unwrap();
        assert_eq!(back.serial(), 7);
        assert_eq!(back.record_count(), zone.record_count());
        assert_eq!(back.origin(), zone.origin());
        let www = back
            .find(&name::key_of(&name::wire("www.example.com")))
            .unwrap();
        let set = back.rrset(www, rtype::TXT).unwrap();
        assert_eq!(
            (set.ttl, set.rdatas().next().unwrap()),
            (60, &b"\x01a\x01b"[..])
        );
        assert!(
            back.dname_above(&name::key_of(&name::wire("x.old.example.com")))
                .is_some()
        );
        assert!(
            back.apex()
                .and_then(|apex| back.rrset(apex, rtype::SOA))
                .is_some()
        );
    }

    #[test]
    fn torn_or_altered_snapshots_are_refused() {
        let bytes = encode(&zone());
        assert_eq!(
            decode(&bytes[..bytes.len() - 9]).unwrap_err(),
            SnapshotError::Checksum
        );
        let mut altered = bytes.clone();
        altered[40] ^= 1;
        assert_eq!(decode(&altered).unwrap_err(), SnapshotError::Checksum);
        assert!(decode(b"").is_err());
        // Every prefix and every single-byte change fails cleanly, never panics.
        for len in 0..bytes.len() {
            assert!(decode(&bytes[..len]).is_err());
        }
    }
}
