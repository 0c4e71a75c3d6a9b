//! The wire format: names, reading messages from other servers, writing responses.

pub mod name;
pub mod read;
pub mod write;
