//! The authoritative answer logic: query bytes in, response bytes out (sans-IO).
//!
//! ```text
//! query ──▶ parse header, question, EDNS ──▶ Catalog: longest zone ──▶ lookup (RFC 1034 4.3.2)
//!                                                                     ├─ referral below a cut
//!                                                                     ├─ answer (CNAME chain)
//!                                                                     ├─ wildcard (RFC 4592)
//!                                                                     └─ NODATA / NXDOMAIN + SOA
//!                                              ──▶ Writer (compression, size limit, TC) ──▶ bytes
//! ```
//!
//! This is the product's own job: stock in-memory handlers get referrals, wildcards, empty
//! non-terminals and EDNS wrong, and the hot path must not allocate.

use std::{net::IpAddr, sync::Arc};

use super::{dnssec, online::OnlineSigner};
use crate::{
    answer::cookie::{Cookies, Presented},
    answer::health::{self, Filter, Health},
    answer::overlay::{self, Overlay},
    answer::rate_limit::{self, RateLimit, Verdict},
    metrics::{ZoneCounters, metrics},
    transfer::access::Access,
    transfer::tsig::{self, Signed, TsigRecord},
    wire::Rcode,
    wire::Rtype,
    wire::bytes,
    wire::name::{self, MAX_KEY, MAX_NAME},
    wire::read,
    wire::rtype,
    wire::write::{Full, Mark, OPT_LEN, Owner, Section, Writer},
    wire::{Class, Flags, Opcode},
    zone::catalog::Catalog,
    zone::{NodeId, RRset, Zone, rdata_name_offset},
};

/// Largest UDP payload we send with EDNS (the DNS flag day 2020 value, no fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;
/// Largest UDP payload without EDNS (RFC 1035).
const PLAIN_UDP_PAYLOAD: usize = 512;
/// Most CNAMEs followed inside a zone before the chain is cut short.
const MAX_CHAIN: usize = 8;

/// The transport a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over UDP: the answer may be cut (TC) and rate limited.
    Udp,
    /// Over TCP: up to 64 KiB, and transfers.
    Tcp,
    /// Over TLS (RFC 7858, TLS 1.3): as over TCP; transfers over it are XoT (RFC 9103).
    Dot,
    /// Over HTTPS (RFC 8484): up to 64 KiB, no transfers.
    Doh,
    /// Over QUIC (RFC 9250): up to 64 KiB; transfers over it are XoQ (encrypted, as XoT).
    Doq,
}

/// What to do with a query.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the bytes written to the output buffer.
    Reply,
    /// Send nothing (not a query, or too broken to answer).
    Drop,
    /// Zone transfer allowed: send the messages of [`transfer`] (or of an IXFR) for it.
    Transfer(Box<TransferRequest>),
}

/// A zone transfer to send.
#[derive(Debug)]
pub struct TransferRequest {
    /// The zone's origin key.
    pub origin_key: Vec<u8>,
    /// For an IXFR, the serial the client has.
    pub ixfr_from: Option<u32>,
    /// The request's TSIG, when signed: every message of the answer is signed too.
    pub signed: Option<Signed>,
}

impl PartialEq for TransferRequest {
    fn eq(&self, other: &Self) -> bool {
        self.origin_key == other.origin_key && self.ixfr_from == other.ixfr_from
    }
}

impl Eq for TransferRequest {}

/// Answers queries from a catalog; shared by every listener.
#[derive(Debug, Clone)]
pub struct Responder {
    access: Arc<Access>,
    /// Addresses left out of the answers for names whose edges are health-checked.
    health: Arc<Health>,
    /// Records added at run time (ACME challenges), answered ahead of the zone.
    overlay: Arc<Overlay>,
    /// Signs what a signed zone answers that its signed version does not hold.
    online: Arc<OnlineSigner>,
    /// Where a NOTIFY from a secondary zone's primary is passed on (the zone's origin key).
    notified: Option<tokio::sync::mpsc::UnboundedSender<Vec<u8>>>,
    cookies: Cookies,
    /// Sent to clients that ask for it (RFC 5001); none unless configured.
    nsid: Option<Vec<u8>>,
    /// Answers `id.server` and `hostname.bind` CH TXT; none unless configured.
    identity: Option<Vec<u8>>,
    /// Answers `version.bind` and `version.server` CH TXT; none unless configured.
    version: Option<Vec<u8>>,
    /// Response rate limiting over UDP; none unless configured.
    rate_limit: Option<Arc<RateLimit>>,
}

/// The parts of a query the answer depends on.
#[derive(Debug, Clone, Copy)]
pub struct Query<'q> {
    pub id: u16,
    flags: Flags,
    /// Whether the query has a question (an unknown opcode, or a cookie-only query, may not).
    has_question: bool,
    /// The question name exactly as received.
    pub qname: &'q [u8],
    pub qtype: Rtype,
    pub qclass: Class,
    edns: Option<Edns<'q>>,
    /// The last record is a TSIG record (checked in full by `tsig`).
    tsig: bool,
    /// For an IXFR: the serial of the SOA the client sent in the authority section.
    ixfr_serial: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
struct Edns<'q> {
    payload: u16,
    version: u8,
    dnssec_ok: bool,
    /// The client asked for our NSID.
    nsid: bool,
    /// The first COOKIE option: a client cookie, maybe followed by a server cookie.
    cookie: Option<&'q [u8]>,
}

enum Malformed {
    Drop,
    FormErr { id: u16, flags: Flags },
}

/// EDNS option codes this server acts on.
mod option {
    pub const NSID: u16 = 3;
    pub const COOKIE: u16 = 10;
}

impl Query<'_> {
    /// The client asked for DNSSEC records (EDNS DO).
    fn dnssec_ok(&self) -> bool {
        self.edns.is_some_and(|edns| edns.dnssec_ok)
    }

    fn opcode(&self) -> Opcode {
        self.flags.opcode()
    }

    /// Flags every response to this query starts with.
    fn response_flags(&self) -> Flags {
        response_flags(self.flags)
    }
}

