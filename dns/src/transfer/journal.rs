//! Differences between versions of a zone, for incremental transfers (IXFR, RFC 1995).
//!
//! ```text
//! reload replaces a zone ──▶ diff(old, new): records removed, records added ──▶ Journal
//!                                                           (memory + state_dir/dns/journal)
//! IXFR with the client's serial ──▶ Journal::since ──▶ the diffs from that serial on, condensed
//!                                                      into one (a record added then removed
//!                                                      is not sent) ──▶ IXFR messages
//!                                   (no such serial: the whole zone, AXFR-style)
//! ```
//!
//! The journal is bounded in bytes: the oldest differences go first. It is kept on disk so
//! that IXFR still works after a restart; each entry is checksummed, and a torn or altered
//! file is dropped from the first bad entry on.

use std::{
    collections::{HashMap, VecDeque},
    path::{Path, PathBuf},
    sync::Mutex,
};

use foobar_state::Access;
use tracing::warn;

use crate::{
    wire::Rtype,
    wire::bytes,
    wire::name,
    wire::rtype,
    zone::{Rr, Zone, serial_newer, soa, soa_serial},
};

const MAGIC: &[u8] = b"foobar-journal\0";

/// From one version of a zone to the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The SOA records of both versions (the serials are in them).
    pub from_soa: Rr,
    pub to_soa: Rr,
    pub removed: Vec<Rr>,
    pub added: Vec<Rr>,
}

impl Diff {
    /// The serial this difference starts from.
    pub fn old_serial(&self) -> u32 {
        soa_serial(&self.from_soa.rdata)
    }

    /// The serial it leads to.
    pub fn new_serial(&self) -> u32 {
        soa_serial(&self.to_soa.rdata)
    }

    /// The bytes this difference takes (in memory and, about, on the wire).
    pub fn bytes(&self) -> usize {
        self.from_soa.bytes()
            + self.to_soa.bytes()
            + self.removed.iter().map(Rr::bytes).sum::<usize>()
            + self.added.iter().map(Rr::bytes).sum::<usize>()
    }
}

/// What changed from `old` to `new` (both available); `None` if the serial did not move
/// forward (RFC 1982), in which case secondaries could not ask for it anyway.
pub fn diff(old: &Zone, new: &Zone) -> Option<Diff> {
    if !old.is_available() || !new.is_available() || !serial_newer(new.serial(), old.serial()) {
        return None;
    }
    let (from_soa, to_soa) = (soa(old)?, soa(new)?);
    let mut removed = Vec::new();
    let mut added = Vec::new();
    // Both zones keep their nodes in key order: one walk over both, comparing node by node.
    let (mut a, mut b) = (old.nodes().peekable(), new.nodes().peekable());
    loop {
        match (a.peek().copied(), b.peek().copied()) {
            (None, None) => break,
            (Some(x), None) => {
                removed.extend(records(old, x));
                a.next();
            }
            (None, Some(y)) => {
                added.extend(records(new, y));
                b.next();
            }
            (Some(x), Some(y)) => match old.key(x).cmp(new.key(y)) {
                std::cmp::Ordering::Less => {
                    removed.extend(records(old, x));
                    a.next();
                }
                std::cmp::Ordering::Greater => {
                    added.extend(records(new, y));
                    b.next();
                }
                std::cmp::Ordering::Equal if same_node(old, x, new, y) => {
                    a.next();
                    b.next();
                }
                std::cmp::Ordering::Equal => {
                    let mut before: Vec<Rr> = records(old, x).collect();
                    let mut after: Vec<Rr> = records(new, y).collect();
                    before.sort();
                    after.sort();
                    for rr in &before {
                        if after.binary_search(rr).is_err() {
                            removed.push(rr.clone());
                        }
                    }
                    for rr in &after {
                        if before.binary_search(rr).is_err() {
                            added.push(rr.clone());
                        }
                    }
                    a.next();
                    b.next();
                }
            },
        }
    }
    Some(Diff {
        from_soa,
        to_soa,
        removed,
        added,
    })
}

