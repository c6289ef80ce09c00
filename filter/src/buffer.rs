//! The bounded buffer: every event the http sink holds, waiting in the queue or inside a
//! batch that is in flight or waiting to be retried. Full means the newest event is refused.

use crate::record::Record;
use std::collections::VecDeque;

#[derive(Debug)]
pub struct Buffer {
    capacity: usize,
    waiting: VecDeque<(Record, u64)>,
    waiting_bytes: usize,
    /// Events taken out into batches that are not yet delivered or dropped.
    in_batches: usize,
}

impl Buffer {
    pub fn new(capacity: usize) -> Self {
        Buffer {
            capacity,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            in_batches: 0,
        }
    }

    /// Every event held, waiting or in a batch: the `buffer_events` gauge.
    pub fn held(&self) -> usize {
        self.waiting.len() + self.in_batches
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn waiting_bytes(&self) -> usize {
        self.waiting_bytes
    }

    pub fn oldest_ms(&self) -> Option<u64> {
        self.waiting.front().map(|(_, t)| *t)
    }

    /// Holds the event, or hands it back when the buffer is full.
    pub fn push(&mut self, e: Record, now_ms: u64) -> Result<(), Record> {
        if self.held() >= self.capacity {
            return Err(e);
        }
        self.waiting_bytes += e.weight();
        self.waiting.push_back((e, now_ms));
        Ok(())
    }

    /// Takes the oldest events, up to `max_events` and `max_bytes` (always at least one).
    /// They stay counted as held until `release`.
    pub fn take(&mut self, max_events: usize, max_bytes: usize) -> Vec<Record> {
        let mut out = Vec::with_capacity(max_events.min(self.waiting.len()));
        let mut bytes = 0;
        while out.len() < max_events {
            let Some((front, _)) = self.waiting.front() else {
                break;
            };
            let w = front.weight();
            if !out.is_empty() && bytes + w > max_bytes {
                break;
            }
            bytes += w;
            if let Some((e, _)) = self.waiting.pop_front() {
                out.push(e);
            }
        }
        self.waiting_bytes -= bytes;
        self.in_batches += out.len();
        out
    }

    /// The waiting events, oldest first, without taking them.
    pub fn waiting_events(&self) -> impl Iterator<Item = &Record> + Clone {
        self.waiting.iter().map(|(e, _)| e)
    }

    /// Forgets the `n` oldest waiting events: they left by another way (a shared-queue
    /// hand-over).
    pub fn discard_waiting(&mut self, n: usize) {
        for _ in 0..n {
            if let Some((e, _)) = self.waiting.pop_front() {
                self.waiting_bytes -= e.weight();
            }
        }
    }

    /// A batch of `n` events left the buffer (delivered or dropped).
    pub fn release(&mut self, n: usize) {
        self.in_batches = self.in_batches.saturating_sub(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(n: usize) -> Record {
        // weight = strings + 300
        Record::from_event(&crate::event::Event {
            api_path: "x".repeat(n).into(),
            ..Default::default()
        })
    }

    #[test]
    fn refuses_the_newest_when_full_counting_batches() {
        let mut b = Buffer::new(3);
        for i in 0..3 {
            assert!(b.push(ev(10), i).is_ok());
        }
        assert!(b.push(ev(10), 3).is_err());
        let batch = b.take(2, usize::MAX);
        assert_eq!(batch.len(), 2);
        // still held while the batch is out
        assert_eq!(b.held(), 3);
        assert!(b.push(ev(10), 4).is_err());
        b.release(2);
        assert_eq!(b.held(), 1);
        assert!(b.push(ev(10), 5).is_ok());
    }

    #[test]
    fn take_respects_count_and_bytes_but_always_takes_one() {
        let mut b = Buffer::new(100);
        for _ in 0..10 {
            b.push(ev(100), 0).unwrap();
        }
        // each weighs its 100 bytes of strings plus 300 for what surrounds them
        assert_eq!(b.waiting_bytes(), 4000);
        assert_eq!(b.take(4, usize::MAX).len(), 4);
        assert_eq!(b.take(100, 1000).len(), 2);
        assert_eq!(b.take(100, 1).len(), 1);
        assert_eq!(b.waiting(), 3);
        assert_eq!(b.waiting_bytes(), 1200);
    }
}
