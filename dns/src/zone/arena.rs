//! One zone's data, stored for fast lookups and a small footprint.
//!
//! Every name, key and RDATA lives in one byte arena; nodes and record sets are small fixed-size
//! structs in sorted arrays that point into it. A lookup is a binary search over the nodes by
//! canonical key (see [`crate::wire::name`]), with no locks and no allocation.

use std::{hash::BuildHasher, ops::Range};

use hashbrown::HashTable;

use crate::wire::{Rtype, bytes, name, rtype};

#[derive(Debug, Clone, Copy)]
struct Node {
    key: u32,
    key_len: u16,
    name_len: u16,
    rrsets: u32,
    rrset_count: u16,
}

#[derive(Debug, Clone, Copy)]
struct StoredSet {
    rtype: Rtype,
    count: u16,
    ttl: u32,
    data: u32,
}

/// A zone, immutable once built; replaced whole on reload.
#[derive(Debug)]
pub struct Zone {
    origin: Range<usize>,
    origin_key: Range<usize>,
    serial: u32,
    negative_ttl: u32,
    nodes: Vec<Node>,
    sets: Vec<StoredSet>,
    arena: Vec<u8>,
    /// Nodes other than the apex that hold NS records: the zone cuts, in key order.
    cuts: Vec<u32>,
    /// Nodes holding a DNAME that is not occluded by a zone cut, in key order.
    dnames: Vec<u32>,
    /// Node ids by key hash: exact matches (most queries) without a binary search's cache
    /// misses; the sorted array still answers "what is near this name".
    index: HashTable<u32>,
    records: usize,
    /// False for a zone whose file could not be loaded and has no good copy: SERVFAIL.
    available: bool,
    /// The apex has DNSKEY and RRSIG records: answers carry signatures and proofs on DO.
    signed: bool,
    /// For a zone with NSEC3PARAM at its apex: the nodes holding NSEC3 records by the hash
    /// their owner's first label spells, in hash order (what proofs are found by: the tree's
    /// canonical order interleaves hashed owners with the zone's own names).
    nsec3: Vec<([u8; NSEC3_HASH_LEN], u32)>,
}

/// The length of an NSEC3 hash (SHA-1).
pub const NSEC3_HASH_LEN: usize = 20;

/// The hash an NSEC3 owner's first label spells in base32hex (RFC 4648 section 7), if it does.
fn nsec3_label_hash(owner: &[u8]) -> Option<[u8; NSEC3_HASH_LEN]> {
    let label = owner.get(1..1 + usize::from(*owner.first()?))?;
    let upper = label.to_ascii_uppercase();
    let bytes = data_encoding::BASE32HEX_NOPAD.decode(&upper).ok()?;
    bytes.try_into().ok()
}

/// The hash of a lookup key (fixed seed: the index is rebuilt, never persisted).
fn hash_key(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5eed_f00b_a4c0_ffee).hash_one(key)
}

/// Index of a node in its zone.
pub type NodeId = usize;

/// Records waiting to become a zone: owner names and RDATA in one byte buffer, fixed-size entries
/// beside it. Consecutive records with the same owner share its bytes.
#[derive(Debug, Default)]
pub struct Records {
    bytes: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    owner: u32,
    owner_len: u16,
    rtype: Rtype,
    rdata_len: u16,
    ttl: u32,
    rdata: u32,
}

/// Records in canonical order: each record's key, and the record indices sorted by
/// (key, type, position in the file).
#[derive(Debug)]
pub struct Sorted {
    keys: Vec<u8>,
    key_at: Vec<(u32, u16)>,
    pub order: Vec<u32>,
}

impl Sorted {
    pub fn key(&self, record: usize) -> &[u8] {
        let (start, len) = self.key_at[record];
        &self.keys[start as usize..start as usize + usize::from(len)]
    }
}

