//! Big-endian numbers read off a message, each read checked: `None` past the end, so that no
//! parser indexes bytes it has not looked for, and none spells the byte order out by hand.

/// The `N` bytes at `at`.
fn array<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// The 16-bit number at `at`.
pub fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    array(bytes, at).map(u16::from_be_bytes)
}

/// The 32-bit number at `at`.
pub fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    array(bytes, at).map(u32::from_be_bytes)
}

/// The 48-bit number at `at` (TSIG's time).
pub fn u48_at(bytes: &[u8], at: usize) -> Option<u64> {
    let six: [u8; 6] = array(bytes, at)?;
    Some(six.iter().fold(0, |n, &byte| n << 8 | u64::from(byte)))
}

/// The offset a compression pointer (its two bytes, top bits set) points at.
pub fn pointer(first: u8, second: u8) -> usize {
    usize::from(first & 0x3F) << 8 | usize::from(second)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_checked_and_big_endian() {
        let bytes = [1, 2, 3, 4, 5, 6, 7];
        assert_eq!(u16_at(&bytes, 0), Some(0x0102));
        assert_eq!(u16_at(&bytes, 6), None);
        assert_eq!(u32_at(&bytes, 3), Some(0x0405_0607));
        assert_eq!(u32_at(&bytes, 4), None);
        assert_eq!(u48_at(&bytes, 1), Some(0x0203_0405_0607));
        assert_eq!(u16_at(&bytes, usize::MAX), None);
        assert_eq!(pointer(0xC1, 0x02), 0x102);
    }
}
