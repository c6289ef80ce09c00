//! The usage event: what one request becomes, and the pure rules that derive its fields.

use crate::config::KeyMode;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// Everything captured about one request, borrowed from what the host handed over.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// 16 bytes of a UUID (v7 in practice).
    pub id: [u8; 16],
    pub api_path: Cow<'a, str>,
    pub subscription_key: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub response_time_ms: u64,
    pub status_code: u32,
    /// Completion time, nanoseconds since the Unix epoch.
    pub completed_unix_ns: u64,
    pub request_size: u64,
    pub response_size: u64,
    pub request_id: Option<Cow<'a, str>>,
    pub authority: Option<Cow<'a, str>>,
    pub attributes: Vec<(&'a str, Cow<'a, str>)>,
    /// What an LLM response said about its tokens (`llm` on, the response read).
    pub tokens: Option<Tokens<'a>>,
}

/// The model and token counts of an LLM response (see `tokens`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tokens<'a> {
    pub model: Option<Cow<'a, str>>,
    pub usage: crate::tokens::Usage,
}

impl Event<'_> {
    pub fn success(&self) -> bool {
        (200..=299).contains(&self.status_code)
    }

    pub fn billable(&self) -> bool {
        (200..=499).contains(&self.status_code)
    }
}

/// The request path without its query string (or fragment).
pub fn strip_query(path: &[u8]) -> &[u8] {
    match path.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) => &path[..i],
        None => path,
    }
}

pub fn is_excluded(path: &[u8], prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| path.starts_with(p.as_bytes()))
}

