//! What the root context tells the operator: which build it is, callouts the host would not
//! start, and batches refused, given up or retried.

use crate::dispatch::Outcome;
use crate::host::{Host, Level};

/// The version and the commit it was built from (see build.rs), said once per VM so that an
/// operator can tell from the proxy's log which code it runs.
pub(super) const VERSION_LINE: &str = concat!(
    "usage-filter ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("USAGE_FILTER_GIT_SHA"),
    ")"
);

/// The host would not start a callout. A cluster Envoy does not know (BadArgument) may still
/// arrive through CDS, so the batch stays a failed attempt; the operator is told once per
/// cluster, at error level, until a callout to it starts again.
pub(super) fn refused(host: &dyn Host, said: &mut Vec<String>, cluster: &str, status: u32) {
    let name = crate::host::status_name(status);
    if said.iter().any(|c| c == cluster) {
        let msg = format!("usage-filter: callout to cluster \"{cluster}\" refused again ({name})");
        host.log(Level::Debug, msg.as_bytes());
        return;
    }
    said.push(cluster.to_string());
    let why = if status == 2 {
        "the cluster does not exist on this host (Envoy may still add it through CDS)"
    } else {
        "the host would not start it"
    };
    let msg = format!(
        "usage-filter: the host refused to start a callout to cluster \"{cluster}\" ({name}): \
         {why}. Batches are retried as failed attempts and dropped after \
         http.retry.max_attempts; {} counts every refusal. Said once until a callout to it starts.",
        crate::metrics::NAMES[crate::metrics::CALLOUTS_REFUSED]
    );
    host.log(Level::Error, msg.as_bytes());
}

/// What became of a batch, when it is worth saying; `dest` names the destination of an
/// `http` array (a single object's lines read as they always have).
pub(super) fn report(
    host: &dyn Host,
    dest: Option<&str>,
    outcome: &Outcome,
    body_head: Option<&[u8]>,
) {
    let (level, msg) = match outcome {
        Outcome::Rejected { events, status } => (
            Level::Warn,
            format!(
                "usage-filter: collector refused a batch of {events} events with status {status}, dropped: {}",
                String::from_utf8_lossy(body_head.unwrap_or(b""))
            ),
        ),
        Outcome::RejectedEvent { id, status } => (
            Level::Warn,
            format!(
                "usage-filter: collector refused event {} alone with status {status}, dropped: {}",
                crate::encode::uuid::uuid_string(id),
                String::from_utf8_lossy(body_head.unwrap_or(b""))
            ),
        ),
        Outcome::Split { events, status } => (
            Level::Debug,
            format!(
                "usage-filter: collector refused a batch of {events} events with status {status}: sending it again as two halves"
            ),
        ),
        Outcome::Exhausted { events, attempts } => (
            Level::Warn,
            format!("usage-filter: batch of {events} events dropped after {attempts} attempts"),
        ),
        Outcome::Retrying { attempt, at_ms } => (
            Level::Debug,
            format!("usage-filter: batch will be retried (attempt {attempt}) at {at_ms} ms"),
        ),
        Outcome::Delivered { .. } | Outcome::Unknown => return,
    };
    let msg = match dest {
        // "usage-filter: http billing: collector refused …"
        Some(name) => msg.replacen("usage-filter: ", &format!("usage-filter: http {name}: "), 1),
        None => msg,
    };
    host.log(level, msg.as_bytes());
}