impl Records {
    /// Adds a record; `owner` is a wire name, `rdata` uncompressed wire RDATA.
    pub fn push(&mut self, owner: &[u8], rtype: Rtype, ttl: u32, rdata: &[u8]) {
        let owner_at = match self.items.last() {
            Some(last) if self.owner(self.items.len() - 1) == owner => last.owner,
            _ => {
                let at = self.bytes.len() as u32;
                self.bytes.extend_from_slice(owner);
                at
            }
        };
        let rdata_at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(rdata);
        self.items.push(Item {
            owner: owner_at,
            owner_len: owner.len() as u16,
            rtype,
            rdata_len: rdata.len() as u16,
            ttl,
            rdata: rdata_at,
        });
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Bytes of names and RDATA held so far.
    pub fn byte_len(&self) -> usize {
        self.bytes.len()
    }

    pub fn owner(&self, i: usize) -> &[u8] {
        let item = &self.items[i];
        &self.bytes[item.owner as usize..item.owner as usize + usize::from(item.owner_len)]
    }

    pub fn rdata(&self, i: usize) -> &[u8] {
        let item = &self.items[i];
        &self.bytes[item.rdata as usize..item.rdata as usize + usize::from(item.rdata_len)]
    }

    pub fn rtype(&self, i: usize) -> Rtype {
        self.items[i].rtype
    }

    pub fn ttl(&self, i: usize) -> u32 {
        self.items[i].ttl
    }

    /// Computes every record's key and sorts the records canonically.
    pub fn sort(&self) -> Sorted {
        let mut keys = Vec::with_capacity(self.bytes.len());
        let mut key_at = Vec::with_capacity(self.items.len());
        let mut previous: Option<(u32, (u32, u16))> = None;
        for item in &self.items {
            let at = match previous {
                Some((owner, at)) if owner == item.owner => at,
                _ => {
                    let start = keys.len();
                    let owner = &self.bytes
                        [item.owner as usize..item.owner as usize + usize::from(item.owner_len)];
                    name::push_key(owner, &mut keys);
                    (start as u32, (keys.len() - start) as u16)
                }
            };
            previous = Some((item.owner, at));
            key_at.push(at);
        }
        let mut sorted = Sorted {
            keys,
            key_at,
            order: (0..self.items.len() as u32).collect(),
        };
        let mut order = std::mem::take(&mut sorted.order);
        order.sort_unstable_by(|&a, &b| {
            let (a, b) = (a as usize, b as usize);
            sorted
                .key(a)
                .cmp(sorted.key(b))
                .then(self.items[a].rtype.cmp(&self.items[b].rtype))
                .then(a.cmp(&b))
        });
        sorted.order = order;
        sorted
    }
}

/// A record set of a node: one type, one TTL, one or more RDATAs in wire form.
#[derive(Debug, Clone, Copy)]
pub struct RRset<'z> {
    pub rtype: Rtype,
    pub ttl: u32,
    count: u16,
    data: &'z [u8],
}

impl<'z> RRset<'z> {
    /// Each RDATA in wire form, names uncompressed.
    pub fn rdatas(&self) -> impl Iterator<Item = &'z [u8]> + Clone + use<'z> {
        let mut rest = self.data;
        (0..self.count).map(move |_| {
            // The arena was built from checked records: each RDATA has its length.
            let len = usize::from(bytes::u16_at(rest, 0).unwrap_or(0));
            let rdata = &rest[2..2 + len];
            rest = &rest[2 + len..];
            rdata
        })
    }

