//! Isolating a refused event: receivers (Veil's platform API, Lago, OpenMeter) refuse a whole
//! batch over one invalid event, so a batch refused for its content is split in halves and
//! each half sent again, down to single events; only the events still refused alone are
//! dropped. And a 413 lowers the batch size for a while, so the next batches fit at once
//! instead of each being split again.
//!
//! Cost: a batch of n events holding k refused ones makes at most `extra_callouts(n, k)`
//! callouts beyond its first (each refused part of more than one event costs two halves;
//! at depth d at most min(k, 2^d) parts hold a refused event). Tested below, stated in
//! docs/delivery.md.

use crate::batch::Batch;
use crate::event::uuid_v4;
use crate::random::Random;

/// Statuses that mean "something in this body is wrong", worth narrowing down. 401 and 403
/// are about the sender, not the content, and other 4xx are not split either.
pub fn splits(status: u32) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// The two halves of a refused batch of two events or more: each a new batch, with its own
/// `x-usage-batch-id` (the receiver never saw these bodies) and its own retry budget, due now.
pub fn halves(mut batch: Batch, now_ms: u64, rng: &mut dyn Random) -> [Batch; 2] {
    let second = batch.events.split_off(batch.events.len() / 2);
    let mut half = |events| Batch {
        id: uuid_v4(rng.bytes16()),
        events,
        attempts: 0,
        not_before_ms: now_ms,
    };
    let a = half(batch.events);
    let b = half(second);
    [a, b]
}

/// How long a 413 keeps the batch size lowered after the last one.
pub const SHRINK_HOLD_MS: u64 = 60_000;

/// The effective batch size after 413s: half the refused batch, kept until `SHRINK_HOLD_MS`
/// pass without a 413, then `batch_size` again.
#[derive(Debug, Default, Clone, Copy)]
pub struct Shrink {
    /// (events per batch at most, until this time in ms).
    limit: Option<(usize, u64)>,
}

impl Shrink {
    pub fn batch_size(&self, configured: usize, now_ms: u64) -> usize {
        match self.limit {
            Some((n, until)) if now_ms < until => n.min(configured),
            _ => configured,
        }
    }

    /// A batch of `events` was too large for the receiver.
    pub fn too_large(&mut self, events: usize, configured: usize, now_ms: u64) {
        let n = (events / 2).max(1).min(self.batch_size(configured, now_ms));
        self.limit = Some((n, now_ms.saturating_add(SHRINK_HOLD_MS)));
    }
}

/// The most callouts a batch of `n` events with `k` refused ones can cost beyond its first,
/// when nothing else fails: two halves per refused part of two events or more. At depth d
/// at most min(k, 2^d) parts hold a refused event, and a tree with n leaves has n−1 inner
/// parts, so min(2·Σ_{d<⌈log2 n⌉} min(k, 2^d), 2·(n−1)): at most 2·k·⌈log2 n⌉. The filter
/// never needs the number; the tests hold the dispatcher to it and docs/delivery.md states it.
#[cfg(test)]
pub fn extra_callouts(n: usize, k: usize) -> usize {
    if k == 0 || n <= 1 {
        return 0;
    }
    let depth = usize::BITS - (n - 1).leading_zeros();
    let by_depth: usize = (0..depth).map(|d| 2 * k.min(1usize << d.min(62))).sum();
    by_depth.min(2 * (n - 1))
}

#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::tests::{ev, Seq};

    #[test]
    fn only_content_refusals_split() {
        assert!(splits(400) && splits(413) && splits(422));
        for s in [401, 403, 404, 409, 415] {
            assert!(!splits(s), "{s}");
        }
    }

    #[test]
    fn halves_keep_every_event_once_in_order_with_new_ids() {
        let mut r = Seq(100);
        let events: Vec<_> = (0..5).map(|_| ev()).collect();
        let b = Batch {
            id: [9; 16],
            events: events.clone(),
            attempts: 2,
            not_before_ms: 0,
        };
        let [a, c] = halves(b, 7, &mut r);
        assert_eq!((a.events.len(), c.events.len()), (2, 3));
        assert_eq!([a.events, c.events].concat(), events);
        assert!(a.id != [9; 16] && c.id != [9; 16] && a.id != c.id);
        assert_eq!((a.attempts, a.not_before_ms), (0, 7));
    }

    #[test]
    fn a_413_halves_the_batch_size_for_a_while() {
        let mut s = Shrink::default();
        assert_eq!(s.batch_size(100, 0), 100);
        s.too_large(100, 100, 1000);
        assert_eq!(s.batch_size(100, 1000), 50);
        s.too_large(50, 100, 2000);
        assert_eq!(s.batch_size(100, 2000), 25);
        // a larger batch refused later (one cut before) does not raise it
        s.too_large(100, 100, 3000);
        assert_eq!(s.batch_size(100, 3000), 25);
        assert_eq!(s.batch_size(100, 3000 + SHRINK_HOLD_MS - 1), 25);
        assert_eq!(s.batch_size(100, 3000 + SHRINK_HOLD_MS), 100);
        s.too_large(1, 100, 0);
        assert_eq!(s.batch_size(100, 0), 1, "never below one");
    }

    #[test]
    fn the_bound() {
        assert_eq!(extra_callouts(1, 1), 0);
        assert_eq!(extra_callouts(2, 1), 2);
        assert_eq!(extra_callouts(100, 1), 14);
        assert_eq!(extra_callouts(100, 0), 0);
        for n in 1..300 {
            for k in 0..=n {
                let b = extra_callouts(n, k);
                assert!(b <= 2 * (n - 1), "{n} {k}");
                let log = (usize::BITS - (n.max(2) - 1).leading_zeros()) as usize;
                assert!(b <= 2 * k * log, "{n} {k}");
            }
        }
    }
}
