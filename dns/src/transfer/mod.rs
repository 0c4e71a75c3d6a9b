//! Zone transfers and what they need: TSIG, who may transfer (`access`), the differences between
//! versions (`journal`), AXFR/IXFR out (`xfr`), NOTIFY and SOA queries (`notify`), zones followed
//! from primaries (`secondary`), over TLS where asked (`tls`), and every new served version
//! journaled and announced (`changes`).

pub mod access;
pub(crate) mod changes;
mod error;
pub mod journal;
pub mod notify;
pub mod secondary;
pub mod tls;
pub mod tsig;
pub mod xfr;

pub use error::{TransferError, Transferred};
