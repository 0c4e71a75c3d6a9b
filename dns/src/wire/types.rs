//! The protocol's numbers, each in one place: record types (numbers, mnemonics, and whether a
//! zone file may hold them), classes, response codes, opcodes, the header's flags.

/// A record type (RFC 1035 section 3.2.2): its number; its mnemonic through `Display`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Rtype(pub u16);

impl Rtype {
    /// The type's two bytes on the wire.
    pub fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

/// The mnemonic (`AAAA`), or `TYPEnnn` (RFC 3597) for a type without one.
impl std::fmt::Display for Rtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match mnemonic(*self) {
            Some(name) => f.write_str(name),
            None => write!(f, "TYPE{}", self.0),
        }
    }
}

/// Record types by number.
#[allow(missing_docs)]
pub mod rtype {
    use super::Rtype;

    pub const A: Rtype = Rtype(1);
    pub const NS: Rtype = Rtype(2);
    pub const MD: Rtype = Rtype(3);
    pub const MF: Rtype = Rtype(4);
    pub const CNAME: Rtype = Rtype(5);
    pub const SOA: Rtype = Rtype(6);
    pub const MB: Rtype = Rtype(7);
    pub const MG: Rtype = Rtype(8);
    pub const MR: Rtype = Rtype(9);
    pub const PTR: Rtype = Rtype(12);
    pub const HINFO: Rtype = Rtype(13);
    pub const MINFO: Rtype = Rtype(14);
    pub const MX: Rtype = Rtype(15);
    pub const TXT: Rtype = Rtype(16);
    pub const RP: Rtype = Rtype(17);
    pub const AFSDB: Rtype = Rtype(18);
    pub const X25: Rtype = Rtype(19);
    pub const ISDN: Rtype = Rtype(20);
    pub const RT: Rtype = Rtype(21);
    pub const NSAP_PTR: Rtype = Rtype(23);
    pub const SIG: Rtype = Rtype(24);
    pub const KEY: Rtype = Rtype(25);
    pub const PX: Rtype = Rtype(26);
    pub const GPOS: Rtype = Rtype(27);
    pub const AAAA: Rtype = Rtype(28);
    pub const LOC: Rtype = Rtype(29);
    pub const SRV: Rtype = Rtype(33);
    pub const NAPTR: Rtype = Rtype(35);
    pub const KX: Rtype = Rtype(36);
    pub const CERT: Rtype = Rtype(37);
    pub const DNAME: Rtype = Rtype(39);
    pub const OPT: Rtype = Rtype(41);
    pub const APL: Rtype = Rtype(42);
    pub const DS: Rtype = Rtype(43);
    pub const SSHFP: Rtype = Rtype(44);
    pub const IPSECKEY: Rtype = Rtype(45);
    pub const RRSIG: Rtype = Rtype(46);
    pub const NSEC: Rtype = Rtype(47);
    pub const DNSKEY: Rtype = Rtype(48);
    pub const DHCID: Rtype = Rtype(49);
    pub const NSEC3: Rtype = Rtype(50);
    pub const NSEC3PARAM: Rtype = Rtype(51);
    pub const TLSA: Rtype = Rtype(52);
    pub const SMIMEA: Rtype = Rtype(53);
    pub const CDS: Rtype = Rtype(59);
    pub const CDNSKEY: Rtype = Rtype(60);
    pub const OPENPGPKEY: Rtype = Rtype(61);
    pub const CSYNC: Rtype = Rtype(62);
    pub const ZONEMD: Rtype = Rtype(63);
    pub const SVCB: Rtype = Rtype(64);
    pub const HTTPS: Rtype = Rtype(65);
    pub const SPF: Rtype = Rtype(99);
    pub const NID: Rtype = Rtype(104);
    pub const L32: Rtype = Rtype(105);
    pub const L64: Rtype = Rtype(106);
    pub const LP: Rtype = Rtype(107);
    pub const EUI48: Rtype = Rtype(108);
    pub const EUI64: Rtype = Rtype(109);
    pub const TSIG: Rtype = Rtype(250);
    pub const IXFR: Rtype = Rtype(251);
    pub const AXFR: Rtype = Rtype(252);
    pub const MAILB: Rtype = Rtype(253);
    pub const MAILA: Rtype = Rtype(254);
    pub const ANY: Rtype = Rtype(255);
    pub const URI: Rtype = Rtype(256);
    pub const CAA: Rtype = Rtype(257);
    pub const AVC: Rtype = Rtype(258);
    pub const RESINFO: Rtype = Rtype(261);
    pub const TA: Rtype = Rtype(32768);
    pub const DLV: Rtype = Rtype(32769);
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
pub fn type_number(text: &[u8]) -> Option<Rtype> {
    if text.len() > 4 && text[..4].eq_ignore_ascii_case(b"TYPE") {
        let digits = &text[4..];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        return std::str::from_utf8(digits).ok()?.parse().ok().map(Rtype);
    }
    TYPES
        .iter()
        .find(|(_, name, _)| name.as_bytes().eq_ignore_ascii_case(text))
        .map(|&(number, _, _)| Rtype(number))
}

/// The mnemonic of a known type.
pub fn mnemonic(rtype: Rtype) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|&&(number, _, _)| number == rtype.0)
        .map(|&(_, name, _)| name)
}

