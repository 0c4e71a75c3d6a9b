//! Zone data: one zone in a byte arena (`arena`), the zones served (`catalog`), zone files read
//! (`load`) and watched (`watch`), and a zone's last good copy on disk (`snapshot`).

mod arena;
pub mod catalog;
pub mod load;
mod rr;
pub mod snapshot;
pub mod watch;

pub use arena::{
    NSEC3_HASH_LEN, NodeId, RRset, Records, Sorted, Zone, rdata_name_offset, soa_serial_minimum,
};
pub use rr::{Rr, node_records, serial_newer, soa, soa_serial};

/// A zone for tests: `example.com` with its SOA, NS and `hosts` A records.
#[cfg(test)]
pub(crate) mod fixture {
    use super::{Records, Zone};
    use crate::wire::{name::wire, rtype};

    pub(crate) fn zone(hosts: usize) -> Zone {
        let origin = wire("example.com");
        let mut records = Records::default();
        let mut soa = wire("ns1.example.com");
        soa.extend_from_slice(&wire("hostmaster.example.com"));
        soa.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 60]);
        records.push(&origin, rtype::SOA, 60, &soa);
        records.push(&origin, rtype::NS, 60, &wire("ns1.example.com"));
        records.push(&wire("ns1.example.com"), rtype::A, 60, &[192, 0, 2, 1]);
        for i in 0..hosts {
            let owner = wire(&format!("host{i}.example.com"));
            records.push(&owner, rtype::A, 60, &(i as u32).to_be_bytes());
        }
        let sorted = records.sort();
        Zone::build(&origin, &records, &sorted)
    }
}