/// What rate limiting makes of an answer.
enum Limited {
    /// Sent (whole, or slipped with TC).
    Send,
    Drop,
    /// Slipped with BADCOOKIE, whose upper bits are the extended RCODE.
    BadCookie,
}

/// The options our OPT record carries.
struct EdnsOptions<'r> {
    /// The client cookie and our fresh server cookie, `cookie_len` bytes of it (0: none).
    cookie: [u8; 24],
    cookie_len: usize,
    /// How the client's server cookie checked out, if it sent one.
    presented: Option<Presented>,
    nsid: Option<&'r [u8]>,
}

impl EdnsOptions<'_> {
    /// The bytes of the OPT record with these options.
    fn len(&self) -> usize {
        OPT_LEN
            + if self.cookie_len > 0 {
                4 + self.cookie_len
            } else {
                0
            }
            + self.nsid.map_or(0, |n| 4 + n.len())
    }
}

/// The largest response: 64 KiB over TCP; over UDP, 512 bytes without EDNS, else the client's
/// size within 512..1232.
fn payload_limit(transport: Transport, edns: Option<Edns<'_>>) -> usize {
    match (transport, edns) {
        (Transport::Tcp | Transport::Dot | Transport::Doh | Transport::Doq, _) => {
            usize::from(u16::MAX)
        }
        (Transport::Udp, None) => PLAIN_UDP_PAYLOAD,
        (Transport::Udp, Some(edns)) => usize::from(
            edns.payload
                .clamp(PLAIN_UDP_PAYLOAD as u16, MAX_UDP_PAYLOAD),
        ),
    }
}

/// A response's flags from its query's: QR set, the opcode echoed, and RD and CD copied for a
/// QUERY only, as they are defined for that opcode alone (ISC's genreport checks it as
/// `opcodeflg`).
fn response_flags(query: Flags) -> Flags {
    let copied = if query.opcode() == Opcode::QUERY {
        Flags::RD | Flags::CD
    } else {
        Flags::default()
    };
    Flags::QR | Flags::of_opcode(query.opcode()) | (query & copied)
}

/// Reads the header, question and EDNS of a query.
fn parse(packet: &[u8]) -> Result<Query<'_>, Malformed> {
    if packet.len() < 12 {
        return Err(Malformed::Drop);
    }
    // Within the 12 bytes checked above.
    let word = |at: usize| bytes::u16_at(packet, at).unwrap_or(0);
    let (id, flags) = (word(0), Flags(word(2)));
    if flags.contains(Flags::QR) {
        return Err(Malformed::Drop);
    }
    let formerr = Malformed::FormErr { id, flags };
    let (qdcount, ancount, nscount, arcount) = (word(4), word(6), word(8), word(10));
    let mut at = 12;
    let (qname, qtype, qclass) = match qdcount {
        0 => (&packet[12..12], Rtype(0), Class(0)),
        1 => {
            let Some(name_len) = name::wire_len(&packet[12..]) else {
                return Err(formerr);
            };
            at += name_len;
            let (Some(qtype), Some(qclass)) =
                (bytes::u16_at(packet, at), bytes::u16_at(packet, at + 2))
            else {
                return Err(formerr);
            };
            at += 4;
            (&packet[12..12 + name_len], Rtype(qtype), Class(qclass))
        }
        _ => return Err(formerr),
    };
    let mut edns = None;
    let mut tsig = false;
    let mut ixfr_serial = None;
    let total = u32::from(ancount) + u32::from(nscount) + u32::from(arcount);
    for i in 0..total {
        let Some(record) = skip_record(packet, at) else {
            return Err(formerr);
        };
        let additional = i >= u32::from(ancount) + u32::from(nscount);
        if additional && record.rtype == rtype::TSIG {
            // RFC 8945 section 5.1: the TSIG record comes last.
            if i + 1 != total {
                return Err(formerr);
            }
            tsig = true;
        }
        let authority = !additional && i >= u32::from(ancount);
        if authority && qtype == rtype::IXFR && record.rtype == rtype::SOA && ixfr_serial.is_none()
        {
            ixfr_serial = read::read_record(packet, at)
                .and_then(|soa| crate::zone::soa_serial_minimum(&soa.rdata))
                .map(|(serial, _)| serial);
        }
        if additional && record.rtype == rtype::OPT {
            // RFC 6891 section 6.1.1: one OPT, owned by the root.
            if edns.is_some() || packet[at] != 0 {
                return Err(formerr);
            }
            let ttl = record.ttl.to_be_bytes();
            let mut parsed = Edns {
                payload: record.class,
                version: ttl[1],
                dnssec_ok: ttl[2] & 0x80 != 0,
                nsid: false,
                cookie: None,
            };
            let mut options = &packet[record.end - record.rdlen..record.end];
            while !options.is_empty() {
                let (Some(code), Some(len)) =
                    (bytes::u16_at(options, 0), bytes::u16_at(options, 2))
                else {
                    return Err(formerr);
                };
                let len = usize::from(len);
                let Some(data) = options.get(4..4 + len) else {
                    return Err(formerr);
                };
                match code {
                    option::NSID => parsed.nsid = true,
                    // RFC 7873 section 5.2: only the first COOKIE counts; a malformed one is
                    // FORMERR (a client cookie of 8 bytes, a server cookie of 8 to 32).
                    option::COOKIE if parsed.cookie.is_none() => {
                        if !(len == 8 || (16..=40).contains(&len)) {
                            return Err(formerr);
                        }
                        parsed.cookie = Some(data);
                    }
                    _ => {}
                }
                options = &options[4 + len..];
            }
            edns = Some(parsed);
        }
        at = record.end;
    }
    Ok(Query {
        id,
        flags,
        has_question: qdcount == 1,
        qname,
        qtype,
        qclass,
        edns,
        tsig,
        ixfr_serial,
    })
}

