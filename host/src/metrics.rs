//! The filter's metrics of the books, named once for every test and tool of the harness. All
//! are counters except `BUFFER_EVENTS`, a gauge. The filter keeps its books so that
//! `EVENTS_CAPTURED = EVENTS_DELIVERED + EVENTS_DROPPED_BUFFER_FULL +
//! EVENTS_DROPPED_SEND_FAILED + EVENTS_DROPPED_REJECTED + BUFFER_EVENTS` (summed over the VMs
//! of a proxy).

pub const EVENTS_CAPTURED: &str = "usage_filter.events_captured";
pub const EVENTS_DELIVERED: &str = "usage_filter.events_delivered";
pub const EVENTS_DROPPED_BUFFER_FULL: &str = "usage_filter.events_dropped_buffer_full";
pub const EVENTS_DROPPED_SEND_FAILED: &str = "usage_filter.events_dropped_send_failed";
/// Single events the collector refused alone (400, 413, 422) after their batch was split.
pub const EVENTS_DROPPED_REJECTED: &str = "usage_filter.events_dropped_rejected";
pub const BATCHES_SENT: &str = "usage_filter.batches_sent";
pub const BATCHES_FAILED: &str = "usage_filter.batches_failed";
pub const BATCH_RETRIES: &str = "usage_filter.batch_retries";
/// A gauge: events held now (buffered or handed over and not yet settled).
pub const BUFFER_EVENTS: &str = "usage_filter.buffer_events";

/// A counter beside the books: callouts the host refused to start (Envoy: BadArgument for a
/// cluster it does not have). Each one is also a failed attempt of its batch.
pub const CALLOUTS_REFUSED: &str = "usage_filter.callouts_refused";

/// The nine of the books, in the order above.
pub const ALL: [&str; 9] = [
    EVENTS_CAPTURED,
    EVENTS_DELIVERED,
    EVENTS_DROPPED_BUFFER_FULL,
    EVENTS_DROPPED_SEND_FAILED,
    EVENTS_DROPPED_REJECTED,
    BATCHES_SENT,
    BATCHES_FAILED,
    BATCH_RETRIES,
    BUFFER_EVENTS,
];

/// `metric` (one of the names above) for the destination `name` of an `http` array:
/// `usage_filter.<name>.<counter>`.
pub fn of(name: &str, metric: &str) -> String {
    match metric.split_once('.') {
        Some((prefix, rest)) => format!("{prefix}.{name}.{rest}"),
        None => metric.to_string(),
    }
}
