//! The RFC 3339 text of a completion time, as the events and CloudEvents' `time` carry it.

/// "00" to "99", back to back: a timestamp's microseconds (and small numbers) two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two decimal digits of `n` (below 100).
pub(crate) fn two_digits(n: usize) -> [u8; 2] {
    let mut d = [0; 2];
    d.copy_from_slice(&DIGIT_PAIRS[2 * n..2 * n + 2]);
    d
}

/// RFC 3339 in UTC with microseconds: `2025-10-02T13:58:33.001748Z`.
/// Civil-from-days is Howard Hinnant's algorithm; the filter's dependency budget has no
/// room for a date crate, and this is the only date arithmetic it needs. (The filter always
/// writes through a `SecondCache`; this one-shot form is what its test compares against.)
#[cfg(test)]
pub fn write_rfc3339(out: &mut Vec<u8>, unix_ns: u64) {
    SecondCache::default().write(out, unix_ns);
}

/// The date and time up to the second change once a second while events arrive many times a
/// second: the prefix is formatted once per second, only the microseconds per event.
/// (Formatting it all cost ~735 fuel per event.)
#[derive(Debug, Default)]
pub struct SecondCache {
    second: Option<u64>,
    prefix: [u8; 20],
}

impl SecondCache {
    pub fn write(&mut self, out: &mut Vec<u8>, unix_ns: u64) {
        let secs = unix_ns / 1_000_000_000;
        if self.second != Some(secs) {
            self.prefix = format_second(secs);
            self.second = Some(secs);
        }
        out.extend_from_slice(&self.prefix);
        let micros = ((unix_ns % 1_000_000_000) / 1000) as usize;
        let mut frac = [b'Z'; 7];
        for (i, pair) in [micros / 10_000, micros / 100 % 100, micros % 100]
            .into_iter()
            .enumerate()
        {
            frac[2 * i..2 * i + 2].copy_from_slice(&two_digits(pair));
        }
        out.extend_from_slice(&frac);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of a Unix second.
fn format_second(secs: u64) -> [u8; 20] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if mo <= 2 { 1 } else { 0 };
    let mut buf = [0u8; 20];
    let mut put = |at: usize, v: u64, width: usize| {
        let mut v = v;
        for i in (0..width).rev() {
            buf[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y.clamp(0, 9999) as u64, 4);
    put(5, mo as u64, 2);
    put(8, d as u64, 2);
    put(11, h, 2);
    put(14, m, 2);
    put(17, s, 2);
    buf[4] = b'-';
    buf[7] = b'-';
    buf[10] = b'T';
    buf[13] = b':';
    buf[16] = b':';
    buf[19] = b'.';
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc() {
        let mut out = Vec::new();
        write_rfc3339(&mut out, 0);
        assert_eq!(out, b"1970-01-01T00:00:00.000000Z");
        out.clear();
        // 2025-10-02T13:58:33.001748Z
        write_rfc3339(&mut out, 1_759_413_513_001_748_123);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "2025-10-02T13:58:33.001748Z"
        );
        out.clear();
        // a leap day
        write_rfc3339(&mut out, 1_709_164_800_000_000_000);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "2024-02-29T00:00:00.000000Z"
        );
    }

    #[test]
    fn second_cache_matches_fresh_formatting() {
        let mut c = SecondCache::default();
        for ns in [
            0u64,
            999_999_999,
            1_000_000_000,
            1_759_413_513_001_748_123,
            1_759_413_513_999_999_999,
            1_759_413_514_000_000_001,
        ] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            c.write(&mut a, ns);
            write_rfc3339(&mut b, ns);
            assert_eq!(a, b);
            assert_eq!(a.len(), 27);
        }
    }
}