struct Skipped {
    rtype: Rtype,
    class: u16,
    ttl: u32,
    rdlen: usize,
    end: usize,
}

/// Steps over one resource record of a received message.
fn skip_record(packet: &[u8], mut at: usize) -> Option<Skipped> {
    loop {
        let len = *packet.get(at)?;
        match len {
            0 => {
                at += 1;
                break;
            }
            0xC0..=0xFF => {
                at += 2;
                break;
            }
            1..=63 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
    let rdlen = usize::from(bytes::u16_at(packet, at + 8)?);
    let end = at + 10 + rdlen;
    (end <= packet.len()).then_some(Skipped {
        rtype: Rtype(bytes::u16_at(packet, at)?),
        class: bytes::u16_at(packet, at + 2)?,
        ttl: bytes::u32_at(packet, at + 4)?,
        rdlen,
        end,
    })
}

/// Where a query came from and when, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// What the query came over.
    pub transport: Transport,
    /// Where it came from.
    pub address: IpAddr,
    /// Seconds since the Unix epoch (modulo 2^32).
    pub now: u32,
}

impl Responder {
    /// A responder that allows zone transfers and NOTIFY as `access` says, and makes server
    /// cookies with `cookies`.
    pub fn new(access: Access, cookies: Cookies) -> Self {
        Responder {
            access: Arc::new(access),
            health: Arc::default(),
            overlay: Arc::default(),
            online: Arc::default(),
            notified: None,
            cookies,
            nsid: None,
            identity: None,
            version: None,
            rate_limit: None,
        }
    }

    /// Passes the origin keys of secondary zones whose primary sent a NOTIFY to `sink`.
    pub fn with_notify_sink(mut self, sink: tokio::sync::mpsc::UnboundedSender<Vec<u8>>) -> Self {
        self.notified = Some(sink);
        self
    }

    /// Who may transfer and notify, and the TSIG keys.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Filters the answers of health-checked names as `health` says.
    pub fn with_health(mut self, health: Arc<Health>) -> Self {
        self.health = health;
        self
    }

    /// Limits UDP responses per source prefix as `config` says (nothing when it is off).
    /// Answers the records `overlay` holds ahead of the zones.
    pub fn with_overlay(mut self, overlay: Arc<Overlay>) -> Self {
        self.overlay = overlay;
        self
    }

    /// Signs answers made while answering (health-filtered sets, added records) with the keys
    /// of the zones `signing` signs.
    pub fn with_signing(mut self, signing: Arc<crate::dnssec::Signing>) -> Self {
        self.online = Arc::new(OnlineSigner::new(signing));
        self
    }

    /// Limits responses per source prefix over UDP (RRL).
    pub fn with_rate_limit(mut self, config: &rate_limit::Config) -> Self {
        self.rate_limit = RateLimit::new(config).map(Arc::new);
        self
    }

    /// Sends `nsid` to clients that ask for it (RFC 5001).
    pub fn with_nsid(mut self, nsid: Option<&str>) -> Self {
        self.nsid = nsid.map(|n| n.as_bytes().to_vec());
        self
    }

    /// Answers the CH TXT names for the server's identity and version.
    pub fn with_chaos(mut self, identity: Option<&str>, version: Option<&str>) -> Self {
        self.identity = identity.map(|i| i.as_bytes().to_vec());
        self.version = version.map(|v| v.as_bytes().to_vec());
        self
    }

    /// Answers one query into `out`: parse, verify TSIG, the EDNS options, dispatch by opcode
    /// and class, rate limit, finish (OPT, TSIG, metrics).
    pub fn respond(
        &self,
        catalog: &Catalog,
        packet: &[u8],
        client: Client,
        out: &mut Vec<u8>,
    ) -> Outcome {
        let query = match parse(packet) {
            Ok(query) => query,
            Err(Malformed::Drop) => return Outcome::Drop,
            Err(Malformed::FormErr { id, flags }) => {
                let flags = response_flags(flags).with_rcode(Rcode::FORMERR);
                Writer::new(out, id, flags, PLAIN_UDP_PAYLOAD);
                metrics().answered(client.transport, None, out, 0, None);
                return Outcome::Reply;
            }
        };
        let limit = payload_limit(client.transport, query.edns);
        let now = u64::from(client.now);
        let signed = match self.verify_tsig(&query, packet, client, now, limit, out) {
            Ok(signed) => signed,
            Err(answered) => return answered,
        };
        let tsig_len = signed.as_ref().map_or(0, |s| tsig::record_len(&s.key));
        let mut w = Writer::new(out, query.id, query.response_flags(), limit);
        if query.has_question {
            w.question(query.qname, query.qtype, query.qclass);
        }
        w.reserve(tsig_len);
        let after_question = w.mark();
        let options = self.edns_options(&query, client);
        if query.edns.is_some() {
            w.reserve(options.len());
        }
        let mut extended = 0u8;
        let mut counters = None;
        let outcome = if query.edns.is_some_and(|e| e.version > 0) {
            extended = Rcode::BADVERS.extended_bits();
            Outcome::Reply
        } else {
            self.dispatch(
                catalog,
                &query,
                client,
                signed.as_ref(),
                options.cookie_len > 0,
                &mut w,
                &mut counters,
            )
        };
        if outcome == Outcome::Reply {
            match self.rate_limit(client, &options, after_question, &mut w) {
                Limited::Send => {}
                Limited::Drop => return Outcome::Drop,
                Limited::BadCookie => extended = Rcode::BADCOOKIE.extended_bits(),
            }
        }
        self.finish(
            &query,
            client,
            signed.as_ref(),
            &options,
            extended,
            counters,
            &outcome,
            tsig_len,
            &mut w,
        );
        outcome
    }

    /// RFC 8945: a signed query is checked before anything else. `Ok`: the key and MAC to sign
    /// the answer with (or none, unsigned); `Err`: a FORMERR or NOTAUTH already written.
    fn verify_tsig(
        &self,
        query: &Query<'_>,
        packet: &[u8],
        client: Client,
        now: u64,
        limit: usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<Signed>, Outcome> {
        if !query.tsig {
            return Ok(None);
        }
        let verified = match TsigRecord::find(packet) {
            Ok(Some(record)) => self.access.keyring.verify(packet, &record, now),
            Ok(None) | Err(tsig::Malformed) => {
                let flags = query.response_flags().with_rcode(Rcode::FORMERR);
                Writer::new(out, query.id, flags, limit);
                metrics().answered(client.transport, None, out, 0, None);
                return Err(Outcome::Reply);
            }
        };
        match verified {
            Ok(signed) => Ok(Some(signed)),
            Err(failure) => {
                let flags = query.response_flags().with_rcode(Rcode::NOTAUTH);
                let mut w = Writer::new(out, query.id, flags, usize::from(u16::MAX));
                if query.has_question {
                    w.question(query.qname, query.qtype, query.qclass);
                }
                failure.append(out, now);
                let qtype = query.has_question.then_some(query.qtype);
                metrics().answered(client.transport, qtype, out, 0, None);
                Err(Outcome::Reply)
            }
        }
    }

    /// The options of our OPT record: a fresh server cookie for a client cookie (RFC 7873
    /// section 5.2), and the NSID when asked for and configured.
    fn edns_options<'r>(&'r self, query: &Query<'_>, client: Client) -> EdnsOptions<'r> {
        let nsid = self
            .nsid
            .as_deref()
            .filter(|_| query.edns.is_some_and(|edns| edns.nsid));
        let mut options = EdnsOptions {
            cookie: [0; 24],
            cookie_len: 0,
            presented: None,
            nsid,
        };
        if let Some(option) = query.edns.and_then(|edns| edns.cookie) {
            let mut client_cookie = [0u8; 8];
            client_cookie.copy_from_slice(&option[..8]);
            options.presented =
                Some(
                    self.cookies
                        .verify(&client_cookie, &option[8..], client.address, client.now),
                );
            options.cookie[..8].copy_from_slice(&client_cookie);
            options.cookie[8..].copy_from_slice(&self.cookies.server_cookie(
                &client_cookie,
                client.address,
                client.now,
            ));
            options.cookie_len = 24;
        }
        options
    }

    /// The answer by opcode and class: NOTIFY, an unknown opcode (NOTIMP), a cookie-only query,
    /// CHAOS, or a query into the zones.
    #[allow(clippy::too_many_arguments)]
    fn dispatch<'c>(
        &self,
        catalog: &'c Catalog,
        query: &Query<'_>,
        client: Client,
        signed: Option<&Signed>,
        has_cookie: bool,
        w: &mut Writer<'_>,
        counters: &mut Option<&'c ZoneCounters>,
    ) -> Outcome {
        if query.opcode() == Opcode::NOTIFY {
            self.notify(query, client.address, signed, w);
            Outcome::Reply
        } else if query.opcode() != Opcode::QUERY {
            w.set_rcode(Rcode::NOTIMP);
            Outcome::Reply
        } else if !query.has_question {
            // RFC 7873 section 5.4: a query with only a COOKIE learns a server cookie.
            if !has_cookie {
                w.set_rcode(Rcode::FORMERR);
            }
            Outcome::Reply
        } else if query.qclass == Class::CH {
            self.chaos(query, w);
            Outcome::Reply
        } else {
            self.query(catalog, query, client, signed, w, counters)
        }
    }

    /// Response rate limiting, over UDP only: TCP and clients with a valid cookie are exempt, as
    /// neither can be spoofed. A slip cuts the answer to its question with TC, or BADCOOKIE
    /// for a cookie client.
    fn rate_limit(
        &self,
        client: Client,
        options: &EdnsOptions<'_>,
        after_question: Mark,
        w: &mut Writer<'_>,
    ) -> Limited {
        let Some(limit) = self.rate_limit.as_ref() else {
            return Limited::Send;
        };
        if client.transport != Transport::Udp || options.presented == Some(Presented::Valid) {
            return Limited::Send;
        }
        match limit.check(client.address, client.now) {
            Verdict::Send => Limited::Send,
            Verdict::Drop => Limited::Drop,
            Verdict::Slip => {
                w.rollback(after_question);
                let flags = (w.flags() & !Flags::AA).with_rcode(Rcode::NOERROR);
                if options.cookie_len > 0 {
                    // RFC 7873 section 5.2.3: tell a cookie client to come back with the
                    // fresh server cookie, which exempts it.
                    w.set_flags(flags.with_rcode(Rcode::BADCOOKIE));
                    Limited::BadCookie
                } else {
                    w.set_flags(flags | Flags::TC);
                    Limited::Send
                }
            }
        }
    }

    /// The OPT record, the TSIG signature, the metrics and the sampled query log.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        query: &Query<'_>,
        client: Client,
        signed: Option<&Signed>,
        options: &EdnsOptions<'_>,
        extended: u8,
        counters: Option<&ZoneCounters>,
        outcome: &Outcome,
        tsig_len: usize,
        w: &mut Writer<'_>,
    ) {
        if let Some(edns) = query.edns {
            w.unreserve(options.len());
            let mut list: [(u16, &[u8]); 2] = [(0, &[]); 2];
            let mut count = 0;
            if options.cookie_len > 0 {
                list[count] = (option::COOKIE, &options.cookie[..options.cookie_len]);
                count += 1;
            }
            if let Some(nsid) = options.nsid {
                list[count] = (option::NSID, nsid);
                count += 1;
            }
            w.opt(MAX_UDP_PAYLOAD, extended, edns.dnssec_ok, &list[..count]);
        }
        w.unreserve(tsig_len);
        let now = u64::from(client.now);
        let out = w.buffer();
        if let Some(signed) = signed
            && !matches!(outcome, Outcome::Transfer(_))
        {
            tsig::sign(out, &signed.key, Some(&signed.mac), now);
        }
        if *outcome == Outcome::Reply {
            let qtype = query.has_question.then_some(query.qtype);
            metrics().answered(client.transport, qtype, out, extended, counters);
        }
        if crate::metrics::sampled() {
            let rcode = Rcode::from_parts(out.get(3).map_or(0, |&b| u16::from(b)), extended).0;
            tracing::info!(
                target: "dns_query",
                client = %client.address,
                transport = ?client.transport,
                name = %name::to_text(query.qname),
                qtype = %crate::wire::types::type_name(query.qtype),
                rcode,
                bytes = out.len(),
                outcome = ?outcome,
            );
        }
    }

    /// A NOTIFY (RFC 1996): from a primary of one of our secondary zones, it is acknowledged
    /// and starts a refresh of the zone; anything else is refused.
    fn notify(&self, query: &Query<'_>, from: IpAddr, signed: Option<&Signed>, w: &mut Writer<'_>) {
        if !query.has_question {
            w.set_rcode(Rcode::FORMERR);
            return;
        }
        let mut qkey = KeyBuf::new();
        qkey.set(query.qname);
        let key = signed.map(|s| &*s.key);
        if !self.access.notify_from_primary(qkey.get(), from, key) {
            w.set_rcode(Rcode::REFUSED);
            return;
        }
        w.set_flags(w.flags() | Flags::AA);
        if let Some(sink) = &self.notified {
            let _ = sink.send(qkey.get().to_vec());
        }
    }

    /// CH TXT queries for the server's identity and version (answered only when configured,
    /// as Knot and NSD do); anything else in class CH is refused.
    fn chaos(&self, query: &Query<'_>, w: &mut Writer<'_>) {
        let mut key = KeyBuf::new();
        key.set(query.qname);
        let text = if [&b"server\0\0id\0\0"[..], b"bind\0\0hostname\0\0"].contains(&key.get()) {
            self.identity.as_deref()
        } else if [&b"bind\0\0version\0\0"[..], b"server\0\0version\0\0"].contains(&key.get()) {
            self.version.as_deref()
        } else {
            None
        };
        let Some(text) = text else {
            w.set_rcode(Rcode::REFUSED);
            return;
        };
        w.set_flags(w.flags() | Flags::AA);
        if !matches!(query.qtype, rtype::TXT | rtype::ANY) {
            return;
        }
        // One character-string holds at most 255 bytes; longer text is cut there.
        let text = &text[..text.len().min(255)];
        let mut rdata = [0u8; 256];
        rdata[0] = text.len() as u8;
        rdata[1..=text.len()].copy_from_slice(text);
        let written = w.record_in_class(
            Section::Answer,
            Owner::At(12),
            rtype::TXT,
            Class::CH,
            0,
            &rdata[..=text.len()],
        );
        if written.is_err() {
            w.set_flags(w.flags() | Flags::TC);
        }
    }

    fn query<'c>(
        &self,
        catalog: &'c Catalog,
        query: &Query<'_>,
        client: Client,
        signed: Option<&Signed>,
        w: &mut Writer<'_>,
        counters: &mut Option<&'c ZoneCounters>,
    ) -> Outcome {
        let mut qkey = KeyBuf::new();
        qkey.set(query.qname);
        let zone = if query.qtype == rtype::DS {
            catalog.find_for_ds(qkey.get())
        } else {
            catalog.find_counted(qkey.get())
        };
        let zone = match (query.qclass, zone) {
            (Class::IN | Class::ANY, Some((zone, zone_counters))) => {
                *counters = Some(zone_counters);
                zone
            }
            _ => {
                w.set_rcode(Rcode::REFUSED);
                return Outcome::Reply;
            }
        };
        if !zone.is_available() {
            // The zone's file is broken and no good copy of it was kept.
            w.set_rcode(Rcode::SERVFAIL);
            return Outcome::Reply;
        }
        match query.qtype {
            rtype::OPT => {
                w.set_rcode(Rcode::FORMERR);
                return Outcome::Reply;
            }
            rtype::MAILA | rtype::MAILB => {
                w.set_rcode(Rcode::NOTIMP);
                return Outcome::Reply;
            }
            rtype::AXFR | rtype::IXFR => {
                let at_apex = qkey.get() == zone.origin_key();
                let key = signed.map(|s| &*s.key);
                let allowed = self.access.may_transfer(
                    zone.origin_key(),
                    client.address,
                    key,
                    matches!(client.transport, Transport::Dot | Transport::Doq),
                );
                let ixfr = query.qtype == rtype::IXFR;
                if !at_apex || !allowed {
                    w.set_rcode(Rcode::REFUSED);
                } else if ixfr && query.ixfr_serial.is_none() {
                    // RFC 1995 section 3: the client's SOA is in the authority section.
                    w.set_rcode(Rcode::FORMERR);
                } else if client.transport == Transport::Udp {
                    if ixfr {
                        // RFC 1995 section 2: over UDP, the current SOA alone says "up to
                        // date" or "ask over TCP".
                        w.set_flags(w.flags() | Flags::AA);
                        if let Some(soa) = zone.apex().and_then(|apex| zone.rrset(apex, rtype::SOA))
                            && w.rrset(Section::Answer, Owner::At(12), &soa).is_err()
                        {
                            w.set_flags(w.flags() | Flags::TC);
                        }
                    } else {
                        // Transfers need TCP (RFC 5936 section 4.2); retry there.
                        w.set_flags(w.flags() | Flags::TC);
                    }
                } else {
                    return Outcome::Transfer(Box::new(TransferRequest {
                        origin_key: zone.origin_key().to_vec(),
                        ixfr_from: query.ixfr_serial.filter(|_| ixfr),
                        signed: signed.cloned(),
                    }));
                }
                return Outcome::Reply;
            }
            _ => {}
        }
        let after_question = w.mark();
        let filters = self.health.filters();
        let overlay = self.overlay.added();
        let dnssec = dnssec::wanted(zone, query.dnssec_ok()).then_some(&*self.online);
        let asked = Asked {
            qname: query.qname,
            qkey: &qkey,
            qtype: query.qtype,
        };
        let found = overlay
            .get(qkey.get())
            .filter(|_| zone.cut_above(qkey.get()).is_none())
            .and_then(|extra| added(zone, &asked, extra, &filters, dnssec, w))
            .unwrap_or_else(|| lookup(zone, &asked, &filters, dnssec, w));
        match found {
            Ok((code, authoritative)) => {
                w.set_rcode(code);
                if authoritative {
                    w.set_flags(w.flags() | Flags::AA);
                }
            }
            Err(Full) => {
                w.rollback(after_question);
                w.set_flags(w.flags() | Flags::TC | Flags::AA);
            }
        }
        Outcome::Reply
    }
}

