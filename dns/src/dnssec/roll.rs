//! Key rollovers, planned from each key's timeline (RFC 6781 section 4.1, RFC 7583):
//!
//! - a ZSK rolls by pre-publication: the new key's DNSKEY is published; it signs once every
//!   cache can hold it (the DNSKEY TTL and the propagation delay later), and the old key stops
//!   signing then and leaves once the signatures it made have left the caches (the zone's
//!   largest TTL and the delay later);
//! - a KSK or CSK rolls by double signature of the DNSKEY set, with CDS and CDNSKEY (RFC 7344,
//!   RFC 8078): the new key is published and signs the DNSKEY set at once; once every cache can
//!   hold it, CDS and CDNSKEY name it instead of the old key (and a new CSK signs the zone's
//!   data); the old key stays published, signing the DNSKEY set, until every server of the
//!   parent is seen serving the new key's DS (as Knot's `ksk-submission`) and the old DS has
//!   left the caches.
//!
//! Everything is a time in the keys' files, so a restart in the middle of a rollover goes on
//! where it was.

use super::key::{Algorithm, Key, KeyError, Times, entry_points};

/// When keys are replaced, and how long changes take to reach every server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// How long a ZSK signs before it is replaced (Knot's default: 30 days); 0: never.
    pub zsk_lifetime: u32,
    /// How long a KSK or CSK is the zone's entry point before it is replaced; 0: never (the
    /// default, as Knot's and BIND's: replacing it needs the parent).
    pub ksk_lifetime: u32,
    /// How long a change takes to reach every secondary, added to each TTL waited out
    /// (Knot's default: 1 hour).
    pub propagation_delay: u32,
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule {
            zsk_lifetime: 30 * 86_400,
            ksk_lifetime: 0,
            propagation_delay: 3600,
        }
    }
}

/// The TTLs a rollover waits for caches to forget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ttls {
    /// The DNSKEY set's.
    pub dnskey: u32,
    /// The largest in the zone.
    pub max: u32,
}

/// One thing a plan did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A rollover began: `new` is published and replaces `old` at `active`.
    Started {
        role: &'static str,
        new: u16,
        old: u16,
        active: u64,
    },
    /// An algorithm rollover began: `new` signs now, and is published at `publish`.
    AlgorithmStarted {
        new: u16,
        algorithm: u8,
        publish: u64,
    },
    /// A key left the zone.
    Removed { tag: u16 },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Started {
                role,
                new,
                old,
                active,
            } => write!(
                f,
                "{role} rollover: key {new} published, replacing key {old} at {active}"
            ),
            Step::AlgorithmStarted {
                new,
                algorithm,
                publish,
            } => write!(
                f,
                "algorithm rollover: key {new} (algorithm {algorithm}) signs, published at {publish}"
            ),
            Step::Removed { tag } => write!(f, "key {tag} removed"),
        }
    }
}

/// Moves the keys of a zone on at `now`: keys whose time is over leave, and a key due to be
/// replaced gets its successor (made with `algorithm`). Returns what it did: nothing when no
/// event was due.
pub fn plan(
    keys: &mut Vec<Key>,
    schedule: &Schedule,
    ttls: Ttls,
    now: u64,
) -> Result<Vec<Step>, KeyError> {
    let mut steps = Vec::new();
    keys.retain(|key| {
        let gone = key.times.gone_at().is_some_and(|gone| gone <= now);
        if gone {
            steps.push(Step::Removed { tag: key.tag });
        }
        !gone
    });
    let delay = u64::from(schedule.propagation_delay);
    for sep in [false, true] {
        let lifetime = if sep {
            schedule.ksk_lifetime
        } else {
            schedule.zsk_lifetime
        };
        if rollover_due(keys, sep, lifetime).is_none_or(|due| due > now) {
            continue;
        }
        let Some(old) = keys.iter().find(|key| key.is_sep() == sep) else {
            continue;
        };
        let (role, flags, old_tag) = (old.role(keys), old.flags, old.tag);
        let active = now + u64::from(ttls.dnskey) + delay;
        // The key's own algorithm: only a rollover on command changes it.
        let mut new = Key::generate(old.algorithm, flags, now)?;
        new.times = Times {
            publish: now,
            active,
            ..Times::default()
        };
        for key in keys.iter_mut().filter(|key| key.is_sep() == sep) {
            key.times.retire = Some(active);
            if !sep {
                // Its signatures are gone from caches the largest TTL after it stops making them.
                key.times.remove = Some(active + u64::from(ttls.max) + delay);
            }
        }
        steps.push(Step::Started {
            role,
            new: new.tag,
            old: old_tag,
            active,
        });
        keys.push(new);
    }
    Ok(steps)
}

