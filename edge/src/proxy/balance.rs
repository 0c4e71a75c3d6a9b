//! Choosing an upstream: round robin, least connections, and sticky choices by a key (the
//! client's address, a header, a cookie) with rendezvous hashing, so that an upstream that goes
//! away moves only its own keys, and comes back to them. Pure: the caller says what each
//! upstream looks like now.

use std::hash::Hasher;

/// An upstream as the choice sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// A hash of the upstream's identity (its address as configured): the same on every node
    /// and across restarts, so that every node sends a key to the same upstream.
    pub id: u64,
    /// Up (health checks) and not already tried for this request.
    pub usable: bool,
    /// Requests in flight to it.
    pub in_flight: usize,
}

/// How to choose.
#[derive(Debug, Clone, Copy)]
pub enum Choice<'a> {
    /// The next usable one after `turn`.
    RoundRobin { turn: usize },
    /// The usable one with the fewest requests in flight; ties go round robin from `turn`.
    LeastConn { turn: usize },
    /// The usable one with the highest hash of (key, upstream).
    Sticky { key: &'a [u8] },
}

/// The index of the chosen candidate, or `None` when none is usable.
pub fn choose(candidates: &[Candidate], choice: Choice<'_>) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let in_turn = |turn: usize| (0..n).map(move |i| (turn + i) % n);
    match choice {
        Choice::RoundRobin { turn } => in_turn(turn).find(|&i| candidates[i].usable),
        Choice::LeastConn { turn } => in_turn(turn)
            .filter(|&i| candidates[i].usable)
            .min_by_key(|&i| candidates[i].in_flight),
        Choice::Sticky { key } => (0..n)
            .filter(|&i| candidates[i].usable)
            .max_by_key(|&i| weight(key, candidates[i].id)),
    }
}

/// The identity hash of an upstream from its configured address.
pub fn identity(upstream: &str) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(0x666f_6f62_6172, 0x75_7073);
    hasher.write(upstream.as_bytes());
    hasher.finish()
}

/// The rendezvous weight of `key` on the upstream `id`: fixed keys, so that it is the same on
/// every node.
fn weight(key: &[u8], id: u64) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new_with_keys(id, 0x7374_6963_6b79);
    hasher.write(key);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidates(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                id: identity(&format!("http://10.0.0.{i}:80")),
                usable: true,
                in_flight: 0,
            })
            .collect()
    }

    #[test]
    fn round_robin_skips_what_is_not_usable() {
        let mut list = candidates(3);
        list[1].usable = false;
        let chosen: Vec<Option<usize>> = (0..4)
            .map(|turn| choose(&list, Choice::RoundRobin { turn }))
            .collect();
        assert_eq!(chosen, [Some(0), Some(2), Some(2), Some(0)]);
        for candidate in &mut list {
            candidate.usable = false;
        }
        assert_eq!(choose(&list, Choice::RoundRobin { turn: 0 }), None);
        assert_eq!(choose(&[], Choice::RoundRobin { turn: 0 }), None);
    }

    #[test]
    fn least_connections_wins_and_ties_take_turns() {
        let mut list = candidates(3);
        list[0].in_flight = 5;
        list[1].in_flight = 1;
        list[2].in_flight = 1;
        assert_eq!(choose(&list, Choice::LeastConn { turn: 0 }), Some(1));
        assert_eq!(choose(&list, Choice::LeastConn { turn: 2 }), Some(2));
        list[1].usable = false;
        assert_eq!(choose(&list, Choice::LeastConn { turn: 0 }), Some(2));
    }

    #[test]
    fn a_removed_upstream_moves_only_its_own_keys() {
        let all = candidates(5);
        let keys: Vec<String> = (0..2000).map(|i| format!("client-{i}")).collect();
        let before: Vec<usize> = keys
            .iter()
            .map(|key| {
                choose(
                    &all,
                    Choice::Sticky {
                        key: key.as_bytes(),
                    },
                )
                .unwrap_or(99)
            })
            .collect();
        // Every upstream gets a fair share.
        for upstream in 0..5 {
            let share = before.iter().filter(|&&c| c == upstream).count();
            assert!((300..500).contains(&share), "upstream {upstream}: {share}");
        }
        let mut without = all.clone();
        without[3].usable = false;
        for (key, &was) in keys.iter().zip(&before) {
            let now = choose(
                &without,
                Choice::Sticky {
                    key: key.as_bytes(),
                },
            )
            .unwrap_or(99);
            if was != 3 {
                assert_eq!(now, was, "{key} moved though its upstream stayed");
            } else {
                assert_ne!(now, 3);
            }
        }
        // Back again: every key returns to where it was.
        for (key, &was) in keys.iter().zip(&before) {
            assert_eq!(
                choose(
                    &all,
                    Choice::Sticky {
                        key: key.as_bytes()
                    }
                ),
                Some(was)
            );
        }
    }
}
