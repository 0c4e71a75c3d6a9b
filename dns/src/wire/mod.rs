//! The wire format: the protocol's numbers (`types`), names, reading messages from other
//! servers, writing responses.

pub mod bytes;
pub mod name;
pub mod read;
pub mod types;
pub mod write;

pub use types::{Class, Flags, Opcode, Rcode, Rtype, rtype};
