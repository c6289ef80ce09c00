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

/// Indices in `NAMES` of what is counted once per event whatever the destinations
/// (captured, and the two `llm` counters); the rest are each destination's own.
pub const PER_EVENT: [usize; 3] = [0, 9, 10];

/// The name of metric `i`: `NAMES[i]` itself, or with the destination's name after the
/// prefix (`usage_filter.<name>.events_delivered`) for a destination of an `http` array.
pub fn name(i: usize, destination: Option<&str>) -> String {
    let plain = NAMES.get(i).copied().unwrap_or_default();
    match (destination, plain.split_once('.')) {
        (Some(d), Some((prefix, rest))) => format!("{prefix}.{d}.{rest}"),
        _ => plain.to_string(),
    }
}

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

/// Every metric defined so far and what was last published of it; `changes` yields the
/// signed change of each value since. A delivery adds its values at the slots its names were
/// given when defined, so a tick compares no names. The gauge is published by increment too:
/// every worker VM and the singleton service define the same metric, and Envoy sums their
/// increments into one value, where a `record` from each VM would overwrite the others.
#[derive(Debug, Default)]
pub struct Published {
    /// (name, the host's metric id, the value last published), append-only: a slot stays
    /// valid for every delivery that was given it.
    entries: Vec<(String, Option<u32>, u64)>,
}

impl Published {
    /// The slot of `name`, if it is defined.
    pub fn slot(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|(n, _, _)| n == name)
    }

    /// Defines `name` with the host's `id` (once), and returns its slot.
    pub fn define(&mut self, name: &str, id: impl FnOnce() -> Option<u32>) -> usize {
        match self.slot(name) {
            Some(i) => i,
            None => {
                self.entries.push((name.to_string(), id(), 0));
                self.entries.len() - 1
            }
        }
    }

    /// How many slots there are: the length of the values `changes` takes.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether slot `i` is the gauge (`buffer_events`, named or not).
    pub fn is_gauge(&self, i: usize) -> bool {
        let gauge = NAMES[GAUGE].trim_start_matches("usage_filter.");
        self.entries
            .get(i)
            .is_some_and(|(n, _, _)| n.ends_with(gauge))
    }

    /// The change of each slot whose value moved, as (metric id, delta); `now` holds each
    /// slot's value (a slot missing from it is 0).
    #[cfg(test)]
    pub fn changes(&mut self, now: &[u64]) -> Vec<(u32, i64)> {
        let mut out = Vec::new();
        self.publish(now, |id, delta| out.push((id, delta)));
        out
    }

    /// Hands `emit` the change of each slot whose value moved (no allocation: a tick's
    /// publication is one pass).
    pub fn publish(&mut self, now: &[u64], mut emit: impl FnMut(u32, i64)) {
        for (i, (_, id, last)) in self.entries.iter_mut().enumerate() {
            let n = now.get(i).copied().unwrap_or(0);
            if n != *last {
                if let Some(id) = id {
                    emit(*id, n as i64 - *last as i64);
                }
                *last = n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_signed_changes() {
        let mut p = Published::default();
        for (i, n) in NAMES.iter().enumerate() {
            assert_eq!(p.define(n, || Some(i as u32)), i);
        }
        assert_eq!(p.define(NAMES[3], || panic!("defined once")), 3);
        let mut c = Counters {
            captured: 5,
            delivered: 3,
            ..Default::default()
        };
        assert_eq!(p.changes(&c.values(2)), vec![(0, 5), (1, 3), (7, 2)]);
        assert_eq!(p.changes(&c.values(2)), vec![]);
        c.captured = 7;
        assert_eq!(p.changes(&c.values(0)), vec![(0, 2), (7, -2)]);
        assert!(p.is_gauge(GAUGE) && !p.is_gauge(0));
    }

    #[test]
    fn a_destination_names_its_metrics() {
        assert_eq!(name(1, None), "usage_filter.events_delivered");
        assert_eq!(
            name(1, Some("billing")),
            "usage_filter.billing.events_delivered"
        );
        let mut p = Published::default();
        let g = p.define(&name(GAUGE, Some("billing")), || None);
        assert!(p.is_gauge(g));
    }
}
