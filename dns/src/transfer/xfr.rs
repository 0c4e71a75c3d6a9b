//! Zone transfers out: AXFR (RFC 5936) and IXFR (RFC 1995), signed message by message when the
//! request was signed (RFC 8945 section 5.3.1).
//!
//! ```text
//! AXFR                    SOA, every other record, SOA
//! IXFR, client current    SOA
//! IXFR, in the journal    SOA(now), SOA(client's), removed..., SOA(now), added..., SOA(now)
//! IXFR, not in journal    as AXFR (RFC 1995 section 4)
//! ```

use crate::{
    answer::TransferRequest,
    transfer::journal::{self, Journals},
    transfer::tsig::{self, StreamSigner},
    wire::Rtype,
    wire::bytes,
    wire::rtype,
    wire::write::{Owner, Section, Writer},
    wire::{Class, Flags},
    zone::Rr,
    zone::Zone,
};

/// Largest transfer message: TCP's 64 KiB.
pub const MAX_MESSAGE: usize = 65_535;

/// What a transfer sends.
#[derive(Debug)]
pub struct Answer {
    pub messages: Vec<Vec<u8>>,
    /// `AXFR`, `IXFR`, or `IXFR-as-AXFR` (the journal did not reach the client's serial).
    pub kind: &'static str,
    pub records: usize,
}

/// The messages answering `packet`, a transfer request for `zone` that `request` describes.
pub fn answer(
    zone: &Zone,
    journals: Option<&Journals>,
    request: &TransferRequest,
    packet: &[u8],
    now: u64,
) -> Answer {
    answer_within(zone, journals, request, packet, now, MAX_MESSAGE)
}

fn answer_within(
    zone: &Zone,
    journals: Option<&Journals>,
    request: &TransferRequest,
    packet: &[u8],
    now: u64,
    max_len: usize,
) -> Answer {
    let room = request
        .signed
        .as_ref()
        .map_or(0, |signed| tsig::record_len(&signed.key));
    let limit = max_len - room;
    let (records, kind) = match request.ixfr_from {
        None => (axfr_records(zone), "AXFR"),
        Some(client) if !crate::zone::serial_newer(zone.serial(), client) => {
            // Up to date (or ahead of us): the current SOA alone.
            (crate::zone::soa(zone).into_iter().collect(), "IXFR")
        }
        Some(client) => match journals.and_then(|j| j.since(zone, client)) {
            Some(diff) => (ixfr_records(zone, &diff), "IXFR"),
            None => (axfr_records(zone), "IXFR-as-AXFR"),
        },
    };
    let count = records.len();
    let mut messages = write(packet, &records, limit);
    if let Some(signed) = &request.signed {
        let mut signer = StreamSigner::new(signed);
        for message in &mut messages {
            signer.sign(message, now);
        }
    }
    Answer {
        messages,
        kind,
        records: count,
    }
}

/// SOA, every other record, SOA.
fn axfr_records(zone: &Zone) -> Vec<Rr> {
    let Some(soa) = crate::zone::soa(zone) else {
        return Vec::new();
    };
    let mut records = Vec::with_capacity(zone.record_count() + 1);
    records.push(soa.clone());
    for node in zone.nodes() {
        let owner = zone.name(node);
        for set in zone.rrsets(node) {
            if set.rtype == rtype::SOA {
                continue;
            }
            for rdata in set.rdatas() {
                records.push(Rr {
                    owner: owner.to_vec(),
                    rtype: set.rtype,
                    ttl: set.ttl_of(rdata),
                    rdata: rdata.to_vec(),
                });
            }
        }
    }
    records.push(soa);
    records
}

/// The current SOA, the difference (old SOA, removed, new SOA, added), the current SOA.
fn ixfr_records(zone: &Zone, diff: &journal::Diff) -> Vec<Rr> {
    let Some(current) = crate::zone::soa(zone) else {
        return Vec::new();
    };
    let mut records = Vec::with_capacity(diff.removed.len() + diff.added.len() + 4);
    records.push(current.clone());
    records.push(diff.from_soa.clone());
    records.extend(diff.removed.iter().cloned());
    records.push(diff.to_soa.clone());
    records.extend(diff.added.iter().cloned());
    records.push(current);
    records
}