/// Header bytes as text; invalid UTF-8 is replaced rather than refused, since a header is
/// client input and the request must still be metered.
pub fn text(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` first: the lossy decoder walks chunks and cost several times more on the
    // valid headers that are nearly all there is.
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// The subscription key as it should appear in the event.
pub fn apply_key_mode<'a>(key: Cow<'a, str>, mode: KeyMode) -> Cow<'a, str> {
    match mode {
        KeyMode::Raw => key,
        KeyMode::Sha256 => {
            let digest = Sha256::digest(key.as_bytes());
            let mut hex = String::with_capacity(64);
            for b in digest {
                hex.push(HEX[(b >> 4) as usize] as char);
                hex.push(HEX[(b & 15) as usize] as char);
            }
            Cow::Owned(hex)
        }
        KeyMode::Redact => {
            let mut out: String = key.chars().take(4).collect();
            out.push('…');
            Cow::Owned(out)
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// "00" to "99", back to back: a timestamp's microseconds two digits at a time.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The integer status of a `:status` header; anything unparsable is 0 ("no response").
pub fn parse_status(bytes: &[u8]) -> u32 {
    let s = bytes.trim_ascii();
    if s.is_empty() || s.len() > 4 || !s.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    s.iter().fold(0u32, |n, d| n * 10 + (d - b'0') as u32)
}

/// A time-ordered UUID (RFC 9562 v7) from the completion time and 10 random bytes.
pub fn uuid_v7(unix_ms: u64, random: &[u8; 10]) -> [u8; 16] {
    *uuid::Builder::from_unix_timestamp_millis(unix_ms, random)
        .into_uuid()
        .as_bytes()
}

/// A random (v4) UUID, used for batch ids.
pub fn uuid_v4(random: [u8; 16]) -> [u8; 16] {
    *uuid::Builder::from_random_bytes(random)
        .into_uuid()
        .as_bytes()
}

/// Writes the canonical 36-character form. Four bytes at a time, as eight hex digits in one
/// u64 (a byte-by-byte table walk was ~30% of encoding a batch in V8; the uuid crate's
/// formatter cost ~930 fuel per id); a test holds it equal to the uuid crate's.
pub fn write_uuid(out: &mut Vec<u8>, id: &[u8; 16]) {
    let [a, b, c, d] = [0, 4, 8, 12].map(|i| hex8([id[i], id[i + 1], id[i + 2], id[i + 3]]));
    let mut buf = [b'-'; 36];
    buf[0..8].copy_from_slice(&a);
    buf[9..13].copy_from_slice(&b[..4]);
    buf[14..18].copy_from_slice(&b[4..]);
    buf[19..23].copy_from_slice(&c[..4]);
    buf[24..28].copy_from_slice(&c[4..]);
    buf[28..36].copy_from_slice(&d);
    out.extend_from_slice(&buf);
}

/// The lowercase hex digits of four bytes: each nibble spread into its own byte, then
/// turned into ASCII for all eight at once.
fn hex8(bytes: [u8; 4]) -> [u8; 8] {
    let x = u64::from(u32::from_be_bytes(bytes));
    let x = ((x & 0xFFFF_0000) << 16) | (x & 0xFFFF);
    let x = ((x & 0x0000_FF00_0000_FF00) << 8) | (x & 0x0000_00FF_0000_00FF);
    let x = ((x & 0x00F0_00F0_00F0_00F0) << 4) | (x & 0x000F_000F_000F_000F);
    // digits above 9 get the distance from '9'+1 to 'a'
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_be_bytes()
}

pub fn uuid_string(id: &[u8; 16]) -> String {
    let mut out = Vec::with_capacity(36);
    write_uuid(&mut out, id);
    // write_uuid emits only ASCII hex digits and hyphens
    String::from_utf8(out).unwrap_or_default()
}

/// RFC 3339 in UTC with microseconds: `2025-10-02T13:58:33.001748Z`.
/// Civil-from-days is Howard Hinnant's algorithm; the filter's dependency budget has no
/// room for a date crate, and this is the only date arithmetic it needs.
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
            frac[2 * i..2 * i + 2].copy_from_slice(&DIGIT_PAIRS[2 * pair..2 * pair + 2]);
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
    fn query_and_fragment_are_stripped() {
        assert_eq!(strip_query(b"/a/b?x=1&y=2"), b"/a/b");
        assert_eq!(strip_query(b"/a#frag"), b"/a");
        assert_eq!(strip_query(b"/plain"), b"/plain");
        assert_eq!(strip_query(b"?only"), b"");
    }

    #[test]
    fn exclusion_is_by_prefix() {
        let p = vec!["/health".to_string(), "/admin/".to_string()];
        assert!(is_excluded(b"/healthz", &p));
        assert!(is_excluded(b"/admin/users", &p));
        assert!(!is_excluded(b"/api/health", &p));
        assert!(!is_excluded(b"/admin", &p));
    }

    #[test]
    fn key_modes() {
        assert_eq!(apply_key_mode("abc123".into(), KeyMode::Raw), "abc123");
        assert_eq!(
            apply_key_mode("abc".into(), KeyMode::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(apply_key_mode("abcdefgh".into(), KeyMode::Redact), "abcd…");
        assert_eq!(apply_key_mode("ab".into(), KeyMode::Redact), "ab…");
        // characters, not bytes: never cuts a UTF-8 sequence
        assert_eq!(apply_key_mode("ключ-123".into(), KeyMode::Redact), "ключ…");
    }

    #[test]
    fn success_and_billable() {
        let mut e = Event::default();
        for (code, ok, bill) in [
            (0, false, false),
            (199, false, false),
            (200, true, true),
            (204, true, true),
            (301, false, true),
            (404, false, true),
            (499, false, true),
            (500, false, false),
        ] {
            e.status_code = code;
            assert_eq!((e.success(), e.billable()), (ok, bill), "{code}");
        }
    }

    #[test]
    fn statuses_parse_or_become_zero() {
        assert_eq!(parse_status(b"200"), 200);
        assert_eq!(parse_status(b" 404 "), 404);
        assert_eq!(parse_status(b"999"), 999);
        assert_eq!(parse_status(b""), 0);
        assert_eq!(parse_status(b"abc"), 0);
        assert_eq!(parse_status(b"-1"), 0);
        assert_eq!(parse_status(b"99999999999"), 0);
    }

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

    #[test]
    fn uuid_formatting_matches_the_uuid_crate() {
        let edges = [[0u8; 16], [0xff; 16], [0x9a; 16], [0xa9; 16]];
        let seeded = (0u8..50).map(|seed| -> [u8; 16] {
            std::array::from_fn(|i| seed.wrapping_mul(37).wrapping_add(i as u8 * 11))
        });
        for bytes in edges.into_iter().chain(seeded) {
            let mut ours = Vec::new();
            write_uuid(&mut ours, &bytes);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
            );
        }
    }

    #[test]
    fn uuid_v7_is_time_ordered_and_versioned() {
        let a = uuid::Uuid::from_bytes(uuid_v7(1_000, &[7; 10]));
        let b = uuid::Uuid::from_bytes(uuid_v7(2_000, &[0; 10]));
        assert_eq!(a.get_version_num(), 7);
        assert!(a < b);
        let mut s = Vec::new();
        write_uuid(&mut s, a.as_bytes());
        assert_eq!(s.len(), 36);
        assert_eq!(
            uuid::Uuid::parse_str(std::str::from_utf8(&s).unwrap()).unwrap(),
            a
        );
        assert_eq!(
            uuid::Uuid::from_bytes(uuid_v4([9; 16])).get_version_num(),
            4
        );
    }
}
