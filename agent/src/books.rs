//! Which entries' events are still only in the filter's memory, and so how far the read
//! position of each file may be saved: a hard kill then loses nothing, it only repeats
//! entries (with the same event ids, so receivers drop them).
//!
//! An entry is resolved when
//! - it made no event (its stream drew no event-id bytes);
//! - its event id was in a callout body the collector answered 2xx, or the agent wrote the
//!   refused batch to `--dead-letter`, or counted it lost;
//! - the filter refused its event because the buffer was full (counted lost). Entries are
//!   run in groups between two ticks with no callout answer fed in between, so within a
//!   group the buffer only fills: if `events_dropped_buffer_full` rose by d over the group,
//!   its last d event-making entries were the dropped ones;
//! - the filter holds no event at all (`buffer_events` 0 after a tick, no callout in
//!   flight): then everything read so far is resolved.
//!
//! The pending set is bounded by `cap` (set above the filter's `buffer_size`, which bounds
//! what can really be in memory): beyond it the oldest entries are forgotten and counted.

use crate::fingerprint::Fp;
use crate::follow::Position;
use rustc_hash::FxHashMap;
use std::collections::{BTreeMap, HashMap};

struct Pending {
    pos: Option<Position>,
    id: u128,
}

pub struct Books {
    next_seq: u64,
    pending: BTreeMap<u64, Pending>,
    /// Fx-hashed: every entry read inserts here and every delivered event removes.
    by_id: FxHashMap<u128, u64>,
    /// Event-making entries since the last tick, in order.
    group: Vec<u64>,
    cap: usize,
    /// Entries given up on because the pending set was full.
    pub forgotten: u64,
}

impl Books {
    pub fn new(cap: usize) -> Self {
        Books {
            next_seq: 0,
            pending: BTreeMap::new(),
            by_id: FxHashMap::default(),
            group: Vec::new(),
            cap: cap.max(1),
            forgotten: 0,
        }
    }

    /// An entry was run. `start`: where it begins (None for entries that cannot be read
    /// again, from `--listen`); `event`: its event id when it made one.
    pub fn read(&mut self, start: Option<Position>, event: Option<u128>) {
        let Some(id) = event else { return };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(seq, Pending { pos: start, id });
        if let Some(old) = self.by_id.insert(id, seq) {
            // The same entry read twice (from a copy): one id, one event.
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

    fn resolve(&mut self, seq: u64) {
        if let Some(p) = self.pending.remove(&seq) {
            self.by_id.remove(&p.id);
        }
    }

    /// The event is no longer only in memory (delivered, or written aside). False when it
    /// was not pending.
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

    /// For each file, the start of its oldest entry whose event is still only in memory.
    pub fn oldest_pending(&self) -> HashMap<Fp, u64> {
        let mut out: HashMap<Fp, u64> = HashMap::new();
        for p in self.pending.values() {
            if let Some(pos) = p.pos {
                let o = out.entry(pos.fp).or_insert(pos.offset);
                *o = (*o).min(pos.offset);
            }
        }
        out
    }

    /// Entries whose events are only in memory.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(fp: Fp, offset: u64) -> Option<Position> {
        Some(Position { fp, offset })
    }

    fn books_with(n: u64) -> Books {
        // Entries at offsets 0,10,20… of file 1; entry i makes event id 100+i when i is even.
        let mut b = Books::new(1000);
        for i in 0..n {
            let ev = (i % 2 == 0).then_some(100 + i as u128);
            b.read(at(1, i * 10), ev);
        }
        b
    }

    fn oldest(b: &Books) -> Option<u64> {
        b.oldest_pending().get(&1).copied()
    }

    #[test]
    fn the_safe_offset_stops_at_the_oldest_event_in_memory() {
        let mut b = books_with(6);
        assert_eq!(oldest(&b), Some(0));
        assert!(b.delivered(100));
        assert_eq!(oldest(&b), Some(20));
        assert!(b.delivered(104));
        assert_eq!(oldest(&b), Some(20));
        assert!(b.delivered(102));
        assert_eq!(oldest(&b), None);
        assert!(!b.delivered(102));
        assert_eq!(b.pending(), 0);
    }

    #[test]
    fn each_file_has_its_own_oldest_entry() {
        let mut b = Books::new(100);
        b.read(at(1, 50), Some(1));
        b.read(at(2, 0), Some(2));
        b.read(at(2, 30), Some(3));
        assert_eq!(b.oldest_pending(), HashMap::from([(1, 50), (2, 0)]));
        b.delivered(2);
        b.delivered(1);
        assert_eq!(b.oldest_pending(), HashMap::from([(2, 30)]));
    }

    #[test]
    fn buffer_full_drops_resolve_the_last_events_of_the_group() {
        let mut b = books_with(6); // events 100, 102, 104
        b.tick(2, false);
        assert_eq!(b.pending(), 1);
        assert_eq!(oldest(&b), Some(0));
        assert!(b.delivered(100));
        assert_eq!(oldest(&b), None);
        // A new group: only its own entries can be the dropped ones.
        b.read(at(1, 60), Some(7));
        b.read(at(1, 70), Some(8));
        b.tick(1, false);
        assert_eq!(oldest(&b), Some(60));
        b.tick(5, false);
        assert_eq!(oldest(&b), Some(60));
    }

    #[test]
    fn a_quiet_filter_resolves_everything() {
        let mut b = books_with(6);
        b.tick(0, true);
        assert_eq!(b.pending(), 0);
        assert!(b.oldest_pending().is_empty());
    }

    #[test]
    fn entries_without_a_position_do_not_hold_the_file_back() {
        let mut b = Books::new(10);
        b.read(None, Some(1));
        assert!(b.oldest_pending().is_empty());
        b.read(at(1, 10), Some(2));
        assert_eq!(oldest(&b), Some(10));
    }

    #[test]
    fn the_pending_set_is_bounded() {
        let mut b = Books::new(3);
        for i in 0..10u64 {
            b.read(at(1, i), Some(i as u128));
        }
        assert_eq!(b.pending(), 3);
        assert_eq!(b.forgotten, 7);
        assert_eq!(oldest(&b), Some(7));
        assert!(!b.delivered(0));
        assert!(b.delivered(9));
    }
}
