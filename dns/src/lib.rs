//! foobar's authoritative DNS: zone files in, answers out, by layer (each uses only those
//! above it):
//!
//! ```text
//!  wire      names, messages read and written
//!  zone      a zone's arena, zone files read and watched, the catalog, snapshots
//!  answer    query → response, and the per-answer policies (cookies, rate limit, health)
//!  transfer  TSIG, journals, AXFR/IXFR out and in, NOTIFY
//!  listener  UDP and TCP sockets
//!  service   `Dns`: all of it put together, reloaded whole
//! ```
//!
//! The crate knows nothing of HTTP or SQL. [`Dns::load`] reads zones before any port is bound;
//! [`bind`] binds; [`Dns::run`] serves until the shutdown token fires.

#![warn(missing_docs)]

mod answer;
mod config;
mod dnssec;
mod error;
mod listener;
mod metrics;
mod service;
mod transfer;
mod wire;
mod zone;

pub use crate::{
    answer::{
        Client, Outcome, Responder, Transport,
        cookie::Cookies,
        health::{Check, Filter, Health},
        overlay::Https,
        rate_limit::Config as RateLimitConfig,
    },
    config::Config,
    dnssec::{
        Algorithm as DnssecAlgorithm, DsError, Scheme as DnssecKeys, ds_records, kept_key_files,
        key_files, replace_key_files,
    },
    error::{AddedError, Error, ZoneError, ZoneReloadError, ZoneReloaded},
    listener::{Sockets, TlsSockets, bind},
    metrics::log_queries,
    service::{Dns, Live},
    transfer::{
        Transferred,
        access::Access,
        secondary::Incoming,
        tsig::{TsigRecord, error as tsig_error},
    },
    wire::name::from_text as parse_origin,
    zone::{
        Zone,
        catalog::{Catalog, Reloaded, ZoneState, ZoneStatus, Zones},
        load::{load_zone, load_zone_text},
    },
};

/// What the fuzz targets and tests reach below the surface: the transfer answer, a zone's SOA
/// as the journal records it, snapshots, lookup keys.
pub mod internals {
    pub use crate::{
        listener::turn_around as xdp_turn_around,
        transfer::xfr::answer as transfer_answer,
        wire::name::key_of,
        zone::{
            snapshot::{decode as decode_snapshot, encode as encode_snapshot},
            soa,
        },
    };
}