/// Whether a node holds the same records in both versions (most nodes, compared in place).
fn same_node(old: &Zone, x: crate::zone::NodeId, new: &Zone, y: crate::zone::NodeId) -> bool {
    if old.name(x) != new.name(y) {
        return false;
    }
    let (mut before, mut after) = (old.rrsets(x), new.rrsets(y));
    loop {
        match (before.next(), after.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) => {
                // The SOA is compared apart, by serial.
                if p.rtype != q.rtype
                    || (p.rtype != rtype::SOA
                        && (p.ttl != q.ttl || p.len() != q.len() || !p.rdatas().eq(q.rdatas())))
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// The records of a node, but its SOA (the SOA travels apart in a difference).
fn records(zone: &Zone, node: crate::zone::NodeId) -> impl Iterator<Item = Rr> + '_ {
    crate::zone::node_records(zone, node).filter(|rr| rr.rtype != rtype::SOA)
}

/// Consecutive differences as one: a record added and later removed (or the reverse) cancels
/// out, so a client catching up several versions gets only what differs from its own.
pub fn condense(diffs: &[Diff]) -> Option<Diff> {
    let (first, last) = (diffs.first()?, diffs.last()?);
    let mut removed: HashMap<(Vec<u8>, Rtype, Vec<u8>, u32), Rr> = HashMap::new();
    let mut added: HashMap<(Vec<u8>, Rtype, Vec<u8>, u32), Rr> = HashMap::new();
    let key = |rr: &Rr| {
        let (owner, rtype, rdata, ttl) = rr.identity();
        (owner, rtype, rdata.to_vec(), ttl)
    };
    for diff in diffs {
        for rr in &diff.removed {
            // Removing what an earlier step added: as if neither happened.
            if added.remove(&key(rr)).is_none() {
                removed.insert(key(rr), rr.clone());
            }
        }
        for rr in &diff.added {
            if removed.remove(&key(rr)).is_none() {
                added.insert(key(rr), rr.clone());
            }
        }
    }
    let mut removed: Vec<Rr> = removed.into_values().collect();
    let mut added: Vec<Rr> = added.into_values().collect();
    removed.sort();
    added.sort();
    Some(Diff {
        from_soa: first.from_soa.clone(),
        to_soa: last.to_soa.clone(),
        removed,
        added,
    })
}

/// Applies `diff` to `records` (a zone's records, SOA included); `None` if the difference does
/// not start from this version (its SOA), or removes a record that is not there.
pub fn apply(records: &[Rr], diff: &Diff) -> Option<Vec<Rr>> {
    let mut set: HashMap<(Vec<u8>, Rtype, Vec<u8>, u32), Rr> = records
        .iter()
        .map(|rr| {
            let (owner, rtype, rdata, ttl) = rr.identity();
            ((owner, rtype, rdata.to_vec(), ttl), rr.clone())
        })
        .collect();
    let key = |rr: &Rr| {
        let (owner, rtype, rdata, ttl) = rr.identity();
        (owner, rtype, rdata.to_vec(), ttl)
    };
    set.remove(&key(&diff.from_soa))?;
    for rr in &diff.removed {
        set.remove(&key(rr))?;
    }
    for rr in &diff.added {
        set.insert(key(rr), rr.clone());
    }
    set.insert(key(&diff.to_soa), diff.to_soa.clone());
    let mut out: Vec<Rr> = set.into_values().collect();
    out.sort();
    Some(out)
}

/// The differences kept for one zone, oldest first.
#[derive(Debug)]
pub struct Journal {
    diffs: VecDeque<Diff>,
    bytes: usize,
    max_bytes: usize,
    path: PathBuf,
}

impl Journal {
    /// The journal kept at `path` (empty if there is none, or from its first bad entry on).
    pub fn open(path: &Path, max_bytes: usize) -> Journal {
        let mut journal = Journal {
            diffs: VecDeque::new(),
            bytes: 0,
            max_bytes,
            path: path.to_path_buf(),
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let (diffs, error) = decode(&bytes);
                if let Some(error) = error {
                    warn!(file = %path.display(), %error, "journal cut at its first bad entry");
                }
                for diff in diffs {
                    journal.push(diff);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                warn!(file = %path.display(), error = %e, "journal unreadable; IXFR starts afresh")
            }
        }
        journal
    }

    fn push(&mut self, diff: Diff) {
        // A difference that does not follow the last one breaks the chain: start over.
        if self
            .diffs
            .back()
            .is_some_and(|last| last.new_serial() != diff.old_serial())
        {
            self.diffs.clear();
            self.bytes = 0;
        }
        self.bytes += diff.bytes();
        self.diffs.push_back(diff);
        while self.bytes > self.max_bytes {
            let Some(oldest) = self.diffs.pop_front() else {
                break;
            };
            self.bytes -= oldest.bytes();
        }
    }

    /// Keeps `diff` (and writes the journal out).
    pub fn record(&mut self, diff: Diff) {
        self.push(diff);
        let bytes = encode(self.diffs.iter());
        if let Err(e) = foobar_state::write(&self.path, &bytes, Access::Public) {
            warn!(file = %self.path.display(), error = %e, "cannot keep the journal");
        }
    }

    /// The serial the journal leads to, if it holds anything.
    pub fn last_serial(&self) -> Option<u32> {
        self.diffs.back().map(Diff::new_serial)
    }

    /// Everything that changed since `serial`, up to `current`, condensed; `None` if the
    /// journal does not reach back to `serial` (or does not lead to `current`).
    pub fn since(&self, serial: u32, current: u32) -> Option<Diff> {
        if self.last_serial() != Some(current) {
            return None;
        }
        let start = self.diffs.iter().position(|d| d.old_serial() == serial)?;
        let chain: Vec<Diff> = self.diffs.iter().skip(start).cloned().collect();
        condense(&chain)
    }
}

/// The journals of every zone, by origin key, in `folder`.
#[derive(Debug)]
pub struct Journals {
    folder: PathBuf,
    max_bytes: usize,
    by_zone: Mutex<HashMap<Vec<u8>, Journal>>,
}

impl Journals {
    pub fn new(folder: &Path, max_bytes: usize) -> Journals {
        Journals {
            folder: folder.to_path_buf(),
            max_bytes,
            by_zone: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, zone: &Zone, work: impl FnOnce(&mut Journal) -> T) -> T {
        let mut journals = self
            .by_zone
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let journal = journals
            .entry(zone.origin_key().to_vec())
            .or_insert_with(|| {
                let file = format!("{}journal", zone.origin_text());
                Journal::open(&self.folder.join(file), self.max_bytes)
            });
        work(journal)
    }

    /// Records what changed from `old` to `new`; the difference, if the serial moved forward.
    pub fn record(&self, old: &Zone, new: &Zone) -> Option<usize> {
        let diff = diff(old, new)?;
        let bytes = diff.bytes();
        self.with(new, |journal| journal.record(diff));
        Some(bytes)
    }

    /// Everything that changed in `zone` since `serial`, if the journal reaches back there.
    pub fn since(&self, zone: &Zone, serial: u32) -> Option<Diff> {
        self.with(zone, |journal| journal.since(serial, zone.serial()))
    }
}

fn encode<'d>(diffs: impl Iterator<Item = &'d Diff>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for diff in diffs {
        let mut entry = Vec::with_capacity(diff.bytes() + 32);
        push_rr(&mut entry, &diff.from_soa);
        push_rr(&mut entry, &diff.to_soa);
        for list in [&diff.removed, &diff.added] {
            entry.extend_from_slice(&(list.len() as u32).to_be_bytes());
            for rr in list {
                push_rr(&mut entry, rr);
            }
        }
        out.extend_from_slice(&(entry.len() as u32).to_be_bytes());
        out.extend_from_slice(&entry);
        out.extend_from_slice(&crc32fast::hash(&entry).to_be_bytes());
    }
    out
}

/// A record in the snapshot's layout.
fn push_rr(out: &mut Vec<u8>, rr: &Rr) {
    // Writing into a vector cannot fail.
    let _ = crate::zone::snapshot::write_record(out, &rr.owner, rr.rtype, rr.ttl, &rr.rdata);
}

/// The differences in `bytes`, and why reading stopped early, if it did.
fn decode(bytes: &[u8]) -> (Vec<Diff>, Option<String>) {
    let mut diffs = Vec::new();
    let Some(mut rest) = bytes.strip_prefix(MAGIC) else {
        return (diffs, Some("not a journal".to_string()));
    };
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return (diffs, Some("torn entry".to_string()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((entry, tail)) = tail.split_at_checked(len) else {
            return (diffs, Some("torn entry".to_string()));
        };
        let Some((crc, tail)) = tail.split_first_chunk::<4>() else {
            return (diffs, Some("torn entry".to_string()));
        };
        if crc32fast::hash(entry) != u32::from_be_bytes(*crc) {
            return (diffs, Some("checksum mismatch".to_string()));
        }
        match read_entry(entry) {
            Some(diff) => diffs.push(diff),
            None => return (diffs, Some("malformed entry".to_string())),
        }
        rest = tail;
    }
    (diffs, None)
}

fn read_entry(mut entry: &[u8]) -> Option<Diff> {
    let from_soa = read_rr(&mut entry)?;
    let to_soa = read_rr(&mut entry)?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let (count, tail) = entry.split_first_chunk::<4>()?;
        entry = tail;
        for _ in 0..u32::from_be_bytes(*count) {
            list.push(read_rr(&mut entry)?);
        }
    }
    let [removed, added] = lists;
    entry.is_empty().then_some(Diff {
        from_soa,
        to_soa,
        removed,
        added,
    })
}

fn read_rr(bytes: &mut &[u8]) -> Option<Rr> {
    let (&owner_len, tail) = bytes.split_first()?;
    let (owner, tail) = tail.split_at_checked(usize::from(owner_len))?;
    name::wire_len(owner).filter(|&len| len == owner.len())?;
    let (fixed, tail) = tail.split_first_chunk::<8>()?;
    let rdlen = usize::from(bytes::u16_at(fixed, 6)?);
    let (rdata, tail) = tail.split_at_checked(rdlen)?;
    *bytes = tail;
    Some(Rr {
        owner: owner.to_vec(),
        rtype: Rtype(bytes::u16_at(fixed, 0)?),
        ttl: bytes::u32_at(fixed, 2)?,
        rdata: rdata.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::zone::load::load_zone_text;

    fn zone(serial: u32, body: &str) -> Zone {
        let text = format!(
            "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 hostmaster {serial} 1 1 1 60\n NS ns1\nns1 A 192.0.2.1\n{body}"
        );
        load_zone_text(Path::new("example.com.zone"), text.as_bytes(), None)
            .unwrap()
            .zone
    }

    fn names(rrs: &[Rr]) -> Vec<String> {
        let mut names: Vec<String> = rrs
            .iter()
            .map(|rr| format!("{} {}", name::to_text(&rr.owner), rr.rtype))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_diff_holds_what_was_added_removed_and_changed() {
        let old = zone(1, "www A 192.0.2.10\nold A 192.0.2.11\nmx MX 10 mail\n");
        let new = zone(2, "www A 192.0.2.20\nnew A 192.0.2.12\nmx MX 10 mail\n");
        let diff = diff(&old, &new).unwrap();
        assert_eq!((diff.old_serial(), diff.new_serial()), (1, 2));
        assert_eq!(
            names(&diff.removed),
            ["old.example.com. A", "www.example.com. A"]
        );
        assert_eq!(
            names(&diff.added),
            ["new.example.com. A", "www.example.com. A"]
        );
        // A TTL change is a change of the record.
        let ttl = zone(3, "www 300 A 192.0.2.20\nnew A 192.0.2.12\nmx MX 10 mail\n");
        let changed = super::diff(&new, &ttl).unwrap();
        assert_eq!(names(&changed.removed), ["www.example.com. A"]);
        assert_eq!(changed.added[0].ttl, 300);
        // No diff when the serial does not move forward.
        assert!(super::diff(&new, &old).is_none());
        assert!(super::diff(&new, &new).is_none());
    }

    #[test]
    fn diffs_condense_and_apply() {
        let v1 = zone(1, "a A 192.0.2.1\nb A 192.0.2.2\n");
        let v2 = zone(2, "a A 192.0.2.1\nc A 192.0.2.3\n");
        let v3 = zone(3, "b A 192.0.2.2\nc A 192.0.2.3\nd A 192.0.2.4\n");
        let d12 = diff(&v1, &v2).unwrap();
        let d23 = diff(&v2, &v3).unwrap();
        let both = condense(&[d12.clone(), d23.clone()]).unwrap();
        // b was removed then added back: it is in neither list.
        assert_eq!(names(&both.removed), ["a.example.com. A"]);
        assert_eq!(names(&both.added), ["c.example.com. A", "d.example.com. A"]);
        let all = |zone: &Zone| {
            let mut rrs: Vec<Rr> = zone.nodes().flat_map(|n| records(zone, n)).collect();
            rrs.push(soa(zone).unwrap());
            rrs.sort();
            rrs
        };
        assert_eq!(apply(&all(&v1), &both).unwrap(), all(&v3));
        assert_eq!(apply(&all(&v1), &d12).unwrap(), all(&v2));
        assert!(apply(&all(&v2), &d12).is_none(), "not from this version");
    }

    #[test]
    fn the_journal_serves_from_any_kept_serial_survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.journal");
        let versions: Vec<Zone> = (1..=5)
            .map(|n| zone(n, &format!("host{n} A 192.0.2.{n}\n")))
            .collect();
        let mut journal = Journal::open(&path, 1 << 20);
        for pair in versions.windows(2) {
            journal.record(diff(&pair[0], &pair[1]).unwrap());
        }
        let since2 = journal.since(2, 5).unwrap();
        assert_eq!((since2.old_serial(), since2.new_serial()), (2, 5));
        assert_eq!(names(&since2.removed), ["host2.example.com. A"]);
        assert_eq!(names(&since2.added), ["host5.example.com. A"]);
        assert!(
            journal.since(7, 5).is_none(),
            "unknown serial: the whole zone"
        );
        assert!(journal.since(1, 4).is_none(), "the journal leads elsewhere");

        let reopened = Journal::open(&path, 1 << 20);
        assert_eq!(reopened.since(1, 5), journal.since(1, 5));

        // A torn tail keeps what comes before it.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let torn = Journal::open(&path, 1 << 20);
        assert_eq!(torn.last_serial(), Some(4));

        // Bounded: only the newest differences stay.
        let one = diff(&versions[0], &versions[1]).unwrap().bytes();
        let mut small = Journal::open(&dir.path().join("small"), one * 2);
        for pair in versions.windows(2) {
            small.record(diff(&pair[0], &pair[1]).unwrap());
        }
        assert!(small.since(1, 5).is_none());
        assert!(small.since(3, 5).is_some());
    }
}
