//! The protocol's numbers, each in one place: record types (numbers, mnemonics, and whether a
//! zone file may hold them), response codes.

/// Record types by number.
#[allow(missing_docs)]
pub mod rtype {
    pub const A: u16 = 1;
    pub const NS: u16 = 2;
    pub const MD: u16 = 3;
    pub const MF: u16 = 4;
    pub const CNAME: u16 = 5;
    pub const SOA: u16 = 6;
    pub const MB: u16 = 7;
    pub const MG: u16 = 8;
    pub const MR: u16 = 9;
    pub const PTR: u16 = 12;
    pub const HINFO: u16 = 13;
    pub const MINFO: u16 = 14;
    pub const MX: u16 = 15;
    pub const TXT: u16 = 16;
    pub const RP: u16 = 17;
    pub const AFSDB: u16 = 18;
    pub const X25: u16 = 19;
    pub const ISDN: u16 = 20;
    pub const RT: u16 = 21;
    pub const NSAP_PTR: u16 = 23;
    pub const SIG: u16 = 24;
    pub const KEY: u16 = 25;
    pub const PX: u16 = 26;
    pub const GPOS: u16 = 27;
    pub const AAAA: u16 = 28;
    pub const LOC: u16 = 29;
    pub const SRV: u16 = 33;
    pub const NAPTR: u16 = 35;
    pub const KX: u16 = 36;
    pub const CERT: u16 = 37;
    pub const DNAME: u16 = 39;
    pub const OPT: u16 = 41;
    pub const APL: u16 = 42;
    pub const DS: u16 = 43;
    pub const SSHFP: u16 = 44;
    pub const IPSECKEY: u16 = 45;
    pub const RRSIG: u16 = 46;
    pub const NSEC: u16 = 47;
    pub const DNSKEY: u16 = 48;
    pub const DHCID: u16 = 49;
    pub const NSEC3: u16 = 50;
    pub const NSEC3PARAM: u16 = 51;
    pub const TLSA: u16 = 52;
    pub const SMIMEA: u16 = 53;
    pub const CDS: u16 = 59;
    pub const CDNSKEY: u16 = 60;
    pub const OPENPGPKEY: u16 = 61;
    pub const CSYNC: u16 = 62;
    pub const ZONEMD: u16 = 63;
    pub const SVCB: u16 = 64;
    pub const HTTPS: u16 = 65;
    pub const SPF: u16 = 99;
    pub const NID: u16 = 104;
    pub const L32: u16 = 105;
    pub const L64: u16 = 106;
    pub const LP: u16 = 107;
    pub const EUI48: u16 = 108;
    pub const EUI64: u16 = 109;
    pub const TSIG: u16 = 250;
    pub const IXFR: u16 = 251;
    pub const AXFR: u16 = 252;
    pub const MAILB: u16 = 253;
    pub const MAILA: u16 = 254;
    pub const ANY: u16 = 255;
    pub const URI: u16 = 256;
    pub const CAA: u16 = 257;
    pub const AVC: u16 = 258;
    pub const RESINFO: u16 = 261;
    pub const TA: u16 = 32768;
    pub const DLV: u16 = 32769;
}

/// Record types by number and mnemonic. Types marked `false` have no text form here and must be
/// written as RFC 3597 generic data (`\# LENGTH HEX`); meta-types cannot appear in a zone file.
const TYPES: &[(u16, &str, Kind)] = &[
    (1, "A", Kind::Data),
    (2, "NS", Kind::Data),
    (3, "MD", Kind::Data),
    (4, "MF", Kind::Data),
    (5, "CNAME", Kind::Data),
    (6, "SOA", Kind::Data),
    (7, "MB", Kind::Data),
    (8, "MG", Kind::Data),
    (9, "MR", Kind::Data),
    (10, "NULL", Kind::Generic),
    (11, "WKS", Kind::Generic),
    (12, "PTR", Kind::Data),
    (13, "HINFO", Kind::Data),
    (14, "MINFO", Kind::Data),
    (15, "MX", Kind::Data),
    (16, "TXT", Kind::Data),
    (17, "RP", Kind::Data),
    (18, "AFSDB", Kind::Data),
    (19, "X25", Kind::Data),
    (20, "ISDN", Kind::Data),
    (21, "RT", Kind::Data),
    (22, "NSAP", Kind::Generic),
    (23, "NSAP-PTR", Kind::Data),
    (24, "SIG", Kind::Data),
    (25, "KEY", Kind::Data),
    (26, "PX", Kind::Data),
    (27, "GPOS", Kind::Data),
    (28, "AAAA", Kind::Data),
    (29, "LOC", Kind::Data),
    (30, "NXT", Kind::Generic),
    (31, "EID", Kind::Generic),
    (32, "NIMLOC", Kind::Generic),
    (33, "SRV", Kind::Data),
    (34, "ATMA", Kind::Generic),
    (35, "NAPTR", Kind::Data),
    (36, "KX", Kind::Data),
    (37, "CERT", Kind::Data),
    (38, "A6", Kind::Generic),
    (39, "DNAME", Kind::Data),
    (40, "SINK", Kind::Generic),
    (41, "OPT", Kind::Meta),
    (42, "APL", Kind::Data),
    (43, "DS", Kind::Data),
    (44, "SSHFP", Kind::Data),
    (45, "IPSECKEY", Kind::Data),
    (46, "RRSIG", Kind::Data),
    (47, "NSEC", Kind::Data),
    (48, "DNSKEY", Kind::Data),
    (49, "DHCID", Kind::Data),
    (50, "NSEC3", Kind::Data),
    (51, "NSEC3PARAM", Kind::Data),
    (52, "TLSA", Kind::Data),
    (53, "SMIMEA", Kind::Data),
    (55, "HIP", Kind::Generic),
    (56, "NINFO", Kind::Generic),
    (57, "RKEY", Kind::Generic),
    (58, "TALINK", Kind::Generic),
    (59, "CDS", Kind::Data),
    (60, "CDNSKEY", Kind::Data),
    (61, "OPENPGPKEY", Kind::Data),
    (62, "CSYNC", Kind::Data),
    (63, "ZONEMD", Kind::Data),
    (64, "SVCB", Kind::Data),
    (65, "HTTPS", Kind::Data),
    (99, "SPF", Kind::Data),
    (104, "NID", Kind::Data),
    (105, "L32", Kind::Data),
    (106, "L64", Kind::Data),
    (107, "LP", Kind::Data),
    (108, "EUI48", Kind::Data),
    (109, "EUI64", Kind::Data),
    (249, "TKEY", Kind::Meta),
    (250, "TSIG", Kind::Meta),
    (251, "IXFR", Kind::Meta),
    (252, "AXFR", Kind::Meta),
    (253, "MAILB", Kind::Meta),
    (254, "MAILA", Kind::Meta),
    (255, "ANY", Kind::Meta),
    (256, "URI", Kind::Data),
    (257, "CAA", Kind::Data),
    (258, "AVC", Kind::Data),
    (259, "DOA", Kind::Generic),
    (260, "AMTRELAY", Kind::Generic),
    (261, "RESINFO", Kind::Data),
    (32768, "TA", Kind::Data),
    (32769, "DLV", Kind::Data),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Read from its presentation format.
    Data,
    /// Only as RFC 3597 generic data.
    Generic,
    /// A query or transport type, never zone data.
    Meta,
}

