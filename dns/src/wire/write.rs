//! Writing DNS responses straight into a byte buffer, with name compression and a size limit.
//!
//! Written by hand because this is the hot path of every answer: records are copied from the
//! zone arena as wire bytes, without building intermediate message objects.

use crate::{
    wire::{Class, Flags, Rcode, Rtype, rtype},
    zone::{RRset, rdata_name_offset},
};

/// Sections after the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Answer = 0,
    Authority = 1,
    Additional = 2,
}

/// The response would exceed the size limit; nothing of the failed record was kept.
#[derive(Debug, Clone, Copy)]
pub struct Full;

/// An owner name to write: a pointer to a name already in the message, or wire bytes.
#[derive(Debug, Clone, Copy)]
pub enum Owner<'a> {
    At(u16),
    Wire(&'a [u8]),
}

/// Where a writer was (`Writer::mark`), to go back to (`Writer::rollback`): the length, the
/// section counts, the names known for compression.
pub type Mark = (usize, [u16; 3], usize);

/// Builds one response message in `buf`.
#[derive(Debug)]
pub struct Writer<'b> {
    buf: &'b mut Vec<u8>,
    limit: usize,
    counts: [u16; 3],
    /// Offsets of names (and their suffixes) written so far, for compression.
    names: [u16; 64],
    name_count: usize,
}

impl<'b> Writer<'b> {
    /// Starts a response: `buf` is cleared and the header written with zero counts.
    pub fn new(buf: &'b mut Vec<u8>, id: u16, flags: Flags, limit: usize) -> Self {
        buf.clear();
        buf.extend_from_slice(&id.to_be_bytes());
        buf.extend_from_slice(&flags.0.to_be_bytes());
        buf.extend_from_slice(&[0; 8]);
        Writer {
            buf,
            limit,
            counts: [0; 3],
            names: [0; 64],
            name_count: 0,
        }
    }

    /// Copies the question as received (so 0x20 mixed case comes back byte for byte) and
    /// remembers its name for compression.
    pub fn question(&mut self, raw_name: &[u8], qtype: Rtype, qclass: Class) {
        let start = self.buf.len();
        self.buf.extend_from_slice(raw_name);
        self.buf.extend_from_slice(&qtype.to_be_bytes());
        self.buf.extend_from_slice(&qclass.to_be_bytes());
        self.buf[4..6].copy_from_slice(&1u16.to_be_bytes());
        self.remember(start, raw_name);
    }

    /// The header's flags as written so far.
    pub fn flags(&self) -> Flags {
        Flags(super::bytes::u16_at(self.buf, 2).unwrap_or(0))
    }

    pub fn set_flags(&mut self, flags: Flags) {
        self.buf[2..4].copy_from_slice(&flags.0.to_be_bytes());
    }

    /// Sets the header's RCODE bits (an extended code's upper bits go in the OPT record).
    pub fn set_rcode(&mut self, rcode: Rcode) {
        self.set_flags(self.flags().with_rcode(rcode));
    }

