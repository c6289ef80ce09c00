//! The filter's counters and their publication as host metrics.
//!
//! Counting happens in plain fields on the hot path; the root context publishes the change
//! since the last publication on each tick and at shutdown, so a request costs no metric
//! host call.

use crate::dispatch::Outcome;

/// Metric names exactly as README lists them (Envoy shows them as `wasmcustom.<name>`).
pub const NAMES: [&str; COUNT] = [
    "usage_filter.events_captured",
    "usage_filter.events_delivered",
    "usage_filter.events_dropped_buffer_full",
    "usage_filter.events_dropped_send_failed",
    "usage_filter.batches_sent",
    "usage_filter.batches_failed",
    "usage_filter.batch_retries",
    "usage_filter.buffer_events",
    "usage_filter.callouts_refused",
    "usage_filter.llm_unpriced",
    "usage_filter.llm_requests_unmodified",
    "usage_filter.events_dropped_rejected",
];

/// How many metrics there are.
pub const COUNT: usize = 12;

/// Index of the one gauge in `NAMES`; the rest are counters.
pub const GAUGE: usize = 7;
/// Index of `usage_filter.callouts_refused` in `NAMES`.
pub const CALLOUTS_REFUSED: usize = 8;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub captured: u64,
    /// Written to the log (log-only) or acknowledged with 2xx by the collector (http).
    pub delivered: u64,
    pub dropped_buffer_full: u64,
    pub dropped_send_failed: u64,
    /// Single events the collector refused for their content (400, 413, 422), alone.
    pub dropped_rejected: u64,
    /// Batches acknowledged with 2xx.
    pub batches_sent: u64,
    /// Batches given up: rejected (4xx) or out of attempts.
    pub batches_failed: u64,
    /// Failed attempts that were scheduled again.
    pub batch_retries: u64,
    /// Callouts the host refused to start (an unknown cluster): each also a failed attempt.
    pub callouts_refused: u64,
    /// Responses with token counts whose model `llm.prices` (when set) does not price.
    pub llm_unpriced: u64,
    /// `llm.force_stream_usage` requests it could not change (too large, not JSON).
    pub llm_requests_unmodified: u64,
}

impl Counters {
    /// What a batch's outcome means for the books.
    pub fn record(&mut self, outcome: &Outcome) {
        match *outcome {
            Outcome::Delivered { events } => {
                self.delivered += events as u64;
                self.batches_sent += 1;
            }
            Outcome::Rejected { events, .. } | Outcome::Exhausted { events, .. } => {
                self.dropped_send_failed += events as u64;
                self.batches_failed += 1;
            }
            Outcome::RejectedEvent { .. } => {
                self.dropped_rejected += 1;
                self.batches_failed += 1;
            }
            // Its events are still held, in the two halves.
            Outcome::Split { .. } => {}
            Outcome::Retrying { .. } => self.batch_retries += 1,
            Outcome::Unknown => {}
        }
    }

    pub fn add(&self, o: &Counters) -> Counters {
        Counters {
            captured: self.captured + o.captured,
            delivered: self.delivered + o.delivered,
            dropped_buffer_full: self.dropped_buffer_full + o.dropped_buffer_full,
            dropped_send_failed: self.dropped_send_failed + o.dropped_send_failed,
            dropped_rejected: self.dropped_rejected + o.dropped_rejected,
            batches_sent: self.batches_sent + o.batches_sent,
            batches_failed: self.batches_failed + o.batches_failed,
            batch_retries: self.batch_retries + o.batch_retries,
            callouts_refused: self.callouts_refused + o.callouts_refused,
            llm_unpriced: self.llm_unpriced + o.llm_unpriced,
            llm_requests_unmodified: self.llm_requests_unmodified + o.llm_requests_unmodified,
        }
    }

    pub fn values(&self, buffered: u64) -> [u64; COUNT] {
        [
            self.captured,
            self.delivered,
            self.dropped_buffer_full,
            self.dropped_send_failed,
            self.batches_sent,
            self.batches_failed,
            self.batch_retries,
            buffered,
            self.callouts_refused,
            self.llm_unpriced,
            self.llm_requests_unmodified,
            self.dropped_rejected,
        ]
    }
}

/// What has been published so far; `changes` yields the signed change of each value since.
/// The gauge is published by increment too: every worker VM and the singleton service
/// define the same metric, and Envoy sums their increments into one value, where a
/// `record` from each VM would overwrite the others.
#[derive(Debug, Default)]
pub struct Published {
    last: [u64; COUNT],
}

impl Published {
    pub fn changes(&mut self, now: [u64; COUNT]) -> Vec<(usize, i64)> {
        let mut out = Vec::new();
        for (i, (n, last)) in now.iter().zip(self.last.iter_mut()).enumerate() {
            if n != last {
                out.push((i, *n as i64 - *last as i64));
                *last = *n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_signed_changes() {
        let mut p = Published::default();
        let mut c = Counters {
            captured: 5,
            delivered: 3,
            ..Default::default()
        };
        assert_eq!(p.changes(c.values(2)), vec![(0, 5), (1, 3), (7, 2)]);
        assert_eq!(p.changes(c.values(2)), vec![]);
        c.captured = 7;
        assert_eq!(p.changes(c.values(0)), vec![(0, 2), (7, -2)]);
    }
}
