//! A header map as the host hands it over in one read: proxy-wasm's serialized form (a count,
//! then each name and value length, then each name and value followed by a NUL). One map
//! read costs the host less than three single-header reads, so capture takes the whole
//! request map once and finds what it needs here, without copying.

use crate::swar;
use std::ops::Range;

/// A serialized header map, kept whole; lookups return byte ranges into it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    bytes: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

impl HeaderMap {
    pub fn new(bytes: Vec<u8>) -> Self {
        HeaderMap { bytes }
    }

    /// Every (name, value) as ranges into the bytes, in order; a malformed map yields what
    /// parsed before the damage.
    pub fn pairs(&self) -> Pairs<'_> {
        let b = &self.bytes;
        let count = u32_at(b, 0).unwrap_or(0);
        // each pair needs 8 bytes of sizes: a hostile count cannot make this run long
        let count = count.min(b.len() / 8);
        Pairs {
            b,
            left: count,
            size_at: 4,
            data_at: 4 + count * 8,
        }
    }

    /// The first value of `name` (Envoy's single-header read returns the first too).
    pub fn find(&self, name: &str) -> Option<Range<usize>> {
        let [v] = self.find_each([name]);
        v
    }

    /// The first value of each of `names`, in one pass over the map. Names are compared by
    /// `swar::equal`: with core's `memcmp` (a byte loop in wasm) and the pair iterator's
    /// checks, this pass was ~1,500 instructions of a request's ~9,000.
    pub fn find_each<const N: usize>(&self, names: [&str; N]) -> [Option<Range<usize>>; N] {
        let mut out: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
        let mut left = N;
        for (n, v) in self.pairs() {
            let name = self.slice(&n);
            for (i, want) in names.iter().enumerate() {
                if out[i].is_none() && swar::equal(want.as_bytes(), name) {
                    out[i] = Some(v.clone());
                    left -= 1;
                }
            }
            if left == 0 {
                break;
            }
        }
        out
    }

    pub fn slice(&self, r: &Range<usize>) -> &[u8] {
        self.bytes.get(r.clone()).unwrap_or_default()
    }
}

pub struct Pairs<'a> {
    b: &'a [u8],
    left: usize,
    size_at: usize,
    data_at: usize,
}

impl Iterator for Pairs<'_> {
    type Item = (Range<usize>, Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let sizes = self.b.get(self.size_at..self.size_at + 8)?;
        let nl = u32::from_le_bytes([sizes[0], sizes[1], sizes[2], sizes[3]]) as u64;
        let vl = u32::from_le_bytes([sizes[4], sizes[5], sizes[6], sizes[7]]) as u64;
        self.size_at += 8;
        // in u64: two sizes from the host cannot overflow it, and one check covers the pair
        let at = self.data_at as u64;
        if at + nl + vl + 2 > self.b.len() as u64 {
            self.left = 0;
            return None;
        }
        let (nl, vl) = (nl as usize, vl as usize);
        let name = self.data_at..self.data_at + nl;
        let value = name.end + 1..name.end + 1 + vl;
        self.data_at = value.end + 1;
        Some((name, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::callout::serialize_map;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        HeaderMap::new(serialize_map(pairs))
    }

    #[test]
    fn finds_the_first_value_of_a_name() {
        let m = map(&[
            (":path", "/a?b"),
            ("x-key", "k1"),
            ("x-key", "k2"),
            ("e", ""),
        ]);
        let v = m.find("x-key").unwrap();
        assert_eq!(m.slice(&v), b"k1");
        assert_eq!(m.slice(&m.find(":path").unwrap()), b"/a?b");
        assert_eq!(m.slice(&m.find("e").unwrap()), b"");
        assert!(m.find("x-ke").is_none());
        let [p, k, none] = m.find_each([":path", "x-key", "nope"]);
        assert_eq!(
            (m.slice(&p.unwrap()), m.slice(&k.unwrap()), none),
            (&b"/a?b"[..], &b"k1"[..], None)
        );
        assert_eq!(m.pairs().count(), 4);
    }

    #[test]
    fn a_long_name_is_found_among_others_of_its_length() {
        let m = map(&[("x-subscription-kez", "no"), ("x-subscription-key", "k")]);
        let [k] = m.find_each(["x-subscription-key"]);
        assert_eq!(m.slice(&k.unwrap()), b"k");
    }

    #[test]
    fn damaged_maps_yield_what_parsed_before_the_damage() {
        let whole = map(&[("a", "1"), ("b", "2")]);
        let mut cut = whole.bytes.clone();
        cut.truncate(cut.len() - 1);
        let m = HeaderMap::new(cut);
        assert_eq!(m.pairs().count(), 1);
        assert!(m.find("b").is_none());
        assert!(HeaderMap::new(vec![]).find("a").is_none());
        assert!(HeaderMap::new(vec![0xff; 3]).find("a").is_none());
        let mut huge = vec![0xff, 0xff, 0xff, 0x7f];
        huge.extend_from_slice(&[0xff; 64]);
        assert!(HeaderMap::new(huge).find("a").is_none());
    }
}
