//! A small seeded generator (splitmix64): the campaign must repeat from its printed seed and
//! a binary cannot use the crate's dev-dependencies.

/// splitmix64's increment.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    /// The draw at `index` (from 0) of the generator seeded with `seed`, without the draws
    /// before it (splitmix64's state moves by a constant at each draw).
    pub fn nth(seed: u64, index: u64) -> u64 {
        Rng(seed.wrapping_add(GAMMA.wrapping_mul(index))).next_u64()
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GAMMA);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// 0..n (0 when n is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
    /// lo..=hi
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    /// Mostly small, sometimes up to `max`: sizes spread over orders of magnitude.
    pub fn size(&mut self, max: u64) -> u64 {
        let bits = 64 - max.leading_zeros() as u64;
        let b = self.below(bits + 1);
        self.below((1u64 << b).min(max + 1))
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let x = self.next_u64().to_le_bytes();
            let k = (n - out.len()).min(8);
            out.extend_from_slice(&x[..k]);
        }
        out
    }
    /// Bytes that are mostly header-like text, sometimes anything.
    pub fn text_bytes(&mut self, n: usize) -> Vec<u8> {
        match self.below(4) {
            0 => self.bytes(n),
            _ => {
                const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_/.?=&%:;, \"\\{}";
                (0..n).map(|_| *self.pick(A)).collect()
            }
        }
    }
    pub fn string(&mut self, n: usize) -> String {
        String::from_utf8_lossy(&self.text_bytes(n)).into_owned()
    }
    /// A string of `size(max)` characters.
    pub fn string_upto(&mut self, max: u64) -> String {
        let n = self.size(max) as usize;
        self.string(n)
    }
    pub fn text_upto(&mut self, max: u64) -> Vec<u8> {
        let n = self.size(max) as usize;
        self.text_bytes(n)
    }
    pub fn bytes_upto(&mut self, max: u64) -> Vec<u8> {
        let n = self.size(max) as usize;
        self.bytes(n)
    }
    pub fn string_in(&mut self, lo: u64, hi: u64) -> String {
        let n = self.range(lo, hi) as usize;
        self.string(n)
    }
    pub fn text_in(&mut self, lo: u64, hi: u64) -> Vec<u8> {
        let n = self.range(lo, hi) as usize;
        self.text_bytes(n)
    }
}
