//! Answering: a query's bytes in, the response's bytes out (`respond`), and the policies applied
//! per answer: server cookies, response rate limiting, the health filter, and the records added
//! at run time (`overlay`); the signatures and denial proofs of signed zones (`dnssec`).

pub mod cookie;
mod dnssec;
pub mod health;
pub mod online;
pub mod overlay;
pub mod rate_limit;
mod respond;

pub use respond::*;