/// `records` as answers to `packet`, in as few messages of at most `limit` bytes as they fit:
/// the question in the first only, every message with the query's ID.
fn write(packet: &[u8], records: &[Rr], limit: usize) -> Vec<Vec<u8>> {
    let Some(header) = packet.get(..12) else {
        return Vec::new();
    };
    let id = bytes::u16_at(header, 0).unwrap_or(0);
    let query = Flags(bytes::u16_at(header, 2).unwrap_or(0));
    let flags = Flags::QR | Flags::AA | Flags::of_opcode(query.opcode()) | (query & Flags::RD);
    let question = crate::wire::read::after_question(packet).and_then(|end| packet.get(12..end));
    let mut messages = Vec::new();
    let mut buf = Vec::with_capacity(limit.min(16 * 1024));
    let mut w = Writer::new(&mut buf, id, flags, limit);
    if let Some(question) = question.filter(|q| q.len() > 4) {
        let (name, fixed) = question.split_at(question.len() - 4);
        let field = |at| bytes::u16_at(fixed, at).unwrap_or(0);
        w.question(name, Rtype(field(0)), Class(field(2)));
    }
    for rr in records {
        if w.record(
            Section::Answer,
            Owner::Wire(&rr.owner),
            rr.rtype,
            rr.ttl,
            &rr.rdata,
        )
        .is_err()
        {
            messages.push(std::mem::replace(
                &mut buf,
                Vec::with_capacity(limit.min(16 * 1024)),
            ));
            w = Writer::new(&mut buf, id, flags, limit);
            // A single record always fits in an empty message.
            let _ = w.record(
                Section::Answer,
                Owner::Wire(&rr.owner),
                rr.rtype,
                rr.ttl,
                &rr.rdata,
            );
        }
    }
    messages.push(buf);
    messages
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;
    use crate::{
        transfer::tsig::{Algorithm, Key, Signed, StreamVerifier},
        wire::name::wire,
        zone::fixture::zone,
        zone::load::load_zone_text,
    };

    fn axfr() -> TransferRequest {
        TransferRequest {
            origin_key: Vec::new(),
            ixfr_from: None,
            signed: None,
        }
    }

    fn axfr_query() -> Vec<u8> {
        let mut packet = vec![0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&wire("example.com"));
        packet.extend_from_slice(&rtype::AXFR.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        packet
    }

    #[test]
    fn a_large_transfer_spans_messages_with_soa_first_and_last() {
        let zone = zone(20_000);
        let messages = answer_within(&zone, None, &axfr(), &axfr_query(), 0, 16_384).messages;
        assert!(messages.len() > 10, "{} messages", messages.len());
        let mut total = 0;
        for (i, message) in messages.iter().enumerate() {
            assert!(message.len() <= 16_384);
            assert_eq!(
                message[..2],
                [0xAB, 0xCD],
                "every message carries the query ID"
            );
            assert_eq!(message[2] & 0x84, 0x84, "QR and AA");
            let qdcount = bytes::u16_at(message, 4).unwrap();
            assert_eq!(qdcount, u16::from(i == 0), "the question only in the first");
            total += usize::from(bytes::u16_at(message, 6).unwrap());
        }
        // Every record once, plus the closing SOA.
        assert_eq!(total, zone.record_count() + 1);
        let first_type_at = 12 + wire("example.com").len() + 4 + 2;
        assert_eq!(
            messages[0][first_type_at..first_type_at + 2],
            rtype::SOA.to_be_bytes()
        );
        let last = messages.last().unwrap();
        // The closing SOA is the last record: its RDATA ends the message with the MINIMUM 60.
        assert_eq!(last[last.len() - 4..], [0, 0, 0, 60]);
    }

    fn versioned(serial: u32, body: &str) -> Zone {
        let text = format!(
            "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1 hostmaster {serial} 1 1 1 60\n NS ns1\nns1 A 192.0.2.1\n{body}"
        );
        load_zone_text(Path::new("example.com.zone"), text.as_bytes(), None)
            .unwrap()
            .zone
    }

    fn ixfr_query(serial: u32) -> Vec<u8> {
        let mut packet = vec![0xAB, 0xCD, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0];
        packet.extend_from_slice(&wire("example.com"));
        packet.extend_from_slice(&rtype::IXFR.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        packet.extend_from_slice(&[0xC0, 12, 0, 6, 0, 1, 0, 0, 0, 0, 0, 22, 0, 0, 0, 0]);
        packet.extend_from_slice(&serial.to_be_bytes());
        packet.extend_from_slice(&[0; 16]);
        packet
    }

    /// Record types of the answer section of every message, in order.
    fn types(messages: &[Vec<u8>]) -> Vec<Rtype> {
        let mut types = Vec::new();
        for message in messages {
            let [_, answers, ..] = crate::wire::read::counts(message).unwrap();
            let mut at = crate::wire::read::after_question(message).unwrap();
            for _ in 0..answers {
                let record = crate::wire::read::read_record(message, at).unwrap();
                types.push(record.rtype);
                at = record.end;
            }
        }
        types
    }

    #[test]
    fn ixfr_sends_the_difference_or_the_soa_or_the_whole_zone() {
        let dir = tempfile::tempdir().unwrap();
        let journals = Journals::new(dir.path(), 1 << 20);
        let v1 = versioned(1, "a A 192.0.2.10\n");
        let v2 = versioned(2, "a A 192.0.2.20\n");
        journals.record(&v1, &v2);
        let request = |serial| TransferRequest {
            origin_key: v2.origin_key().to_vec(),
            ixfr_from: Some(serial),
            signed: None,
        };
        let answer = super::answer(&v2, Some(&journals), &request(1), &ixfr_query(1), 0);
        assert_eq!(answer.kind, "IXFR");
        // SOA(2), SOA(1), a 192.0.2.10 removed, SOA(2), a 192.0.2.20 added, SOA(2).
        assert_eq!(
            types(&answer.messages),
            [
                rtype::SOA,
                rtype::SOA,
                rtype::A,
                rtype::SOA,
                rtype::A,
                rtype::SOA
            ]
        );
        let current = super::answer(&v2, Some(&journals), &request(2), &ixfr_query(2), 0);
        assert_eq!(
            types(&current.messages),
            [rtype::SOA],
            "up to date: the SOA alone"
        );
        let unknown = super::answer(&v2, Some(&journals), &request(0), &ixfr_query(0), 0);
        assert_eq!(unknown.kind, "IXFR-as-AXFR");
        assert_eq!(unknown.records, v2.record_count() + 1);
    }

    #[test]
    fn a_signed_transfer_is_signed_message_by_message() {
        let key = std::sync::Arc::new(
            Key::new("xfr.", Algorithm::HmacSha256, b"0123456789abcdef").unwrap(),
        );
        let zone = zone(20_000);
        let mut query = axfr_query();
        let mac = crate::transfer::tsig::sign(&mut query, &key, None, 1_800_000_000);
        let request = TransferRequest {
            origin_key: zone.origin_key().to_vec(),
            ixfr_from: None,
            signed: Some(Signed {
                key: key.clone(),
                mac: mac.clone(),
            }),
        };
        let answer = answer_within(&zone, None, &request, &query, 1_800_000_000, 16_384);
        assert!(answer.messages.len() > 10);
        let mut verifier = StreamVerifier::new(key, mac);
        for message in &answer.messages {
            assert!(message.len() <= 16_384);
            verifier.verify(message, 1_800_000_000).unwrap();
        }
    }
}