/// When the one key of its kind (the parent's entry point if `sep`, else the ZSK) is due to be
/// replaced: `None` if never, if the zone has no key of the kind or a rollover is under way.
fn rollover_due(keys: &[Key], sep: bool, lifetime: u32) -> Option<u64> {
    let mut kind = keys.iter().filter(|key| key.is_sep() == sep);
    let (Some(key), None) = (kind.next(), kind.next()) else {
        return None;
    };
    (lifetime > 0).then(|| key.times.active + u64::from(lifetime))
}

/// The new entry point of a KSK, CSK or algorithm rollover whose DS the parent is to serve
/// now: CDS names it, and a key it replaces waits for that DS to leave.
pub fn awaiting_ds(keys: &[Key], now: u64) -> Option<&Key> {
    let [new] = entry_points(keys, now)[..] else {
        return None;
    };
    let replacing = keys.iter().any(|key| {
        key.tag != new.tag
            && key.times.remove.is_none()
            && key.times.ready_at() < new.times.ready_at()
            && (key.is_sep() || key.algorithm != new.algorithm)
    });
    (replacing && new.times.ds_seen.is_none() && new.times.ready_at() <= now).then_some(new)
}

/// Records that every server of the parent serves the DS of key `tag` (with TTL `ds_ttl`) at
/// `now`: the keys it replaces leave once the old DS has left the caches, and the signatures
/// they made too (for an algorithm rollover, their signatures stay until their DNSKEYs have
/// left the caches). Returns whether `tag` was awaiting its DS.
pub fn ds_seen(
    keys: &mut [Key],
    tag: u16,
    now: u64,
    ds_ttl: u32,
    ttls: Ttls,
    schedule: &Schedule,
) -> bool {
    let Some((new, algorithm)) = awaiting_ds(keys, now).map(|key| (key.tag, key.algorithm)) else {
        return false;
    };
    if new != tag {
        return false;
    }
    let delay = u64::from(schedule.propagation_delay);
    let ds_gone = now + u64::from(ds_ttl) + delay;
    for key in keys.iter_mut() {
        let sep = key.is_sep();
        let times = &mut key.times;
        if key.tag == tag {
            times.ds_seen = Some(now);
        } else if times.remove.is_some() {
            continue;
        } else if key.algorithm != algorithm {
            times.remove = Some(ds_gone);
            times.retire = Some(ds_gone + u64::from(ttls.dnskey) + delay);
        } else if let (true, Some(retire)) = (sep, times.retire) {
            let signatures_gone = retire + u64::from(ttls.max) + delay;
            times.remove = Some(ds_gone.max(signatures_gone));
        }
    }
    true
}

/// Why an algorithm rollover cannot start.
#[derive(Debug, thiserror::Error)]
pub enum RolloverError {
    /// The zone's keys are of that algorithm already.
    #[error("the keys are {0:?} already")]
    Same(Algorithm),
    /// Another rollover is under way.
    #[error("a rollover is under way (key {0}): wait for it to end")]
    Underway(u16),
    /// The new keys could not be made or kept.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Not an algorithm keys are made with.
    #[error("{0:?}: not an algorithm keys are made with (\"ecdsap256sha256\" or \"ed25519\")")]
    UnknownAlgorithm(String),
    /// The zone is not signed here.
    #[error("the zone is not signed here (dnssec = true)")]
    NotSigned,
    /// Another node moves the keys on.
    #[error("another node plans the keys (it holds the dnssec/planner lease): run this there")]
    NotPlanner,
}

/// Starts an algorithm rollover to `algorithm` at `now` (RFC 6781 section 4.1.4, as Knot does
/// it): new keys of the same kinds sign the zone at once, beside the old ones; their DNSKEYs are
/// published once those signatures are in every cache, and CDS names the new entry point once
/// the DNSKEYs are; when the parent serves its DS, the old DNSKEYs leave, and then their
/// signatures.
pub fn start_algorithm(
    keys: &mut Vec<Key>,
    algorithm: Algorithm,
    schedule: &Schedule,
    ttls: Ttls,
    now: u64,
) -> Result<Vec<Step>, RolloverError> {
    // A rollover under way is a second key of a kind, until the old one has gone.
    for sep in [true, false] {
        if let [_, second, ..] = keys
            .iter()
            .filter(|key| key.is_sep() == sep)
            .collect::<Vec<_>>()[..]
        {
            return Err(RolloverError::Underway(second.tag));
        }
    }
    let [sep, ..] = entry_points(keys, now)[..] else {
        return Ok(Vec::new());
    };
    if sep.algorithm == algorithm {
        return Err(RolloverError::Same(algorithm));
    }
    let delay = u64::from(schedule.propagation_delay);
    let publish = now + u64::from(ttls.max) + delay;
    let ready = publish + u64::from(ttls.dnskey) + delay;
    let mut kinds = vec![sep.flags];
    if keys.iter().any(|key| !key.is_sep()) {
        kinds.push(super::key::ZSK_FLAGS);
    }
    let mut steps = Vec::new();
    for flags in kinds {
        let mut new = Key::generate(algorithm, flags, now)?;
        new.times = Times {
            publish,
            active: now,
            ready: new.is_sep().then_some(ready),
            ..Times::default()
        };
        steps.push(Step::AlgorithmStarted {
            new: new.tag,
            algorithm: algorithm.number(),
            publish,
        });
        keys.push(new);
    }
    Ok(steps)
}

