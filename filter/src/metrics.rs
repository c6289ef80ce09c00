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

/// What has been published so far, by metric name; `changes` yields the signed change of
/// each value since. The gauge is published by increment too: every worker VM and the
/// singleton service define the same metric, and Envoy sums their increments into one value,
/// where a `record` from each VM would overwrite the others.
#[derive(Debug, Default)]
pub struct Published {
    /// name -> (the host's metric id, the value last published). Sorted by name: at most
    /// 3 + 8 × 9 metrics, looked up once per tick each.
    last: std::collections::BTreeMap<String, (Option<u32>, u64)>,
}

impl Published {
    /// Whether `name` has its metric id already.
    pub fn defined(&self, name: &str) -> bool {
        self.last.contains_key(name)
    }

    pub fn define(&mut self, name: String, id: Option<u32>) {
        self.last.entry(name).or_insert((id, 0));
    }

    /// The change of each defined metric whose value moved, as (id, delta). `now` holds
    /// every metric's value by name; a name met twice (two deliveries) is summed.
    pub fn changes<'a>(&mut self, now: impl Iterator<Item = (&'a str, u64)>) -> Vec<(u32, i64)> {
        let mut sums: std::collections::BTreeMap<&str, u64> = Default::default();
        for (name, v) in now {
            *sums.entry(name).or_default() += v;
        }
        let mut out = Vec::new();
        for (name, (id, last)) in self.last.iter_mut() {
            let n = sums.get(name.as_str()).copied().unwrap_or(0);
            if n != *last {
                if let Some(id) = id {
                    out.push((*id, n as i64 - *last as i64));
                }
                *last = n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(c: &Counters, buffered: u64) -> Vec<(&'static str, u64)> {
        NAMES.iter().copied().zip(c.values(buffered)).collect()
    }

    #[test]
    fn publishes_signed_changes() {
        let mut p = Published::default();
        for (i, n) in NAMES.iter().enumerate() {
            p.define(n.to_string(), Some(i as u32));
        }
        let mut c = Counters {
            captured: 5,
            delivered: 3,
            ..Default::default()
        };
        let sorted = |v: Vec<(u32, i64)>| {
            let mut v = v;
            v.sort();
            v
        };
        assert_eq!(
            sorted(p.changes(all(&c, 2).into_iter())),
            vec![(0, 5), (1, 3), (7, 2)]
        );
        assert_eq!(p.changes(all(&c, 2).into_iter()), vec![]);
        c.captured = 7;
        assert_eq!(
            sorted(p.changes(all(&c, 0).into_iter())),
            vec![(0, 2), (7, -2)]
        );
    }

    #[test]
    fn a_name_met_twice_is_summed_and_a_destination_names_its_metrics() {
        assert_eq!(name(1, None), "usage_filter.events_delivered");
        assert_eq!(
            name(1, Some("billing")),
            "usage_filter.billing.events_delivered"
        );
        let mut p = Published::default();
        p.define(name(1, Some("a")), Some(7));
        let now = [
            ("usage_filter.a.events_delivered", 2),
            ("usage_filter.a.events_delivered", 3),
        ];
        assert_eq!(p.changes(now.into_iter()), vec![(7, 5)]);
    }
}
