//! Which entries' events are still only in the filter's memory, and so how far the read
//! position may be saved: a hard kill then loses nothing, it only repeats entries (with the
//! same event ids, so receivers drop them).
//!
//! An entry is resolved when
//! - it made no event (its stream drew no event-id bytes);
//! - its event id was in a callout body the collector answered 2xx;
//! - the filter refused its event because the buffer was full. Entries are run in groups
//!   between two ticks with no callout answer fed in between, so within a group the buffer
//!   only fills: if `events_dropped_buffer_full` rose by d over the group, its last d
//!   event-making entries were the dropped ones;
//! - the filter holds no event at all (`buffer_events` 0 after a tick, no callout in
//!   flight): then everything read so far is resolved (this also settles the events of
//!   batches the filter gave up on).
//!
//! The pending set is bounded by `cap` (set above the filter's `buffer_size`, which bounds
//! what can really be in memory): beyond it the oldest entries are forgotten and counted.

use std::collections::{BTreeMap, HashMap};

struct Pending<P> {
    pos: Option<P>,
    id: u128,
}

pub struct Books<P> {
    next_seq: u64,
    pending: BTreeMap<u64, Pending<P>>,
    by_id: HashMap<u128, u64>,
    /// Event-making entries since the last tick, in order.
    group: Vec<u64>,
    read_to: Option<P>,
    cap: usize,
    /// Entries given up on because the pending set was full.
    pub forgotten: u64,
}

impl<P: Clone> Books<P> {
    pub fn new(cap: usize) -> Self {
        Books {
            next_seq: 0,
            pending: BTreeMap::new(),
            by_id: HashMap::new(),
            group: Vec::new(),
            read_to: None,
            cap: cap.max(1),
            forgotten: 0,
        }
    }

    /// An entry was run. `start`/`end`: where it begins and where the next one does (None
    /// for entries that cannot be read again, from `--listen`); `event`: its event id when
    /// it made one.
    pub fn read(&mut self, start: Option<P>, end: Option<P>, event: Option<u128>) {
        if let Some(end) = end {
            self.read_to = Some(end);
        }
        let Some(id) = event else { return };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, Pending { pos: start, id });
        if let Some(old) = self.by_id.insert(id, seq) {
            // The same entry read twice (a copy-truncated file): one id, one event.
            self.pending.remove(&old);
        }
        self.group.push(seq);
        while self.pending.len() > self.cap {
            if let Some((_, p)) = self.pending.pop_first() {
                self.by_id.remove(&p.id);
                self.forgotten += 1;
            }
        }
    }

    /// Moves the read position without an entry (a malformed line, skipped).
    pub fn skipped(&mut self, end: P) {
        self.read_to = Some(end);
    }

    fn resolve(&mut self, seq: u64) {
        if let Some(p) = self.pending.remove(&seq) {
            self.by_id.remove(&p.id);
        }
    }

    /// The collector acknowledged an event.
    pub fn delivered(&mut self, id: u128) -> bool {
        match self.by_id.remove(&id) {
            Some(seq) => {
                self.pending.remove(&seq);
                true
            }
            None => false,
        }
    }

    /// A tick ended the group: `dropped` of its events were refused (buffer full); `quiet`
    /// when the filter holds no event and no callout is in flight.
    pub fn tick(&mut self, dropped: u64, quiet: bool) {
        let group = std::mem::take(&mut self.group);
        for &seq in group.iter().rev().take(dropped as usize) {
            self.resolve(seq);
        }
        if quiet {
            self.pending.clear();
            self.by_id.clear();
        }
    }

    /// The position that is safe to save: the start of the oldest entry whose event is
    /// still only in memory, or the end of what was read.
    pub fn safe(&self) -> Option<P> {
        self.pending
            .values()
            .find_map(|p| p.pos.clone())
            .or_else(|| self.read_to.clone())
    }

    /// Entries whose events are only in memory.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn books_with(n: u64) -> Books<u64> {
        // Entries at offsets 0,10,20…; entry i makes event id 100+i when i is even.
        let mut b = Books::new(1000);
        for i in 0..n {
            let ev = (i % 2 == 0).then_some(100 + i as u128);
            b.read(Some(i * 10), Some(i * 10 + 10), ev);
        }
        b
    }

    #[test]
    fn the_safe_offset_stops_at_the_oldest_event_in_memory() {
        let mut b = books_with(6);
        assert_eq!(b.safe(), Some(0));
        assert!(b.delivered(100));
        // Entry 1 made no event; entry 2 is still in memory.
        assert_eq!(b.safe(), Some(20));
        assert!(b.delivered(104));
        assert_eq!(b.safe(), Some(20));
        assert!(b.delivered(102));
        assert_eq!(b.safe(), Some(60));
        assert!(!b.delivered(102));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn buffer_full_drops_resolve_the_last_events_of_the_group() {
        let mut b = books_with(6); // events 100, 102, 104
        b.tick(2, false);
        assert_eq!(b.pending(), 1);
        assert_eq!(b.safe(), Some(0));
        assert!(b.delivered(100));
        assert_eq!(b.safe(), Some(60));
        // A new group: only its own entries can be the dropped ones.
        b.read(Some(60), Some(70), Some(7));
        b.read(Some(70), Some(80), Some(8));
        b.tick(1, false);
        assert_eq!(b.safe(), Some(60));
        b.tick(5, false);
        assert_eq!(b.safe(), Some(60));
    }

    #[test]
    fn a_quiet_filter_resolves_everything() {
        let mut b = books_with(6);
        b.tick(0, true);
        assert_eq!(b.pending(), 0);
        assert_eq!(b.safe(), Some(60));
    }

    #[test]
    fn entries_without_a_position_do_not_hold_the_file_back() {
        let mut b: Books<u64> = Books::new(10);
        b.read(None, None, Some(1));
        b.read(Some(0), Some(10), None);
        assert_eq!(b.safe(), Some(10));
        b.read(Some(10), Some(20), Some(2));
        assert_eq!(b.safe(), Some(10));
    }

    #[test]
    fn the_pending_set_is_bounded() {
        let mut b: Books<u64> = Books::new(3);
        for i in 0..10u64 {
            b.read(Some(i), Some(i + 1), Some(i as u128));
        }
        assert_eq!(b.pending(), 3);
        assert_eq!(b.forgotten, 7);
        assert_eq!(b.safe(), Some(7));
        assert!(!b.delivered(0));
        assert!(b.delivered(9));
    }
}