/// The mnemonic of a type, or `TYPEnnn`.
pub fn type_name(rtype: Rtype) -> String {
    rtype.to_string()
}

pub(crate) fn kind(rtype: Rtype) -> Kind {
    TYPES
        .iter()
        .find(|&&(number, _, _)| number == rtype.0)
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

/// A message's opcode (RFC 1035 section 4.1.1; NOTIFY is RFC 1996's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opcode(pub u8);

impl Opcode {
    pub const QUERY: Opcode = Opcode(0);
    pub const NOTIFY: Opcode = Opcode(4);
}

/// The header's second word (RFC 1035 section 4.1.1): QR, the opcode, AA, TC, RD, RA, AD, CD,
/// and the RCODE's four bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub u16);

impl Flags {
    /// A response.
    pub const QR: Flags = Flags(0x8000);
    /// An authoritative answer.
    pub const AA: Flags = Flags(0x0400);
    /// Truncated.
    pub const TC: Flags = Flags(0x0200);
    /// Recursion desired.
    pub const RD: Flags = Flags(0x0100);
    /// Checking disabled (RFC 4035).
    pub const CD: Flags = Flags(0x0010);

    /// The flags word with only this opcode set.
    pub fn of_opcode(opcode: Opcode) -> Flags {
        Flags(u16::from(opcode.0 & 0xF) << 11)
    }

    /// The opcode the flags carry.
    pub fn opcode(self) -> Opcode {
        Opcode(((self.0 >> 11) & 0xF) as u8)
    }

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with the RCODE's header bits set to `rcode`'s.
    pub fn with_rcode(self, rcode: Rcode) -> Flags {
        Flags((self.0 & !0xF) | rcode.header_bits())
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }
}

impl std::ops::BitAnd for Flags {
    type Output = Flags;
    fn bitand(self, other: Flags) -> Flags {
        Flags(self.0 & other.0)
    }
}

impl std::ops::Not for Flags {
    type Output = Flags;
    fn not(self) -> Flags {
        Flags(!self.0)
    }
}

/// A record's or question's class (RFC 1035 section 3.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(pub u16);

impl Class {
    /// The Internet.
    pub const IN: Class = Class(1);
    /// CHAOS: the server's identity and version (`version.bind`).
    pub const CH: Class = Class(3);
    /// Any class: questions, and the TSIG record's.
    pub const ANY: Class = Class(255);

    /// The class's two bytes on the wire.
    pub fn to_be_bytes(self) -> [u8; 2] {
        self.0.to_be_bytes()
    }
}

/// Appends the RFC 4034 section 4.1.2 type bitmap of `types` (sorted and deduplicated here), as
/// NSEC, NSEC3 and CSYNC carry it.
pub fn push_type_bitmap(types: &mut Vec<u16>, out: &mut Vec<u8>) {
    types.sort_unstable();
    types.dedup();
    let mut at = 0;
    while at < types.len() {
        let window = types[at] >> 8;
        let mut bits = [0u8; 32];
        let mut used = 0;
        while at < types.len() && types[at] >> 8 == window {
            let low = usize::from(types[at] & 0xFF);
            bits[low / 8] |= 0x80 >> (low % 8);
            used = low / 8 + 1;
            at += 1;
        }
        out.push(window as u8);
        out.push(used as u8);
        out.extend_from_slice(&bits[..used]);
    }
}