/// A name's key in a stack buffer, so lookups do not allocate.
struct KeyBuf {
    bytes: [u8; MAX_KEY],
    len: usize,
}

impl KeyBuf {
    fn new() -> Self {
        KeyBuf {
            bytes: [0; MAX_KEY],
            len: 0,
        }
    }

    fn set(&mut self, wire: &[u8]) {
        self.len = name::write_key(wire, &mut self.bytes);
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A domain name in wire form in a stack buffer.
struct NameBuf {
    bytes: [u8; MAX_NAME],
    len: usize,
}

impl NameBuf {
    /// The concatenation of `parts`, which the caller keeps within 255 bytes.
    fn new(parts: &[&[u8]]) -> Self {
        let mut name = NameBuf {
            bytes: [0; MAX_NAME],
            len: 0,
        };
        name.set(parts);
        name
    }

    /// The concatenation of `parts`, which the caller keeps within 255 bytes.
    fn set(&mut self, parts: &[&[u8]]) {
        self.len = 0;
        for part in parts {
            self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
            self.len += part.len();
        }
    }

    fn get(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Finds the answer for `qname` (`qkey` its key)/`qtype` in `zone` and writes it. Returns the
/// RCODE and whether the answer is authoritative (false only for a referral at the first step).
/// The question, as lookups need it.
struct Asked<'q> {
    /// As received.
    qname: &'q [u8],
    qkey: &'q KeyBuf,
    qtype: Rtype,
}

/// `online` is there when the answer carries DNSSEC records (a signed zone, DO set): it signs
/// what the zone's signatures do not cover.
fn lookup(
    zone: &Zone,
    asked: &Asked<'_>,
    filters: &std::collections::HashMap<Vec<u8>, Filter>,
    online: Option<&OnlineSigner>,
    w: &mut Writer<'_>,
) -> Result<(Rcode, bool), Full> {
    let Asked { qname, qkey, qtype } = *asked;
    let dnssec = online.is_some();
    let mut key = KeyBuf::new();
    key.bytes[..qkey.len].copy_from_slice(qkey.get());
    key.len = qkey.len;
    // The name being looked up: the question, then each CNAME or DNAME target in turn.
    let mut name = NameBuf::new(&[qname]);

    for hop in 0..=MAX_CHAIN {
        if hop > 0 {
            key.set(name.get());
        }
        // The question name sits right after the header.
        let owner = if hop == 0 {
            Owner::At(12)
        } else {
            Owner::Wire(name.get())
        };
        if let Some(cut) = zone.cut_above(key.get())
            && !(qtype == rtype::DS && zone.key(cut) == key.get())
        {
            referral(zone, cut, dnssec, w)?;
            return Ok((Rcode::NOERROR, hop > 0));
        }
        if let Some(node) = zone.dname_above(key.get()) {
            // RFC 6672 section 3.2: the DNAME, a CNAME synthesized from it, then the new name.
            let Some(dname) = zone.rrset(node, rtype::DNAME) else {
                return Ok((Rcode::SERVFAIL, true));
            };
            w.rrset(Section::Answer, Owner::Wire(zone.name(node)), &dname)?;
            if dnssec {
                let owner = Owner::Wire(zone.name(node));
                dnssec::signatures(zone, node, rtype::DNAME, Section::Answer, owner, w)?;
            }
            let Some(target) = dname.rdatas().next() else {
                return Ok((Rcode::NOERROR, true));
            };
            let prefix = &name.get()[..name.len - zone.name(node).len()];
            if prefix.len() + target.len() > MAX_NAME {
                return Ok((Rcode::YXDOMAIN, true));
            }
            let next = NameBuf::new(&[prefix, target]);
            w.record(Section::Answer, owner, rtype::CNAME, dname.ttl, next.get())?;
            if !name::is_subdomain(next.get(), zone.origin()) || hop == MAX_CHAIN {
                return Ok((Rcode::NOERROR, true));
            }
            name = next;
            continue;
        }
        // Where the name came from a wildcard: the NSEC that proves the name itself absent.
        let mut expanded_from = None;
        let node = match zone.find(key.get()) {
            Ok(node) => node,
            Err(at) if zone.has_descendant_at(at, key.get()) => {
                // An empty non-terminal exists: NODATA, and no wildcard may match it.
                negative(zone, dnssec, w)?;
                if dnssec {
                    dnssec::empty_non_terminal(zone, at, name.get(), w)?;
                }
                return Ok((Rcode::NOERROR, true));
            }
            Err(at) => match wildcard(zone, key.get()) {
                (_, Some(node)) => {
                    expanded_from = Some(at);
                    node
                }
                (star, None) => {
                    negative(zone, dnssec, w)?;
                    if dnssec {
                        // The name, and any wildcard that could have made it, do not exist.
                        dnssec::nxdomain(zone, (key.get(), name.get()), star.get(), w)?;
                    }
                    return Ok((Rcode::NXDOMAIN, true));
                }
            },
        };
        // A wildcard answer proves that the name itself is absent.
        let expansion_proof = |w: &mut Writer<'_>, nodata: bool| -> Result<(), Full> {
            match expanded_from {
                Some(at) if dnssec => dnssec::expansion(zone, (at, name.get()), node, nodata, w),
                _ => Ok(()),
            }
        };

        if qtype != rtype::CNAME
            && let Some(cname) = zone.rrset(node, rtype::CNAME)
        {
            w.rrset(Section::Answer, owner, &cname)?;
            if dnssec {
                dnssec::signatures(zone, node, rtype::CNAME, Section::Answer, owner, w)?;
                expansion_proof(w, false)?;
            }
            let Some(target) = cname.rdatas().next() else {
                return Ok((Rcode::NOERROR, true));
            };
            if !name::is_subdomain(target, zone.origin()) || hop == MAX_CHAIN {
                return Ok((Rcode::NOERROR, true));
            }
            name.set(&[target]);
            continue;
        }

        let set = if qtype == rtype::ANY {
            // RFC 8482: answer ANY with one RRset rather than everything.
            zone.rrsets(node).next()
        } else {
            zone.rrset(node, qtype)
        };
        let Some(set) = set else {
            negative(zone, dnssec, w)?;
            if dnssec {
                // RFC 4035 section 3.1.3.1: the name's NSEC shows the type absent.
                dnssec::nsec(zone, node, w)?;
                expansion_proof(w, true)?;
            }
            return Ok((Rcode::NOERROR, true));
        };
        // A health-checked name: the addresses found down are left out (`health`).
        let filter = (!filters.is_empty())
            .then(|| filters.get(zone.key(node)))
            .flatten();
        match filter.and_then(|filter| health::filtered(filter, set)) {
            Some((rdatas, ttl)) => {
                let mark = w.mark();
                for rdata in rdatas.clone() {
                    if let Err(full) = w.record(Section::Answer, owner, set.rtype, ttl, rdata) {
                        w.rollback(mark);
                        return Err(full);
                    }
                }
                // The part that is up is an RRset of its own: signed as it is answered.
                if let Some(online) = online {
                    let rdatas: Vec<&[u8]> = rdatas.collect();
                    let (section, rtype) = (Section::Answer, set.rtype);
                    online.sign_written(
                        zone,
                        section,
                        owner,
                        name.get(),
                        rtype,
                        ttl,
                        &rdatas,
                        w,
                    )?;
                }
            }
            None => {
                w.rrset(Section::Answer, owner, &set)?;
                if dnssec {
                    dnssec::signatures(zone, node, set.rtype, Section::Answer, owner, w)?;
                    expansion_proof(w, false)?;
                }
            }
        }
        additional(zone, &set, name.get(), w, false);
        return Ok((Rcode::NOERROR, true));
    }
    Ok((Rcode::NOERROR, true))
}

/// The answer for a name with records added at run time (`overlay`), if they make it: its TXT
/// records for TXT and ANY; its synthesized HTTPS record where the zone has no HTTPS RRset
/// (nor CNAME) there, with the name's addresses as answered for hints; NODATA for other types
/// at a challenge name the zone does not have. `None`: the zone answers.
fn added(
    zone: &Zone,
    asked: &Asked<'_>,
    extra: &overlay::Added,
    filters: &std::collections::HashMap<Vec<u8>, Filter>,
    online: Option<&OnlineSigner>,
    w: &mut Writer<'_>,
) -> Option<Result<(Rcode, bool), Full>> {
    let Asked { qname, qkey, qtype } = *asked;
    let node = zone.find(qkey.get()).ok();
    // What is added is signed as it is answered (`online`).
    let sign = |w: &mut Writer<'_>, rtype: Rtype, ttl: u32, rdatas: &[&[u8]]| match online {
        Some(online) => online.sign_written(
            zone,
            Section::Answer,
            Owner::At(12),
            qname,
            rtype,
            ttl,
            rdatas,
            w,
        ),
        None => Ok(()),
    };
    if !extra.txt.is_empty() && matches!(qtype, rtype::TXT | rtype::ANY) {
        let written = extra.txt.iter().try_for_each(|rdata| {
            w.record(
                Section::Answer,
                Owner::At(12),
                rtype::TXT,
                overlay::TXT_TTL,
                rdata,
            )
        });
        let rdatas: Vec<&[u8]> = extra.txt.iter().map(Vec::as_slice).collect();
        let written = written.and_then(|()| sign(w, rtype::TXT, overlay::TXT_TTL, &rdatas));
        return Some(written.map(|()| (Rcode::NOERROR, true)));
    }
    if let (Some(https), Some(node), rtype::HTTPS) = (&extra.https, node, qtype)
        && zone.rrset(node, rtype::HTTPS).is_none()
        && zone.rrset(node, rtype::CNAME).is_none()
    {
        let filter = filters.get(zone.key(node));
        let addresses = |rtype: Rtype| -> Vec<&[u8]> {
            let Some(set) = zone.rrset(node, rtype) else {
                return Vec::new();
            };
            match filter.and_then(|filter| health::filtered(filter, set)) {
                Some((rdatas, _)) => rdatas.collect(),
                None => set.rdatas().collect(),
            }
        };
        let rdata = overlay::https_rdata(https, &addresses(rtype::A), &addresses(rtype::AAAA));
        let written = w
            .record(
                Section::Answer,
                Owner::At(12),
                rtype::HTTPS,
                https.ttl,
                &rdata,
            )
            .and_then(|()| sign(w, rtype::HTTPS, https.ttl, &[&rdata]));
        return Some(written.map(|()| (Rcode::NOERROR, true)));
    }
    if node.is_none() && !extra.txt.is_empty() {
        let written = negative(zone, online.is_some(), w).and_then(|()| match online {
            Some(online) => online.deny_types(zone, qname, &[rtype::TXT], w),
            None => Ok(()),
        });
        return Some(written.map(|()| (Rcode::NOERROR, true)));
    }
    None
}

/// RFC 4592: the key of `*.<closest encloser>` for a name that does not exist, and that node,
/// the source of synthesis, if there is one.
fn wildcard(zone: &Zone, key: &[u8]) -> (KeyBuf, Option<NodeId>) {
    let apex_len = zone.origin_key().len();
    let mut encloser = apex_len;
    for len in name::key_prefixes(key).filter(|&len| len > apex_len && len < key.len()) {
        if zone.exists(&key[..len]) {
            encloser = len;
        } else {
            break;
        }
    }
    let mut star = KeyBuf::new();
    star.bytes[..encloser].copy_from_slice(&key[..encloser]);
    star.bytes[encloser..encloser + 3].copy_from_slice(b"*\0\0");
    star.len = encloser + 3;
    let node = zone.find(star.get()).ok();
    (star, node)
}

/// The SOA in the authority section, with the negative-caching TTL (RFC 2308 section 3), and
/// its signatures for a DNSSEC answer.
fn negative(zone: &Zone, dnssec: bool, w: &mut Writer<'_>) -> Result<(), Full> {
    let Some(apex) = zone.apex() else {
        return Ok(());
    };
    let Some(soa) = zone.rrset(apex, rtype::SOA) else {
        return Ok(());
    };
    for rdata in soa.rdatas() {
        w.record(
            Section::Authority,
            Owner::Wire(zone.origin()),
            rtype::SOA,
            zone.negative_ttl(),
            rdata,
        )?;
    }
    if dnssec {
        let owner = Owner::Wire(zone.origin());
        dnssec::signatures(zone, apex, rtype::SOA, Section::Authority, owner, w)?;
    }
    Ok(())
}

/// A referral to the child zone at `cut`: its NS set in authority, glue in additional; for a
/// DNSSEC answer, the signed DS set, or the signed NSEC that proves there is none (RFC 4035
/// section 3.1.4).
fn referral(zone: &Zone, cut: NodeId, dnssec: bool, w: &mut Writer<'_>) -> Result<(), Full> {
    let Some(ns) = zone.rrset(cut, rtype::NS) else {
        return Ok(());
    };
    let owner = Owner::Wire(zone.name(cut));
    w.rrset(Section::Authority, owner, &ns)?;
    if dnssec {
        match zone.rrset(cut, rtype::DS) {
            Some(ds) => {
                w.rrset(Section::Authority, owner, &ds)?;
                dnssec::signatures(zone, cut, rtype::DS, Section::Authority, owner, w)?;
            }
            None => dnssec::nsec(zone, cut, w)?,
        }
    }
    // RFC 9471: glue for name servers inside the delegated zone must fit, else TC.
    if additional(zone, &ns, zone.name(cut), w, true) {
        w.set_flags(w.flags() | Flags::TC);
    }
    Ok(())
}

/// Adds A and AAAA records of the in-zone names that `set` points at. Returns true when
/// required glue (names below `owner` in a referral) did not fit.
fn additional(zone: &Zone, set: &RRset<'_>, owner: &[u8], w: &mut Writer<'_>, glue: bool) -> bool {
    let Some((offset, _)) = rdata_name_offset(set.rtype) else {
        return false;
    };
    if matches!(set.rtype, rtype::CNAME | rtype::PTR) {
        return false;
    }
    let mut missing_glue = false;
    let mut done: [&[u8]; 16] = [&[]; 16];
    let mut done_count = 0;
    for rdata in set.rdatas() {
        let Some(len) = rdata.get(offset..).and_then(name::wire_len) else {
            continue;
        };
        let mut target = &rdata[offset..offset + len];
        if target == [0] && matches!(set.rtype, rtype::SVCB | rtype::HTTPS) {
            // RFC 9460: target "." in service mode means the owner itself.
            target = owner;
        }
        if !name::is_subdomain(target, zone.origin())
            || done[..done_count]
                .iter()
                .any(|d| name::eq_ignore_case(d, target))
        {
            continue;
        }
        if done_count < done.len() {
            done[done_count] = target;
            done_count += 1;
        }
        let mut key = KeyBuf::new();
        key.set(target);
        let Ok(node) = zone.find(key.get()) else {
            continue;
        };
        for rtype in [rtype::A, rtype::AAAA] {
            if let Some(addresses) = zone.rrset(node, rtype)
                && w.rrset(Section::Additional, Owner::Wire(target), &addresses)
                    .is_err()
            {
                missing_glue |= glue && name::is_subdomain(target, owner);
            }
        }
    }
    missing_glue
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::{wire::name::wire, zone::fixture::zone};

    #[test]
    fn responses_never_exceed_the_udp_limit() {
        let zone = zone(10);
        let catalog = Catalog::new([std::sync::Arc::new(zone)]);
        let responder = Responder::new(Access::default(), Cookies::new([7; 16]));
        let mut out = Vec::new();
        let mut packet = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        packet.extend_from_slice(&wire("example.com"));
        packet.extend_from_slice(&rtype::ANY.to_be_bytes());
        packet.extend_from_slice(&1u16.to_be_bytes());
        let client = Client {
            transport: Transport::Udp,
            address: IpAddr::from([127, 0, 0, 1]),
            now: 0,
        };
        let outcome = responder.respond(&catalog, &packet, client, &mut out);
        assert_eq!(outcome, Outcome::Reply);
        assert!(out.len() <= 512);
        assert_eq!(out[3] & 0x0F, 0, "NOERROR");
    }
}
