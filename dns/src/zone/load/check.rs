//! Checks beyond syntax, as named-checkzone, kzonecheck and nsd-checkzone make them. Where the
//! three disagree, the majority decides whether a finding refuses the zone or is a warning;
//! the corpus test under `tests/zones/` holds that line.

use crate::{
    wire::name,
    wire::{Rtype, rtype, types::type_name},
    zone::{Records, Sorted},
};

/// Largest DNS message (a TCP frame).
const MAX_MESSAGE: usize = 65_535;
/// Bytes of a response before its answer section: header and a question for the longest name.
const QUESTION_ROOM: usize = 12 + name::MAX_NAME + 4;

/// What the checks found: at most one error (the first in file order) and any warnings, each
/// with the index of the record responsible.
#[derive(Debug, Default)]
pub struct Findings {
    pub error: Option<(usize, String)>,
    pub warnings: Vec<(usize, String)>,
}

impl Findings {
    fn fail(&mut self, record: usize, reason: String) {
        if self.error.as_ref().is_none_or(|(first, _)| record < *first) {
            self.error = Some((record, reason));
        }
    }
}

/// Checks records in canonical order. `Records` must hold at least one record.
pub fn check(origin: &[u8], records: &Records, sorted: &Sorted) -> Findings {
    let mut found = Findings::default();
    let origin_key = name::key_of(origin);
    let order: Vec<usize> = sorted.order.iter().map(|&i| i as usize).collect();
    let group_of = |key: &[u8]| {
        let start = order.partition_point(|&i| sorted.key(i) < key);
        let end = start + order[start..].partition_point(|&i| sorted.key(i) == key);
        &order[start..end]
    };
    let apex = group_of(&origin_key);
    // Whole-zone findings point at the first record of the apex, else the first of the file.
    let apex_first = apex.iter().copied().min().unwrap_or(0);
    let of_type = |group: &[usize], rtype: Rtype| -> Vec<usize> {
        group
            .iter()
            .copied()
            .filter(|&i| records.rtype(i) == rtype)
            .collect()
    };
    let apex_soa = of_type(apex, rtype::SOA);
    match apex_soa.as_slice() {
        [] => found.fail(apex_first, "no SOA record at the zone apex".to_string()),
        [_, second, ..] => found.fail(*second, "a second SOA record at the apex".to_string()),
        [_] => {}
    }
    if of_type(apex, rtype::NS).is_empty() {
        let at = apex_soa.first().copied().unwrap_or(apex_first);
        found.fail(at, "no NS records at the zone apex".to_string());
    }

    // The innermost zone cut and DNAME above the node being checked, by key.
    let mut cut: Option<&[u8]> = None;
    let mut dname: Option<&[u8]> = None;
    let mut at = 0;
    while at < order.len() {
        let key = sorted.key(order[at]);
        let group = group_of(key);
        at += group.len();
        let owner = || name::to_text(records.owner(group[0]));
        let below = |ancestor: Option<&[u8]>| {
            ancestor.is_some_and(|a| key.len() > a.len() && key.starts_with(a))
        };
        if !below(cut) {
            cut = None;
        }
        if !below(dname) {
            dname = None;
        }
        if dname.is_some() && cut.is_none() {
            let first_in_file = group.iter().copied().min().unwrap_or(0);
            found.fail(
                first_in_file,
                format!(
                    "\"{}\" is below a DNAME; no data may exist there (RFC 6672)",
                    owner()
                ),
            );
        }
        let occluded = cut.is_some();
        let has = |rtype: Rtype| group.iter().any(|&i| records.rtype(i) == rtype);
        if key != origin_key.as_slice() {
            if has(rtype::SOA) {
                let soa = of_type(group, rtype::SOA)[0];
                found.fail(soa, format!("SOA record at \"{}\", not the apex", owner()));
            }
            if !occluded && has(rtype::NS) {
                cut = Some(key);
            }
        }

        let cnames = if has(rtype::CNAME) {
            of_type(group, rtype::CNAME)
        } else {
            Vec::new()
        };
        if let Some(&cname) = cnames.first() {
            let other = group
                .iter()
                .copied()
                .filter(|&i| !matches!(records.rtype(i), rtype::CNAME | rtype::RRSIG | rtype::NSEC))
                .min();
            if let Some(other) = other {
                // The record that made the conflict: the later of the two in the file.
                let at = cname.max(other);
                found.fail(at, format!("CNAME and other data at \"{}\"", owner()));
            } else if let Some(&second) = cnames
                .iter()
                .find(|&&i| records.rdata(i) != records.rdata(cname))
            {
                found.fail(
                    second,
                    format!("CNAME and a second CNAME at \"{}\"", owner()),
                );
            }
        }
        let dnames = if has(rtype::DNAME) {
            of_type(group, rtype::DNAME)
        } else {
            Vec::new()
        };
        if let Some(&first) = dnames.first() {
            if let Some(&second) = dnames
                .iter()
                .find(|&&i| records.rdata(i) != records.rdata(first))
            {
                found.fail(second, format!("a second DNAME at \"{}\"", owner()));
            }
            if !occluded && cut != Some(key) && dname.is_none() {
                dname = Some(key);
            }
        }

        let apex_here = key == origin_key.as_slice();
        if !occluded && has(rtype::NS) {
            for ns in of_type(group, rtype::NS) {
                check_ns_target(origin, records, ns, apex_here, &group_of, &mut found);
            }
        }
        check_sizes(records, group, &mut found);
    }
    found
}