    /// The message as written so far, for what is appended after the writer's part (a TSIG
    /// record).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.buf
    }

    /// Lowers the size limit, e.g. to keep room for an OPT record at the end.
    pub fn reserve(&mut self, bytes: usize) {
        self.limit = self.limit.saturating_sub(bytes);
    }

    pub fn unreserve(&mut self, bytes: usize) {
        self.limit += bytes;
    }

    /// A mark to roll back to.
    pub fn mark(&self) -> Mark {
        (self.buf.len(), self.counts, self.name_count)
    }

    pub fn rollback(&mut self, mark: Mark) {
        self.buf.truncate(mark.0);
        self.counts = mark.1;
        self.name_count = mark.2;
        for section in 0..3 {
            self.buf[6 + 2 * section..8 + 2 * section]
                .copy_from_slice(&self.counts[section].to_be_bytes());
        }
    }

    /// Writes a whole RRset, or nothing of it if it does not fit.
    pub fn rrset(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        set: &RRset<'_>,
    ) -> Result<(), Full> {
        let mark = self.mark();
        for rdata in set.rdatas() {
            if let Err(full) = self.record(section, owner, set.rtype, set.ttl_of(rdata), rdata) {
                self.rollback(mark);
                return Err(full);
            }
        }
        Ok(())
    }

    /// Writes one record of class IN, or nothing if it does not fit.
    pub fn record(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: Rtype,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        self.record_in_class(section, owner, rtype, Class::IN, ttl, rdata)
    }

    /// Writes one record, or nothing if it does not fit.
    pub fn record_in_class(
        &mut self,
        section: Section,
        owner: Owner<'_>,
        rtype: Rtype,
        class: Class,
        ttl: u32,
        rdata: &[u8],
    ) -> Result<(), Full> {
        let mark = self.mark();
        match owner {
            Owner::At(offset) => self.buf.extend_from_slice(&(0xC000 | offset).to_be_bytes()),
            Owner::Wire(wire) => self.name(wire),
        }
        self.buf.extend_from_slice(&rtype.to_be_bytes());
        self.buf.extend_from_slice(&class.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.rdata(rtype, rdata);
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
        if self.buf.len() > self.limit {
            self.rollback(mark);
            return Err(Full);
        }
        self.counts[section as usize] += 1;
        let at = 6 + 2 * section as usize;
        self.buf[at..at + 2].copy_from_slice(&self.counts[section as usize].to_be_bytes());
        Ok(())
    }

    /// RDATA, compressing the names that RFC 3597 section 4 allows (types of RFC 1035).
    fn rdata(&mut self, rtype: Rtype, rdata: &[u8]) {
        if rtype == rtype::SOA
            && let Some(mname) = crate::wire::name::wire_len(rdata)
            && let Some(rname) = crate::wire::name::wire_len(&rdata[mname..])
        {
            self.name(&rdata[..mname]);
            self.name(&rdata[mname..mname + rname]);
            self.buf.extend_from_slice(&rdata[mname + rname..]);
        } else if let Some((offset, true)) = rdata_name_offset(rtype)
            && let Some(len) = rdata.get(offset..).and_then(crate::wire::name::wire_len)
        {
            self.buf.extend_from_slice(&rdata[..offset]);
            self.name(&rdata[offset..offset + len]);
            self.buf.extend_from_slice(&rdata[offset + len..]);
        } else {
            self.buf.extend_from_slice(rdata);
        }
    }

    /// Writes a wire name, pointing at an earlier copy of its longest known suffix.
    fn name(&mut self, wire: &[u8]) {
        let mut at = 0;
        while let Some(&len) = wire.get(at) {
            if len == 0 {
                break;
            }
            if let Some(pointer) = self.find(&wire[at..]) {
                self.write_labels(&wire[..at]);
                self.buf
                    .extend_from_slice(&(0xC000 | pointer).to_be_bytes());
                return;
            }
            at += 1 + usize::from(len);
        }
        self.write_labels(&wire[..at]);
        self.buf.push(0);
    }

    fn write_labels(&mut self, labels: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(labels);
        self.remember(start, labels);
    }

    /// Records the offset of each label in `labels`, written at `start`.
    fn remember(&mut self, start: usize, labels: &[u8]) {
        let mut at = 0;
        while let Some(&len) = labels.get(at) {
            if len == 0 || len > 63 {
                break;
            }
            let offset = start + at;
            if offset < 0x3FFF && self.name_count < self.names.len() {
                self.names[self.name_count] = offset as u16;
                self.name_count += 1;
            }
            at += 1 + usize::from(len);
        }
    }

    /// An offset in the message where the name `wire` (a suffix of some written name) starts.
    fn find(&self, wire: &[u8]) -> Option<u16> {
        self.names[..self.name_count]
            .iter()
            .copied()
            .find(|&offset| self.equals_at(usize::from(offset), wire))
    }

    /// Whether the (possibly compressed) name at `offset` equals `wire`, ignoring ASCII case.
    fn equals_at(&self, mut offset: usize, wire: &[u8]) -> bool {
        let mut at = 0;
        let mut hops = 0;
        loop {
            let Some(&len) = self.buf.get(offset) else {
                return false;
            };
            if len & 0xC0 == 0xC0 {
                let Some(&low) = self.buf.get(offset + 1) else {
                    return false;
                };
                offset = super::bytes::pointer(len, low);
                hops += 1;
                if hops > 64 {
                    return false;
                }
                continue;
            }
            let len = usize::from(len);
            let Some(ours) = self.buf.get(offset..offset + 1 + len) else {
                return false;
            };
            let Some(theirs) = wire.get(at..at + 1 + len) else {
                return false;
            };
            if !ours.eq_ignore_ascii_case(theirs) {
                return false;
            }
            if len == 0 {
                return true;
            }
            offset += 1 + len;
            at += 1 + len;
        }
    }

    /// Appends an OPT record (RFC 6891) with our UDP size, the extended RCODE bits, DO and
    /// `options` (code, data). Unknown flags of the query are never echoed.
    pub fn opt(
        &mut self,
        payload: u16,
        extended_rcode: u8,
        dnssec_ok: bool,
        options: &[(u16, &[u8])],
    ) {
        self.buf.push(0);
        self.buf.extend_from_slice(&rtype::OPT.to_be_bytes());
        self.buf.extend_from_slice(&payload.to_be_bytes());
        self.buf.push(extended_rcode);
        self.buf.push(0);
        self.buf
            .extend_from_slice(&(if dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
        let rdlen: usize = options.iter().map(|(_, data)| 4 + data.len()).sum();
        self.buf.extend_from_slice(&(rdlen as u16).to_be_bytes());
        for (code, data) in options {
            self.buf.extend_from_slice(&code.to_be_bytes());
            self.buf
                .extend_from_slice(&(data.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(data);
        }
        self.counts[Section::Additional as usize] += 1;
        self.buf[10..12].copy_from_slice(&self.counts[Section::Additional as usize].to_be_bytes());
    }
}

/// Size of an OPT record without options.
pub const OPT_LEN: usize = 11;
