//! The batch policy (when the waiting events become a batch) and the batch itself.

use crate::config::Http;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub batch_size: usize,
    pub max_batch_bytes: usize,
    pub flush_interval_ms: u64,
}

impl Policy {
    pub fn from_config(h: &Http) -> Self {
        Policy {
            batch_size: h.batch_size,
            max_batch_bytes: h.max_batch_bytes,
            flush_interval_ms: h.flush_interval_ms,
        }
    }

    /// Whether the waiting events should be cut into a batch now: enough events, enough
    /// bytes, the oldest has waited long enough, or everything must go (shutdown).
    pub fn due(
        &self,
        waiting: usize,
        bytes: usize,
        oldest_ms: Option<u64>,
        now_ms: u64,
        flushing: bool,
    ) -> bool {
        let Some(oldest) = oldest_ms else {
            return false;
        };
        waiting >= self.batch_size
            || bytes >= self.max_batch_bytes
            || now_ms.saturating_sub(oldest) >= self.flush_interval_ms
            || flushing
    }
}

/// One batch: its events and its id. The body is encoded for each attempt and is the same
/// bytes every time; keeping events rather than bodies means a retrying batch holds each
/// event once, and bodies live only for the callout that sends them (flat memory in an
/// outage, tested).
#[derive(Debug, Clone)]
pub struct Batch {
    pub id: [u8; 16],
    pub events: Vec<crate::record::Record>,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be sent before this time (ms).
    pub not_before_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_trigger_on_its_own() {
        let p = Policy {
            batch_size: 10,
            max_batch_bytes: 1000,
            flush_interval_ms: 500,
        };
        assert!(!p.due(0, 0, None, 10_000, true), "nothing waiting");
        assert!(!p.due(9, 900, Some(100), 599, false));
        assert!(p.due(10, 10, Some(100), 100, false), "count");
        assert!(p.due(1, 1000, Some(100), 100, false), "bytes");
        assert!(p.due(1, 1, Some(100), 600, false), "time");
        assert!(p.due(1, 1, Some(100), 100, true), "flush");
    }
}