/// An NS target inside the zone needs addresses and must not be a CNAME: an error at the apex
/// (BIND and Knot refuse it), a warning at a delegation (BIND and NSD load it).
fn check_ns_target<'o>(
    origin: &[u8],
    records: &Records,
    ns: usize,
    apex: bool,
    group_of: &impl Fn(&[u8]) -> &'o [usize],
    found: &mut Findings,
) {
    let Some(len) = name::wire_len(records.rdata(ns)) else {
        return;
    };
    let target = &records.rdata(ns)[..len];
    if !name::is_subdomain(target, origin) {
        return;
    }
    let group = group_of(&name::key_of(target));
    let target_text = name::to_text(target);
    let problem = if group.iter().any(|&i| records.rtype(i) == rtype::CNAME) {
        format!("name server \"{target_text}\" is a CNAME")
    } else if !group
        .iter()
        .any(|&i| matches!(records.rtype(i), rtype::A | rtype::AAAA))
    {
        format!(
            "name server \"{target_text}\" is inside the zone but has no A or AAAA record (missing glue)"
        )
    } else {
        return;
    };
    if apex {
        found.fail(ns, problem);
    } else {
        found.warnings.push((ns, problem));
    }
}

/// Every RRset must fit one DNS message as the answer to a query for it, and its records
/// should share one TTL (the first in the file wins, as in BIND).
fn check_sizes(records: &Records, group: &[usize], found: &mut Findings) {
    let mut at = 0;
    while at < group.len() {
        let rtype = records.rtype(group[at]);
        let end = at
            + group[at..]
                .iter()
                .position(|&i| records.rtype(i) != rtype)
                .unwrap_or(group.len() - at);
        let set = &group[at..end];
        at = end;
        // Set members are in file order; the first one's TTL is the set's.
        let ttl = records.ttl(set[0]);
        if let Some(&other) = set.iter().find(|&&i| records.ttl(i) != ttl) {
            found.warnings.push((
                other,
                format!(
                    "TTL {} differs from the {} set's TTL {ttl}, which is used",
                    records.ttl(other),
                    type_name(rtype)
                ),
            ));
        }
        // An answer record: compressed owner (2), fixed fields (10), RDATA.
        let size = |i: usize| 12 + records.rdata(i).len();
        let total: usize = set.iter().map(|&i| size(i)).sum();
        if QUESTION_ROOM + total <= MAX_MESSAGE {
            continue;
        }
        // Duplicates are dropped when the zone is built; count each RDATA once.
        let mut rdatas: Vec<(&[u8], usize)> = set.iter().map(|&i| (records.rdata(i), i)).collect();
        rdatas.sort_unstable();
        rdatas.dedup_by(|a, b| a.0 == b.0);
        rdatas.sort_unstable_by_key(|&(_, i)| i);
        let mut used = QUESTION_ROOM;
        for (_, i) in rdatas {
            used += size(i);
            if used > MAX_MESSAGE {
                found.fail(
                    i,
                    format!(
                        "the {} set at \"{}\" no longer fits one DNS message (65,535 bytes) with this record",
                        type_name(rtype),
                        name::to_text(records.owner(i))
                    ),
                );
                break;
            }
        }
    }
}