/// The first event of the keys' timelines, or of their schedule, after `after`.
pub fn next_event(keys: &[Key], schedule: &Schedule, after: u64) -> Option<u64> {
    let rollovers = [
        rollover_due(keys, false, schedule.zsk_lifetime),
        rollover_due(keys, true, schedule.ksk_lifetime),
    ];
    keys.iter()
        .flat_map(|key| key.times.events().map(|(_, at)| at))
        .chain(rollovers.into_iter().flatten())
        .filter(|&at| at > after)
        .min()
}

/// What a key is doing at `now`, as `ctl` and the metrics say it: `presigning` (signing, its
/// DNSKEY not yet published: an algorithm rollover), `published` (not signing yet), `active`,
/// `submitted` (named by CDS, its DS awaited at the parent), `retired` (published, no longer
/// signing), `withdrawn` (no longer published, its signatures still served) or `removed`.
pub fn state(key: &Key, keys: &[Key], now: u64) -> &'static str {
    let times = &key.times;
    let signs = times.signs(now) || (key.is_sep() && times.signs_keys(now));
    match (times.published(now), signs) {
        (false, false) => "removed",
        (false, true) if now < times.publish => "presigning",
        (false, true) => "withdrawn",
        (true, _) if times.retire.is_some_and(|retire| retire <= now) => "retired",
        (true, _) if now < times.active => "published",
        _ if awaiting_ds(keys, now).is_some_and(|awaiting| awaiting.tag == key.tag) => "submitted",
        _ => "active",
    }
}

