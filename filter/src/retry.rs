//! The retry schedule: which callout outcomes are retried, and how long to wait.

use crate::config::Retry;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Worth another attempt: connect failure, timeout, 5xx, 408, 429.
    Retry,
    /// The collector refused the batch: sending it again would not help.
    Reject,
}

/// `status` is None when the callout failed without a response (reset, no headers).
pub fn classify(status: Option<u32>) -> Verdict {
    match status {
        None | Some(0) => Verdict::Retry,
        Some(200..=299) => Verdict::Delivered,
        Some(408) | Some(429) | Some(500..=599) => Verdict::Retry,
        Some(_) => Verdict::Reject,
    }
}

/// Delay before the next attempt after `failures` failed attempts (1 after the first):
/// exponential with full jitter over `[initial, min(max, initial * 2^failures)]`, so the
/// first retry waits between `initial` and `2 * initial`. A `Retry-After` (429/503) raises
/// the delay to what the server asked for, up to `max`.
pub fn backoff_ms(r: &Retry, failures: u32, retry_after_ms: Option<u64>, random: u64) -> u64 {
    let ceiling = r
        .initial_backoff_ms
        .saturating_mul(1u64 << failures.min(32))
        .min(r.max_backoff_ms)
        .max(r.initial_backoff_ms);
    let span = ceiling - r.initial_backoff_ms;
    let jittered = r.initial_backoff_ms + if span == 0 { 0 } else { random % (span + 1) };
    match retry_after_ms {
        Some(ra) => jittered.max(ra.min(r.max_backoff_ms)),
        None => jittered,
    }
}

/// `Retry-After` in its delay-seconds form; the HTTP-date form is ignored (backoff applies).
pub fn parse_retry_after(value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let secs: u64 = s.parse().ok()?;
    Some(secs.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Retry = Retry {
        max_attempts: 5,
        initial_backoff_ms: 200,
        max_backoff_ms: 1000,
    };

    #[test]
    fn classification() {
        assert_eq!(classify(None), Verdict::Retry);
        assert_eq!(classify(Some(0)), Verdict::Retry);
        for s in [200, 201, 204, 299] {
            assert_eq!(classify(Some(s)), Verdict::Delivered);
        }
        for s in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(Some(s)), Verdict::Retry, "{s}");
        }
        for s in [100, 301, 400, 401, 403, 404, 413, 422, 999] {
            assert_eq!(classify(Some(s)), Verdict::Reject, "{s}");
        }
    }

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        for failures in 1..10 {
            let ceiling = (200u64 << failures).min(1000);
            for rnd in [0, 1, 7, 12345, u64::MAX] {
                let d = backoff_ms(&R, failures, None, rnd);
                assert!((200..=ceiling).contains(&d), "failures {failures}: {d}");
            }
        }
        assert_eq!(backoff_ms(&R, 1, None, 0), 200);
        assert_eq!(backoff_ms(&R, 1, None, 200), 400);
        assert_eq!(backoff_ms(&R, 30, None, 800), 1000);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        assert_eq!(backoff_ms(&R, 1, Some(800), 0), 800);
        assert_eq!(backoff_ms(&R, 1, Some(60_000), 0), 1000);
        assert_eq!(parse_retry_after(b"2"), Some(2000));
        assert_eq!(parse_retry_after(b" 0 "), Some(0));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
