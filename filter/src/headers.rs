//! A header map as the host hands it over in one read: proxy-wasm's serialized form (a count,
//! then each name and value length, then each name and value followed by a NUL). One map
//! read costs the host less than three single-header reads, so capture takes the whole
//! request map once and finds what it needs here, without copying.

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
        let want = name.as_bytes();
        self.pairs()
            .find(|(n, _)| self.bytes.get(n.clone()) == Some(want))
            .map(|(_, v)| v)
    }

    /// The first value of each of `names`, in one pass over the map.
    pub fn find_each<const N: usize>(&self, names: [&str; N]) -> [Option<Range<usize>>; N] {
        let mut out: [Option<Range<usize>>; N] = std::array::from_fn(|_| None);
        let mut left = N;
        for (n, v) in self.pairs() {
            let name = self.slice(&n);
            for (i, want) in names.iter().enumerate() {
                if out[i].is_none() && want.as_bytes() == name {
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
        let nl = u32_at(self.b, self.size_at)?;
        let vl = u32_at(self.b, self.size_at + 4)?;
        self.size_at += 8;
        let name = self.data_at..self.data_at.checked_add(nl)?;
        let value_at = name.end.checked_add(1)?;
        let value = value_at..value_at.checked_add(vl)?;
        let next = value.end.checked_add(1)?;
        if next > self.b.len() {
            self.left = 0;
            return None;
        }
        self.data_at = next;
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
