//! The `Date` field of a response sent now (RFC 9110 §6.6.1), formatted once a second per
//! thread. hyper adds one to the responses it sends without it, from a cache of its own that it
//! does not export; HTTP/3 responses and the kept static ones take theirs from here.

use std::{
    cell::RefCell,
    time::{SystemTime, UNIX_EPOCH},
};

use http::HeaderValue;

/// Now, as an HTTP date (`Sun, 06 Dec 2026 12:00:00 GMT`).
pub fn now() -> HeaderValue {
    thread_local! {
        /// The second last formatted, and its text.
        static LAST: RefCell<(u64, HeaderValue)> =
            const { RefCell::new((u64::MAX, HeaderValue::from_static(""))) };
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    LAST.with_borrow_mut(|(at, value)| {
        if *at != second {
            // The text is ASCII letters, digits, spaces, commas and colons: always a valid
            // value; were it not, the last one would stay.
            if let Ok(text) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
                *at = second;
                *value = text;
            }
        }
        value.clone()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn is_the_current_second_as_an_http_date() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let value = now();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let parsed = httpdate::parse_http_date(value.to_str().unwrap()).unwrap();
        let at = parsed.duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!((before..=after).contains(&at), "{value:?}");
        assert_eq!(value.len(), "Sun, 06 Dec 2026 12:00:00 GMT".len());
    }
}
