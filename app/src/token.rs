//! The bearer token for API writes: from the configuration, or generated once and kept.

use std::path::Path;

use foobar_state::Access;

use ring::rand::SecureRandom;

/// The token at `path`, created (random, owner-readable only) if the file does not exist.
pub fn load_or_create(path: &Path) -> std::io::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("no system randomness"))?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    foobar_state::write(path, format!("{token}\n").as_bytes(), Access::Private)?;
    Ok(token)
}

/// Compares a presented token with the real one in time that does not depend on where they
/// differ (written here: the comparison is four lines and needs no dependency).
pub fn matches(given: &str, expected: &str) -> bool {
    let (given, expected) = (given.as_bytes(), expected.as_bytes());
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}
