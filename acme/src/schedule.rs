//! When to renew and when to try again, as pure functions of times (tested without a CA).

use std::time::{Duration, SystemTime};

/// The shortest wait after a failed order.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait after failed orders: a broken setup asks the CA about once a day.
pub const LONGEST_RETRY: Duration = Duration::from_secs(24 * 3600);
/// The wait after the CA said its rate limit was reached (Let's Encrypt's windows are hours).
pub const RATE_LIMITED_RETRY: Duration = Duration::from_secs(3 * 3600);

/// When a certificate valid from `not_before` to `not_after` is renewed without renewal
/// information from the CA: at two thirds of its lifetime, moved by `jitter` (0..1) within
/// one fiftieth of the lifetime either way, so that many certificates (or nodes) issued
/// together do not renew together.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime, jitter: f64) -> SystemTime {
    let lifetime = not_after
        .duration_since(not_before)
        .unwrap_or(Duration::ZERO);
    let base = not_before + lifetime * 2 / 3;
    let spread = lifetime / 50;
    let offset = spread.mul_f64(jitter.clamp(0.0, 1.0) * 2.0);
    (base + offset).checked_sub(spread).unwrap_or(base)
}

/// A time inside the CA's suggested window (RFC 9773 section 4.2): uniformly at `jitter` (0..1)
/// of it; the start when the window is empty or reversed.
pub fn in_window(start: SystemTime, end: SystemTime, jitter: f64) -> SystemTime {
    match end.duration_since(start) {
        Ok(width) => start + width.mul_f64(jitter.clamp(0.0, 1.0)),
        Err(_) => start,
    }
}

/// The wait before the next try after `failures` failures in a row (1 for the first): doubled
/// each time from `FIRST_RETRY` up to `LONGEST_RETRY`, with up to a quarter added by `jitter`
/// (0..1); never less than `RATE_LIMITED_RETRY` after the CA's rate limit.
pub fn retry_after(failures: u32, rate_limited: bool, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    let base = FIRST_RETRY
        .saturating_mul(1u32 << doublings)
        .min(LONGEST_RETRY);
    let base = if rate_limited {
        base.max(RATE_LIMITED_RETRY)
    } else {
        base
    };
    base + base.mul_f64(jitter.clamp(0.0, 1.0) / 4.0)
}

/// A number in 0..1 from the operating system's randomness (0.5 if it has none to give).
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    match ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes) {
        Ok(()) => f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX),
        Err(_) => 0.5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime_within_the_jitter() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 90 * DAY;
        assert_eq!(renew_at(start, end, 0.5), start + 60 * DAY);
        let early = renew_at(start, end, 0.0);
        let late = renew_at(start, end, 1.0);
        assert_eq!(early, start + 60 * DAY - 90 * DAY / 50);
        assert_eq!(late, start + 60 * DAY + 90 * DAY / 50);
        // Six-day certificates renew after four days, give or take a few hours.
        let short = renew_at(start, start + 6 * DAY, 0.5);
        assert_eq!(short, start + 4 * DAY);
        // A certificate that ends before it starts is renewed at once.
        assert_eq!(renew_at(end, start, 0.5), end);
    }

    #[test]
    fn a_window_time_is_inside_the_window() {
        let start = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let end = start + 2 * DAY;
        assert_eq!(in_window(start, end, 0.0), start);
        assert_eq!(in_window(start, end, 0.5), start + DAY);
        assert_eq!(in_window(start, end, 1.0), end);
        assert_eq!(in_window(end, start, 0.7), end);
    }

    #[test]
    fn retries_back_off_to_a_day_and_respect_rate_limits() {
        assert_eq!(retry_after(1, false, 0.0), FIRST_RETRY);
        assert_eq!(retry_after(2, false, 0.0), 2 * FIRST_RETRY);
        assert_eq!(retry_after(5, false, 0.0), 16 * FIRST_RETRY);
        assert_eq!(retry_after(40, false, 0.0), LONGEST_RETRY);
        assert_eq!(retry_after(40, false, 1.0), LONGEST_RETRY * 5 / 4);
        assert_eq!(retry_after(1, true, 0.0), RATE_LIMITED_RETRY);
        assert_eq!(retry_after(1, false, 1.0), FIRST_RETRY * 5 / 4);
    }
}
