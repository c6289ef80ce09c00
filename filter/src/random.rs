//! Randomness for event ids, batch ids and jitter, drawn from WASI `random_get` through
//! getrandom in blocks, so that an event costs no host call for its id.
//!
//! A host that replays requests (the Caddy agent re-reading its log after a restart) needs
//! the same request to get the same event id. It asks, through the VM configuration, for
//! one draw per event id: then each event's 10 random bytes come from one `random_get` of
//! exactly 10 bytes made in that stream's `on_log`, which the host can answer per request.

/// A source of randomness for batch ids and jitter.
pub trait Random {
    fn bytes16(&mut self) -> [u8; 16];
    fn u64(&mut self) -> u64 {
        let b = self.bytes16();
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_le_bytes(a)
    }
}

pub struct Pool {
    buf: [u8; 1024],
    pos: usize,
    per_event: bool,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            buf: [0; 1024],
            pos: 1024,
            per_event: false,
        }
    }
}

impl Pool {
    /// Each event id gets its own draw from the host (see the module comment).
    pub fn per_event() -> Self {
        Pool {
            per_event: true,
            ..Pool::default()
        }
    }

    /// The random part of an event id.
    pub fn event_id_bytes(&mut self) -> [u8; 10] {
        let mut out = [0u8; 10];
        if self.per_event && getrandom::fill(&mut out).is_ok() {
            return out;
        }
        self.take::<10>()
    }

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
        let draws: Vec<[u8; 10]> = (0..500).map(|_| p.event_id_bytes()).collect();
        let mut uniq = draws.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), draws.len());
    }
}