    /// The TTL of one of its records: the set's; for an RRSIG, the TTL of the RRset it covers
    /// (its Original TTL field, RFC 4035 section 2.2), since the signatures over every type at
    /// a node are one set here.
    pub fn ttl_of(&self, rdata: &[u8]) -> u32 {
        if self.rtype == rtype::RRSIG {
            bytes::u32_at(rdata, 4).unwrap_or(self.ttl)
        } else {
            self.ttl
        }
    }

    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Zone {
    /// Builds a zone from records already checked by the loader: every owner at or below
    /// `origin`, exactly one SOA at the apex. Duplicate records are dropped (RFC 2181 section 5);
    /// records of one set with different TTLs take the first TTL in file order.
    pub fn build(origin: &[u8], records: &Records, sorted: &Sorted) -> Zone {
        let mut zone = Zone {
            origin: 0..0,
            origin_key: 0..0,
            serial: 0,
            negative_ttl: 0,
            nodes: Vec::new(),
            sets: Vec::new(),
            arena: Vec::with_capacity(records.bytes.len() * 2 + sorted.keys.len()),
            cuts: Vec::new(),
            dnames: Vec::new(),
            index: HashTable::new(),
            records: 0,
            available: true,
            signed: false,
            nsec3: Vec::new(),
        };
        zone.origin = zone.push_bytes(origin);
        let origin_key = name::key_of(origin);
        zone.origin_key = zone.push_bytes(&origin_key);

        let order: Vec<usize> = sorted.order.iter().map(|&i| i as usize).collect();
        let mut rdatas: Vec<&[u8]> = Vec::new();
        let mut outer_cut: Option<Range<usize>> = None;
        let mut at = 0;
        while at < order.len() {
            let key = sorted.key(order[at]);
            let end = at
                + order[at..]
                    .iter()
                    .position(|&i| sorted.key(i) != key)
                    .unwrap_or(order.len() - at);
            let node_key = zone.push_bytes(key);
            let node_name = zone.push_bytes(records.owner(order[at]));
            let first_set = zone.sets.len();
            let mut set_at = at;
            while set_at < end {
                let rtype = records.rtype(order[set_at]);
                let ttl = records.ttl(order[set_at]);
                let set_end = set_at
                    + order[set_at..end]
                        .iter()
                        .position(|&i| records.rtype(i) != rtype)
                        .unwrap_or(end - set_at);
                rdatas.clear();
                rdatas.extend(order[set_at..set_end].iter().map(|&i| records.rdata(i)));
                rdatas.sort_unstable();
                rdatas.dedup();
                let data = zone.arena.len() as u32;
                for rdata in &rdatas {
                    zone.arena
                        .extend_from_slice(&(rdata.len() as u16).to_be_bytes());
                    zone.arena.extend_from_slice(rdata);
                }
                zone.records += rdatas.len();
                zone.sets.push(StoredSet {
                    rtype,
                    count: rdatas.len() as u16,
                    ttl,
                    data,
                });
                set_at = set_end;
            }
            let id = zone.nodes.len() as u32;
            zone.nodes.push(Node {
                key: node_key.start as u32,
                key_len: node_key.len() as u16,
                name_len: node_name.len() as u16,
                rrsets: first_set as u32,
                rrset_count: (zone.sets.len() - first_set) as u16,
            });
            let has = |rtype| zone.sets[first_set..].iter().any(|s| s.rtype == rtype);
            // Nodes come in key order: a node is below the outermost cut seen last exactly
            // when that cut's key is a proper prefix of its own.
            let below_cut = outer_cut.as_ref().is_some_and(|cut: &Range<usize>| {
                key.len() > cut.len() && key.starts_with(&zone.arena[cut.clone()])
            });
            if !below_cut {
                outer_cut = None;
            }
            if key != origin_key && has(rtype::NS) {
                zone.cuts.push(id);
                if !below_cut {
                    outer_cut = Some(node_key.clone());
                }
            } else if has(rtype::DNAME) && !below_cut {
                zone.dnames.push(id);
            }
            at = end;
        }
        let mut index = HashTable::with_capacity(zone.nodes.len());
        for id in 0..zone.nodes.len() {
            let hash = hash_key(zone.key(id));
            index.insert_unique(hash, id as u32, |&other| hash_key(zone.key(other as usize)));
        }
        zone.index = index;
        let soa = zone
            .apex()
            .and_then(|apex| zone.rrset(apex, rtype::SOA))
            .and_then(|soa| {
                let (serial, minimum) = soa_serial_minimum(soa.rdatas().next()?)?;
                Some((serial, soa.ttl.min(minimum)))
            });
        if let Some((serial, negative_ttl)) = soa {
            zone.serial = serial;
            zone.negative_ttl = negative_ttl;
        }
        zone.signed = zone.apex().is_some_and(|apex| {
            zone.rrset(apex, rtype::DNSKEY).is_some() && zone.rrset(apex, rtype::RRSIG).is_some()
        });
        if zone
            .apex()
            .is_some_and(|apex| zone.rrset(apex, rtype::NSEC3PARAM).is_some())
        {
            zone.nsec3 = (0..zone.nodes.len())
                .filter(|&id| zone.rrset(id, rtype::NSEC3).is_some())
                .filter_map(|id| Some((nsec3_label_hash(zone.name(id))?, id as u32)))
                .collect();
            zone.nsec3.sort_unstable();
        }
        zone.arena.shrink_to_fit();
        zone.nodes.shrink_to_fit();
        zone.sets.shrink_to_fit();
        zone
    }

    /// A zone known only by its origin, whose data could not be loaded: answered SERVFAIL.
    pub fn unavailable(origin: &[u8]) -> Zone {
        let records = Records::default();
        let mut zone = Zone::build(origin, &records, &records.sort());
        zone.available = false;
        zone
    }

    /// Whether the zone is signed (its apex has DNSKEY and RRSIG records).
    pub fn is_signed(&self) -> bool {
        self.signed
    }

    /// Whether its denial of existence is NSEC3 (its apex has NSEC3PARAM).
    pub fn has_nsec3(&self) -> bool {
        !self.nsec3.is_empty()
    }

    /// The node whose NSEC3 has the owner hash `hash` (`Ok`), or else the one whose NSEC3
    /// covers it (`Err`: the last hash before it, wrapping round), if the zone has NSEC3.
    pub fn nsec3(&self, hash: &[u8; NSEC3_HASH_LEN]) -> Option<Result<NodeId, NodeId>> {
        let last = self.nsec3.len().checked_sub(1)?;
        Some(
            match self.nsec3.binary_search_by(|(owner, _)| owner.cmp(hash)) {
                Ok(at) => Ok(self.nsec3[at].1 as usize),
                Err(0) => Err(self.nsec3[last].1 as usize),
                Err(at) => Err(self.nsec3[at - 1].1 as usize),
            },
        )
    }

    /// Whether the zone has data to answer from.
    pub fn is_available(&self) -> bool {
        self.available
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    /// The origin in wire form.
    pub fn origin(&self) -> &[u8] {
        &self.arena[self.origin.clone()]
    }

    /// The origin as a lookup key (`name::key_of`).
    pub fn origin_key(&self) -> &[u8] {
        &self.arena[self.origin_key.clone()]
    }

    /// The origin as text, with the final dot.
    pub fn origin_text(&self) -> String {
        name::to_text(self.origin())
    }

    /// The SOA serial (0 for a zone served as SERVFAIL).
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// TTL for negative answers: the smaller of the SOA's TTL and its MINIMUM (RFC 2308).
    pub fn negative_ttl(&self) -> u32 {
        self.negative_ttl
    }

    /// Number of records, duplicates removed.
    pub fn record_count(&self) -> usize {
        self.records
    }

    /// Bytes of memory the zone data occupies.
    pub fn heap_size(&self) -> usize {
        self.arena.capacity()
            + self.nodes.capacity() * size_of::<Node>()
            + self.sets.capacity() * size_of::<StoredSet>()
            + (self.cuts.capacity() + self.dnames.capacity()) * size_of::<u32>()
            + self.index.allocation_size()
    }

    /// The apex node.
    pub fn apex(&self) -> Option<NodeId> {
        self.find(self.origin_key()).ok()
    }

    /// The node with exactly this key, or the index where it would be inserted.
    pub fn find(&self, key: &[u8]) -> Result<NodeId, usize> {
        let hash = hash_key(key);
        if let Some(&id) = self.index.find(hash, |&id| self.key(id as usize) == key) {
            return Ok(id as usize);
        }
        Err(self.nodes.partition_point(|node| self.node_key(node) < key))
    }

    /// Whether a node exists at or below `key`, starting the search at the index `find` gave.
    pub fn exists(&self, key: &[u8]) -> bool {
        match self.find(key) {
            Ok(_) => true,
            Err(at) => self.has_descendant_at(at, key),
        }
    }

    /// Whether the node at `at` (an insertion point for `key`) lies below `key`: then `key` is
    /// an empty non-terminal.
    pub fn has_descendant_at(&self, at: usize, key: &[u8]) -> bool {
        self.nodes
            .get(at)
            .is_some_and(|node| self.node_key(node).starts_with(key))
    }

    fn node_key(&self, node: &Node) -> &[u8] {
        let start = node.key as usize;
        &self.arena[start..start + usize::from(node.key_len)]
    }

    /// The owner name of a node, in wire form as written in the zone file.
    pub fn name(&self, id: NodeId) -> &[u8] {
        let node = &self.nodes[id];
        let start = node.key as usize + usize::from(node.key_len);
        &self.arena[start..start + usize::from(node.name_len)]
    }

    /// A node's lookup key.
    pub fn key(&self, id: NodeId) -> &[u8] {
        self.node_key(&self.nodes[id])
    }

    /// Record sets of a node, in type order.
    pub fn rrsets(&self, id: NodeId) -> impl Iterator<Item = RRset<'_>> + '_ {
        let node = &self.nodes[id];
        let start = node.rrsets as usize;
        self.sets[start..start + usize::from(node.rrset_count)]
            .iter()
            .map(|set| self.view(set))
    }

    /// A node's RRset of type `rtype`.
    pub fn rrset(&self, id: NodeId, rtype: Rtype) -> Option<RRset<'_>> {
        let node = &self.nodes[id];
        let start = node.rrsets as usize;
        let sets = &self.sets[start..start + usize::from(node.rrset_count)];
        sets.iter()
            .find(|set| set.rtype == rtype)
            .map(|set| self.view(set))
    }

    fn view(&self, set: &StoredSet) -> RRset<'_> {
        RRset {
            rtype: set.rtype,
            ttl: set.ttl,
            count: set.count,
            data: &self.arena[set.data as usize..],
        }
    }

