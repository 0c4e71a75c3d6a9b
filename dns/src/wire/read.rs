//! Reading records from messages other servers wrote: names with compression pointers, in
//! owners and inside RDATA. Transfers in (AXFR, IXFR), SOA answers and TSIG records are read
//! here; queries, which cannot be compressed, have their own faster path in `answer`.

use crate::wire::{Class, Rtype, bytes, name::MAX_NAME, rtype};

/// Most compression pointers followed in one name: more means a loop.
const MAX_POINTERS: usize = 64;

/// Reads the name at `at` in `message`, following compression pointers: the name in
/// uncompressed wire form, and the offset just past it in the message.
pub fn read_name(message: &[u8], at: usize) -> Option<(Vec<u8>, usize)> {
    let mut name = Vec::with_capacity(32);
    let mut position = at;
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *message.get(position)?;
        match len {
            0 => {
                name.push(0);
                return (name.len() <= MAX_NAME).then(|| (name, end.unwrap_or(position + 1)));
            }
            1..=63 => {
                let label = message.get(position..position + 1 + usize::from(len))?;
                name.extend_from_slice(label);
                if name.len() > MAX_NAME {
                    return None;
                }
                position += 1 + usize::from(len);
            }
            0xC0..=0xFF => {
                let low = *message.get(position + 1)?;
                let target = bytes::pointer(len, low);
                jumps += 1;
                // Pointers go backwards (RFC 1035 section 4.1.4 "a prior occurrence").
                if jumps > MAX_POINTERS || target >= position {
                    return None;
                }
                end.get_or_insert(position + 2);
                position = target;
            }
            _ => return None,
        }
    }
}

/// A record read from a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub owner: Vec<u8>,
    pub rtype: Rtype,
    pub class: Class,
    pub ttl: u32,
    /// With every name in it uncompressed.
    pub rdata: Vec<u8>,
    /// Where the record starts and ends in the message.
    pub start: usize,
    pub end: usize,
}

/// Reads the record at `at`.
pub fn read_record(message: &[u8], at: usize) -> Option<Record> {
    let (owner, fixed_at) = read_name(message, at)?;
    let rtype = Rtype(bytes::u16_at(message, fixed_at)?);
    let class = Class(bytes::u16_at(message, fixed_at + 2)?);
    let ttl = bytes::u32_at(message, fixed_at + 4)?;
    let rdlen = usize::from(bytes::u16_at(message, fixed_at + 8)?);
    let start = fixed_at + 10;
    let end = start + rdlen;
    if end > message.len() {
        return None;
    }
    let rdata = uncompressed_rdata(message, rtype, start, end)?;
    Some(Record {
        owner,
        rtype,
        class,
        ttl,
        rdata,
        start: at,
        end,
    })
}

/// The parts of an RDATA layout: a name (which may be compressed), or fixed bytes.
#[derive(Clone, Copy)]
enum Part {
    Name,
    Bytes(usize),
    /// One <character-string>.
    Text,
}

/// How RDATA of `rtype` holds names, for the types whose names a sender may compress (RFC 3597
/// section 4: the RFC 1035 types must be, and RP, AFSDB, RT, SIG, PX, NXT, NAPTR, SRV should be,
/// decompressed by a receiver); `None` for RDATA read as it is.
fn layout(rtype: Rtype) -> Option<&'static [Part]> {
    use Part::{Bytes, Name, Text};
    Some(match rtype {
        rtype::NS
        | rtype::MD
        | rtype::MF
        | rtype::CNAME
        | rtype::MB
        | rtype::MG
        | rtype::MR
        | rtype::PTR
        | rtype::DNAME => &[Name],
        rtype::SOA => &[Name, Name, Bytes(20)],
        rtype::MINFO | rtype::RP => &[Name, Name],
        rtype::MX | rtype::AFSDB | rtype::RT | rtype::KX => &[Bytes(2), Name],
        rtype::PX => &[Bytes(2), Name, Name],
        rtype::SRV => &[Bytes(6), Name],
        rtype::NAPTR => &[Bytes(4), Text, Text, Text, Name],
        _ => return None,
    })
}

