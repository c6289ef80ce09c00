//! Randomness for event ids, batch ids and jitter, drawn from WASI `random_get` through
//! getrandom in blocks, so that an event costs no host call for its id.

use crate::dispatch::Random;

pub struct Pool {
    buf: [u8; 1024],
    pos: usize,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            buf: [0; 1024],
            pos: 1024,
        }
    }
}

impl Pool {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        if self.pos + N > self.buf.len() {
            if getrandom::fill(&mut self.buf).is_err() {
                // No entropy from the host: stretch what the buffer held rather than trap.
                for (i, b) in self.buf.iter_mut().enumerate() {
                    *b = b.wrapping_mul(31).wrapping_add(i as u8) ^ 0x5a;
                }
            }
            self.pos = 0;
        }
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }

    pub fn bytes10(&mut self) -> [u8; 10] {
        self.take::<10>()
    }
}

impl Random for Pool {
    fn bytes16(&mut self) -> [u8; 16] {
        self.take::<16>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_differ() {
        let mut p = Pool::default();
        let draws: Vec<[u8; 10]> = (0..500).map(|_| p.bytes10()).collect();
        let mut uniq = draws.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), draws.len());
    }
}
