//! Byte search eight bytes per step (SWAR: one u64 holds eight bytes): the token scanner's
//! runs through strings and lines, and the encoder's check for bytes JSON must escape. A
//! byte-at-a-time scan cost about four times the fuel, and a fifth of encoding a batch in V8.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte of `s` that is in `set`.
pub(crate) fn find_any<const N: usize>(s: &[u8], set: [u8; N]) -> Option<usize> {
    first(s, set, 0)
}

/// The index of the first byte of `s` that is in `set` or below `n` (`n` <= 128).
pub(crate) fn find_any_or_below<const N: usize>(s: &[u8], set: [u8; N], n: u8) -> Option<usize> {
    first(s, set, n)
}

/// Eight bytes of `c` (at least eight long) as one word.
#[inline(always)]
fn word(c: &[u8]) -> u64 {
    u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
}

/// Whether every byte of `s` is ASCII (below 128): then it is UTF-8 with nothing to check.
/// core's `from_utf8` cost ~150 instructions on a 20-byte header, this a third of that.
pub(crate) fn is_ascii(s: &[u8]) -> bool {
    let mut words = s.chunks_exact(8);
    let mut any = 0u64;
    for c in words.by_ref() {
        any |= word(c);
    }
    let tail = words.remainder().iter().fold(0u8, |a, b| a | b);
    any & HI == 0 && tail < 0x80
}

/// `a == b` for slices of equal length, a word at a time, the last word overlapping (`==` on
/// slices calls core's `memcmp`, a byte loop in wasm). Unequal lengths are unequal.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        // two overlapping u32s for 4..8 bytes
        let half = |s: &[u8], at: usize| {
            s.get(at..at + 4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        };
        return match n {
            4.. => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
            _ => a.iter().zip(b).all(|(x, y)| x == y),
        };
    }
    let at8 = |s: &[u8], at: usize| s.get(at..at + 8).map(word);
    let mut at = 0;
    while at + 8 < n {
        if at8(a, at) != at8(b, at) {
            return false;
        }
        at += 8;
    }
    at8(a, n - 8) == at8(b, n - 8)
}

/// The high bit of each byte of the result flags a byte of `w` below `n` or in `set`. A
/// subtraction's borrow can only flag bytes above a true one, so the lowest flag is exact.
#[inline(always)]
fn flags<const N: usize>(w: u64, set: [u8; N], n: u8) -> u64 {
    let below = |x: u64, n: u8| x.wrapping_sub(LO * u64::from(n)) & !x & HI;
    let mut m = below(w, n);
    for t in set {
        m |= below(w ^ (LO * u64::from(t)), 1);
    }
    m
}

#[inline(always)]
fn first<const N: usize>(s: &[u8], set: [u8; N], n: u8) -> Option<usize> {
    let mut words = s.chunks_exact(8);
    for (k, c) in words.by_ref().enumerate() {
        let m = flags(word(c), set, n);
        if m != 0 {
            return Some(k * 8 + (m.trailing_zeros() / 8) as usize);
        }
    }
    let rest = words.remainder().len();
    if rest == 0 {
        return None;
    }
    let at = s.len() - rest;
    if s.len() >= 8 {
        // the last eight bytes as one word, the ones already checked masked off (padding the
        // rest into a word costs V8 a call to copy; a byte loop costs ~15 instructions a byte)
        let m = flags(word(&s[s.len() - 8..]), set, n) >> (8 * (8 - rest));
        return (m != 0).then(|| at + (m.trailing_zeros() / 8) as usize);
    }
    let hit = |b: &u8| *b < n || set.contains(b);
    s.iter().position(hit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_exactly_when_every_byte_is() {
        for len in 0..24usize {
            let a: Vec<u8> = (0..len).map(|i| b'a' + i as u8).collect();
            assert!(equal(&a, &a.clone()), "{len}");
            assert!(!equal(&a, &a[..len.saturating_sub(1)]) || len == 0, "{len}");
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!equal(&a, &b), "{len} {at}");
            }
        }
    }

    #[test]
    fn ascii_is_what_core_says_it_is() {
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(is_ascii(&plain), "{len}");
            for at in 0..len {
                let mut high = plain.clone();
                high[at] = 0x80 | (at as u8);
                assert!(!is_ascii(&high), "{len} {at}");
                assert_eq!(is_ascii(&high), high.is_ascii());
            }
        }
    }

    #[test]
    fn finds_what_a_byte_scan_finds() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for start in 0..hay.len() {
            for len in [0, 1, 7, 8, 9, 10, 12, 15, 16, 17, 23, 33, 200] {
                let s = &hay[start..(start + len).min(hay.len())];
                for set in [[b'"', b'\\'], [0x80, 0xff], [0, 1], [hay[start], b'x']] {
                    let want = s.iter().position(|b| set.contains(b));
                    assert_eq!(find_any(s, set), want, "{start} {len} {set:?}");
                    for n in [0x20, 0x80] {
                        let want = s.iter().position(|&b| set.contains(&b) || b < n);
                        assert_eq!(
                            find_any_or_below(s, set, n),
                            want,
                            "{start} {len} {set:?} {n}"
                        );
                    }
                }
            }
        }
    }
}