    /// The highest zone cut at or above `key` (a delegation point other than the apex).
    pub fn cut_above(&self, key: &[u8]) -> Option<NodeId> {
        if self.cuts.is_empty() {
            return None;
        }
        let apex_len = self.origin_key.len();
        name::key_prefixes(key)
            .filter(|&len| len > apex_len)
            .find_map(|len| {
                let prefix = &key[..len];
                self.cuts
                    .binary_search_by(|&id| self.key(id as usize).cmp(prefix))
                    .ok()
                    .map(|at| self.cuts[at] as usize)
            })
    }

    /// The node holding a DNAME strictly above `key` (RFC 6672: the DNAME applies to the names
    /// below its owner, not to the owner itself).
    pub fn dname_above(&self, key: &[u8]) -> Option<NodeId> {
        if self.dnames.is_empty() {
            return None;
        }
        let apex_len = self.origin_key.len();
        name::key_prefixes(key)
            .filter(|&len| len >= apex_len && len < key.len())
            .find_map(|len| {
                let prefix = &key[..len];
                self.dnames
                    .binary_search_by(|&id| self.key(id as usize).cmp(prefix))
                    .ok()
                    .map(|at| self.dnames[at] as usize)
            })
    }

    /// Every node, in canonical order.
    pub fn nodes(&self) -> Range<NodeId> {
        0..self.nodes.len()
    }
}

/// The SERIAL and MINIMUM fields of SOA RDATA in wire form.
pub fn soa_serial_minimum(rdata: &[u8]) -> Option<(u32, u32)> {
    let mname = name::wire_len(rdata)?;
    let rname = name::wire_len(rdata.get(mname..)?)?;
    let fixed = rdata.get(mname + rname..mname + rname + 20)?;
    Some((bytes::u32_at(fixed, 0)?, bytes::u32_at(fixed, 16)?))
}

/// Where a name sits inside RDATA of a type that holds one for additional-section processing
/// or compression: `(offset, compressible)`.
pub fn rdata_name_offset(rtype: Rtype) -> Option<(usize, bool)> {
    match rtype {
        rtype::NS | rtype::CNAME | rtype::PTR => Some((0, true)),
        rtype::MX => Some((2, true)),
        rtype::SRV => Some((6, false)),
        rtype::SVCB | rtype::HTTPS => Some((2, false)),
        _ => None,
    }
}
