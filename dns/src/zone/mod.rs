//! Zone data: one zone in a byte arena (`arena`), the zones served (`catalog`), zone files read
//! (`load`) and watched (`watch`), and a zone's last good copy on disk (`snapshot`).

mod arena;
pub mod catalog;
pub mod load;
mod rr;
pub mod snapshot;
pub mod watch;

pub use arena::{NodeId, RRset, Records, Sorted, Zone, rdata_name_offset, soa_serial_minimum};
pub use rr::{Rr, serial_newer, soa, soa_serial};