/// A key's next event after `now`: what and when.
pub fn key_next_event(key: &Key, now: u64) -> Option<(&'static str, u64)> {
    key.times
        .events()
        .filter(|&(_, at)| at > now)
        .min_by_key(|&(_, at)| at)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::dnssec::key::{CSK_FLAGS, ZSK_FLAGS};

    const TTLS: Ttls = Ttls {
        dnskey: 300,
        max: 3600,
    };

    const ECDSA: Algorithm = Algorithm::Ecdsap256sha256;

    fn schedule() -> Schedule {
        Schedule {
            zsk_lifetime: 10_000,
            ksk_lifetime: 50_000,
            propagation_delay: 60,
        }
    }

    fn key(flags: u16, at: u64) -> Key {
        let mut key = Key::generate(Algorithm::Ecdsap256sha256, flags, at).unwrap();
        key.times = Times::from(at);
        key
    }

    #[test]
    fn a_zsk_is_pre_published_then_replaces_the_old_one_which_leaves_after_the_largest_ttl() {
        let mut keys = vec![key(CSK_FLAGS, 0), key(ZSK_FLAGS, 0)];
        let start = 10_000;
        assert_eq!(next_event(&keys, &schedule(), 0), Some(start));
        assert!(
            plan(&mut keys, &schedule(), TTLS, start - 1)
                .unwrap()
                .is_empty()
        );

        let steps = plan(&mut keys, &schedule(), TTLS, start).unwrap();
        let active = start + 300 + 60;
        assert!(matches!(steps[..], [Step::Started { role: "zsk", active: a, .. }] if a == active));
        assert_eq!(keys.len(), 3);
        let (old, new) = (&keys[1], &keys[2]);
        assert_eq!(new.times.publish, start);
        assert_eq!(old.times.retire, Some(active));
        assert_eq!(old.times.remove, Some(active + 3600 + 60));
        assert_eq!(state(new, &keys, start + 1), "published");
        assert_eq!(zone_signing_tags(&keys, start + 1), vec![old.tag]);
        assert_eq!(zone_signing_tags(&keys, active), vec![new.tag]);
        assert_eq!(state(old, &keys, active), "retired");
        assert_eq!(next_event(&keys, &schedule(), start), Some(active));
        let old_tag = old.tag;
        // No second rollover while one is under way.
        let removed = active + 3600 + 60;
        assert!(
            plan(&mut keys, &schedule(), TTLS, removed - 1)
                .unwrap()
                .is_empty()
        );

        let steps = plan(&mut keys, &schedule(), TTLS, removed).unwrap();
        assert_eq!(steps, vec![Step::Removed { tag: old_tag }]);
        assert_eq!(keys.len(), 2);
        // The next one is due a lifetime after the new key began to sign.
        assert_eq!(
            next_event(&keys, &schedule(), removed),
            Some(active + 10_000)
        );
    }

    #[test]
    fn a_csk_waits_for_the_parent_ds_before_the_old_one_leaves() {
        let mut keys = vec![key(CSK_FLAGS, 0)];
        let start = 50_000;
        plan(&mut keys, &schedule(), TTLS, start).unwrap();
        let active = start + 300 + 60;
        let (old, new) = (keys[0].tag, keys[1].tag);
        assert_eq!(keys[0].times.remove, None);
        assert!(awaiting_ds(&keys, active - 1).is_none());
        assert_eq!(awaiting_ds(&keys, active).map(|key| key.tag), Some(new));
        assert_eq!(state(&keys[1], &keys, active), "submitted");
        assert_eq!(zone_signing_tags(&keys, active), vec![new]);
        // However long the parent takes, the old key stays published.
        let seen = 99_000;
        assert!(plan(&mut keys, &schedule(), TTLS, seen).unwrap().is_empty());
        assert!(!ds_seen(&mut keys, old, seen, 86_400, TTLS, &schedule()));
        assert!(ds_seen(&mut keys, new, seen, 86_400, TTLS, &schedule()));
        let removed = seen + 86_400 + 60;
        assert_eq!(keys[0].times.remove, Some(removed));
        assert_eq!(state(&keys[1], &keys, seen), "active");
        assert!(awaiting_ds(&keys, seen).is_none());
        let steps = plan(&mut keys, &schedule(), TTLS, removed).unwrap();
        assert_eq!(steps[0], Step::Removed { tag: old });
        // The new key's own lifetime, counted from when it began to sign, is over by then.
        assert!(matches!(steps[1..], [Step::Started { role: "csk", old: o, .. }] if o == new));
    }

    #[test]
    fn an_algorithm_rollover_signs_first_publishes_next_and_takes_the_old_signatures_last() {
        let mut keys = vec![key(CSK_FLAGS, 0)];
        let old = keys[0].tag;
        let schedule = Schedule {
            ksk_lifetime: 0,
            ..schedule()
        };
        let start = 1000;
        assert!(matches!(
            start_algorithm(&mut keys, ECDSA, &schedule, TTLS, start),
            Err(RolloverError::Same(_))
        ));
        let steps = start_algorithm(&mut keys, Algorithm::Ed25519, &schedule, TTLS, start).unwrap();
        let new = keys[1].tag;
        let publish = start + 3600 + 60;
        let ready = publish + 300 + 60;
        assert!(matches!(steps[..], [Step::AlgorithmStarted { publish: p, .. }] if p == publish));
        assert!(matches!(
            start_algorithm(&mut keys, ECDSA, &schedule, TTLS, start + 1),
            Err(RolloverError::Underway(_))
        ));
        // Both sign at once; the new key is not published yet.
        assert_eq!(zone_signing_tags(&keys, start), vec![old, new]);
        assert_eq!(state(&keys[1], &keys, start), "presigning");
        assert!(!keys[1].times.published(start) && keys[1].times.published(publish));
        assert!(keys[1].times.signs_keys(start));
        assert_eq!(entry_tags(&keys, ready - 1), vec![old]);
        assert!(awaiting_ds(&keys, ready - 1).is_none());
        assert_eq!(entry_tags(&keys, ready), vec![new]);
        assert_eq!(awaiting_ds(&keys, ready).map(|key| key.tag), Some(new));

        let seen = 6000;
        assert!(ds_seen(&mut keys, new, seen, 86_400, TTLS, &schedule));
        let remove = seen + 86_400 + 60;
        let retire = remove + 300 + 60;
        assert_eq!(keys[0].times.remove, Some(remove));
        assert_eq!(keys[0].times.retire, Some(retire));
        // The old DNSKEY goes first; its signatures stay until that DNSKEY is out of caches.
        assert_eq!(state(&keys[0], &keys, remove), "withdrawn");
        assert_eq!(zone_signing_tags(&keys, remove), vec![old, new]);
        assert!(
            plan(&mut keys, &schedule, TTLS, retire - 1)
                .unwrap()
                .is_empty()
        );
        let steps = plan(&mut keys, &schedule, TTLS, retire).unwrap();
        assert_eq!(steps, vec![Step::Removed { tag: old }]);
        assert_eq!(zone_signing_tags(&keys, retire), vec![new]);
        assert_eq!(keys[0].algorithm, Algorithm::Ed25519);
    }

    fn entry_tags(keys: &[Key], now: u64) -> Vec<u16> {
        entry_points(keys, now).iter().map(|key| key.tag).collect()
    }

    fn zone_signing_tags(keys: &[Key], now: u64) -> Vec<u16> {
        crate::dnssec::key::zone_signing(keys, now)
            .iter()
            .map(|key| key.tag)
            .collect()
    }
}