/// The RDATA at `start..end` of `message` with its names uncompressed; `None` if it does not
/// hold what its type says.
pub fn uncompressed_rdata(
    message: &[u8],
    rtype: Rtype,
    start: usize,
    end: usize,
) -> Option<Vec<u8>> {
    let raw = message.get(start..end)?;
    let Some(parts) = layout(rtype) else {
        return Some(raw.to_vec());
    };
    let mut out = Vec::with_capacity(raw.len() + 32);
    let mut at = start;
    for part in parts {
        match *part {
            Part::Name => {
                let (name, next) = read_name(message, at)?;
                if next > end {
                    return None;
                }
                out.extend_from_slice(&name);
                at = next;
            }
            Part::Bytes(n) => {
                out.extend_from_slice(message.get(at..at + n).filter(|_| at + n <= end)?);
                at += n;
            }
            Part::Text => {
                let len = usize::from(*message.get(at)?);
                out.extend_from_slice(
                    message
                        .get(at..at + 1 + len)
                        .filter(|_| at + 1 + len <= end)?,
                );
                at += 1 + len;
            }
        }
    }
    (at == end).then_some(out)
}

/// The header's counts: question, answer, authority, additional.
pub fn counts(message: &[u8]) -> Option<[u16; 4]> {
    let word = |at| bytes::u16_at(message, at);
    Some([word(4)?, word(6)?, word(8)?, word(10)?])
}

/// The offset of the first record after the question section.
pub fn after_question(message: &[u8]) -> Option<usize> {
    let [qdcount, ..] = counts(message)?;
    let mut at = 12;
    for _ in 0..qdcount {
        let (_, next) = read_name(message, at)?;
        at = next + 4;
        if at > message.len() {
            return None;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::wire::name::wire;

    #[test]
    fn names_follow_pointers_and_refuse_loops() {
        // "foobar.com" at 12, then "www" + pointer to 12 at 24.
        let mut message = vec![0u8; 12];
        message.extend_from_slice(&wire("foobar.com"));
        let www_at = message.len();
        message.extend_from_slice(&[3, b'w', b'w', b'w', 0xC0, 12]);
        let (name, next) = read_name(&message, www_at).unwrap();
        assert_eq!(name, wire("www.foobar.com"));
        assert_eq!(next, www_at + 6);
        // A pointer to itself, and one forward, are refused.
        let looped = [0u8; 12]
            .iter()
            .copied()
            .chain([0xC0, 12])
            .collect::<Vec<_>>();
        assert!(read_name(&looped, 12).is_none());
        let forward = [0u8; 12]
            .iter()
            .copied()
            .chain([0xC0, 20, 0])
            .collect::<Vec<_>>();
        assert!(read_name(&forward, 12).is_none());
        // Labels of 64 bytes and more, and names past 255 bytes, are not names.
        assert!(read_name(&[64], 0).is_none());
        let long: Vec<u8> = (0..5)
            .flat_map(|_| {
                let mut label = vec![63];
                label.extend([b'a'; 63]);
                label
            })
            .chain([0])
            .collect();
        assert!(read_name(&long, 0).is_none());
    }

    #[test]
    fn rdata_names_are_uncompressed_by_type() {
        let mut message = vec![0u8; 12];
        message.extend_from_slice(&wire("foobar.com"));
        // MX 10 mail.<ptr 12>
        let start = message.len();
        message.extend_from_slice(&[0, 10, 4, b'm', b'a', b'i', b'l', 0xC0, 12]);
        let end = message.len();
        let rdata = uncompressed_rdata(&message, rtype::MX, start, end).unwrap();
        let mut expected = vec![0, 10];
        expected.extend_from_slice(&wire("mail.foobar.com"));
        assert_eq!(rdata, expected);
        // A type with no names is taken as it is, pointer-like bytes and all.
        assert_eq!(
            uncompressed_rdata(&message, rtype::A, start, start + 4).unwrap(),
            [0, 10, 4, b'm']
        );
        // RDATA shorter than its layout is refused.
        assert!(uncompressed_rdata(&message, rtype::SOA, start, end).is_none());
    }
}