/// The number of a type mnemonic (`AAAA`, `TYPE65280`), ignoring case.
pub fn type_number(text: &[u8]) -> Option<u16> {
    if text.len() > 4 && text[..4].eq_ignore_ascii_case(b"TYPE") {
        let digits = &text[4..];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        return std::str::from_utf8(digits).ok()?.parse().ok();
    }
    TYPES
        .iter()
        .find(|(_, name, _)| name.as_bytes().eq_ignore_ascii_case(text))
        .map(|&(number, _, _)| number)
}

/// The mnemonic of a known type.
pub fn mnemonic(rtype: u16) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|&&(number, _, _)| number == rtype)
        .map(|&(_, name, _)| name)
}

/// The mnemonic of a type, or `TYPEnnn`.
pub fn type_name(rtype: u16) -> String {
    mnemonic(rtype).map_or_else(|| format!("TYPE{rtype}"), str::to_string)
}

pub(crate) fn kind(rtype: u16) -> Kind {
    TYPES
        .iter()
        .find(|&&(number, _, _)| number == rtype)
        .map_or(Kind::Generic, |&(_, _, kind)| kind)
}

/// A response code: the header's four bits, with the eight more an OPT record carries
/// (RFC 6891 section 6.1.3) for the extended ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rcode(pub u16);

impl Rcode {
    pub const NOERROR: Rcode = Rcode(0);
    pub const FORMERR: Rcode = Rcode(1);
    pub const SERVFAIL: Rcode = Rcode(2);
    pub const NXDOMAIN: Rcode = Rcode(3);
    pub const NOTIMP: Rcode = Rcode(4);
    pub const REFUSED: Rcode = Rcode(5);
    pub const YXDOMAIN: Rcode = Rcode(6);
    pub const NOTAUTH: Rcode = Rcode(9);
    pub const BADVERS: Rcode = Rcode(16);
    pub const BADCOOKIE: Rcode = Rcode(23);

    /// The bits the header carries.
    pub fn header_bits(self) -> u16 {
        self.0 & 0xF
    }

    /// The bits the OPT record carries (its EXTENDED-RCODE field).
    pub fn extended_bits(self) -> u8 {
        (self.0 >> 4) as u8
    }

    /// The code from the header's bits and the OPT record's.
    pub fn from_parts(header: u16, extended: u8) -> Rcode {
        Rcode(u16::from(extended) << 4 | (header & 0xF))
    }

    /// The mnemonic of a code this server sends.
    pub fn mnemonic(self) -> Option<&'static str> {
        Some(match self {
            Rcode::NOERROR => "NOERROR",
            Rcode::FORMERR => "FORMERR",
            Rcode::SERVFAIL => "SERVFAIL",
            Rcode::NXDOMAIN => "NXDOMAIN",
            Rcode::NOTIMP => "NOTIMP",
            Rcode::REFUSED => "REFUSED",
            Rcode::YXDOMAIN => "YXDOMAIN",
            Rcode::NOTAUTH => "NOTAUTH",
            Rcode::BADVERS => "BADVERS",
            Rcode::BADCOOKIE => "BADCOOKIE",
            _ => return None,
        })
    }
}

/// The mnemonic, or the number for a code without one here.
impl std::fmt::Display for Rcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mnemonic() {
            Some(name) => f.write_str(name),
            None => write!(f, "RCODE{}", self.0),
        }
    }
}
