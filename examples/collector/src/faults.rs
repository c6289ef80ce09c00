//! Injected faults, so that tests can watch the filter's retry and buffering
//! logic against a misbehaving collector.
//!
//! `POST /faults` appends one fault (or an array of them) to a queue. Each
//! incoming batch takes the first fault in the queue and uses up one of its
//! `count`; a fault whose count reaches zero is removed, and the next one in
//! the queue applies to the following batches. `count: -1` never runs out.
//!
//! ```json
//! {"status": 503, "retry_after": 2, "count": 5}  // answer 503 + Retry-After, don't process
//! {"delay_ms": 2000, "count": 3}                 // wait, then process normally
//! {"close": true}                                // drop the connection, no response
//! ```
//!
//! `delay_ms` may be combined with `status` or `close`: the collector waits
//! first, then fails.
//!
//! `{"reject_when_path_contains": "poison"}` is not queued: until `DELETE /faults`, every
//! batch holding an event whose `api_path` contains that text is refused whole with 400, as
//! billing APIs refuse a batch over one invalid event.
//!
//! `{"reject_when_events_above": 30}` is not queued either: until `DELETE /faults`, every
//! batch of more than 30 events is refused whole with 413, as receivers with a batch limit
//! answer. The two markers are set independently (one request may set both); the queue
//! still applies first.

use serde::{Deserialize, Serialize};

/// One queued fault. The same shape is accepted by `POST /faults` and listed
/// in its answer, where `count` is what remains.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Answer with this status (200..=599) instead of processing the batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// With `status`: send `Retry-After: <seconds>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Wait this long before answering.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Close the connection without any response.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub close: bool,
    /// How many batches this fault applies to; -1 means until cleared.
    #[serde(default = "one")]
    pub count: i64,
}

fn one() -> i64 {
    1
}

impl Fault {
    /// Rejects faults that would do nothing or could not be sent.
    pub fn check(&self) -> Result<(), String> {
        if self.status.is_none() && self.delay_ms.is_none() && !self.close {
            return Err("a fault needs `status`, `delay_ms` or `close: true`".to_string());
        }
        if let Some(status) = self.status {
            if !(200..=599).contains(&status) {
                return Err(format!("`status` must be 200..=599, got {status}"));
            }
            if self.close {
                return Err("`status` and `close` exclude each other".to_string());
            }
        }
        if self.retry_after.is_some() && self.status.is_none() {
            return Err("`retry_after` needs `status`".to_string());
        }
        if self.count == 0 || self.count < -1 {
            return Err(format!(
                "`count` must be positive or -1, got {}",
                self.count
            ));
        }
        Ok(())
    }
}

/// The request body of `POST /faults`: one fault or several, or the refusal markers.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum FaultRequest {
    One(Fault),
    Many(Vec<Fault>),
    RejectWhen(RejectWhen),
}

/// The markers that refuse batches for what they hold; a marker left out stays as it was.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectWhen {
    #[serde(default)]
    pub reject_when_path_contains: Option<String>,
    #[serde(default)]
    pub reject_when_events_above: Option<u64>,
}

/// The fault queue, the poison marker and the batch limit.
#[derive(Debug, Default)]
pub struct Faults {
    queue: Vec<Fault>,
    poison: Option<String>,
    events_above: Option<u64>,
}

/// What `POST /faults`, `GET /faults` and `DELETE /faults` answer.
#[derive(Serialize)]
pub struct FaultList<'a> {
    pub faults: &'a [Fault],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_when_path_contains: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reject_when_events_above: Option<u64>,
}

/// The `id` of the first event whose `api_path` contains `marker` (events as JSON texts).
pub fn poisoned<'a>(marker: &str, events: impl IntoIterator<Item = &'a str>) -> Option<String> {
    #[derive(Deserialize)]
    struct Fields {
        #[serde(default)]
        id: Option<serde_json::Value>,
        #[serde(default)]
        api_path: Option<String>,
    }
    events.into_iter().find_map(|text| {
        let f: Fields = serde_json::from_str(text).ok()?;
        f.api_path?
            .contains(marker)
            .then(|| f.id.map_or_else(|| "-".to_string(), |id| id.to_string()))
    })
}

impl Faults {
    pub fn add(&mut self, faults: Vec<Fault>) -> Result<(), String> {
        faults.iter().try_for_each(Fault::check)?;
        self.queue.extend(faults);
        Ok(())
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.poison = None;
        self.events_above = None;
    }

    pub fn set_poison(&mut self, marker: String) -> Result<(), String> {
        if marker.is_empty() {
            return Err("`reject_when_path_contains` must not be empty".to_string());
        }
        self.poison = Some(marker);
        Ok(())
    }

    /// Sets the markers `r` names, all or none: an invalid one sets nothing.
    pub fn set_reject_when(&mut self, r: RejectWhen) -> Result<(), String> {
        if r.reject_when_path_contains.is_none() && r.reject_when_events_above.is_none() {
            return Err(
                "expected `reject_when_path_contains` or `reject_when_events_above`".to_string(),
            );
        }
        if r.reject_when_events_above == Some(0) {
            return Err(
                "`reject_when_events_above` must be at least 1 (a batch holds one event or more)"
                    .to_string(),
            );
        }
        if let Some(marker) = r.reject_when_path_contains {
            self.set_poison(marker)?;
        }
        if let Some(n) = r.reject_when_events_above {
            self.events_above = Some(n);
        }
        Ok(())
    }

    pub fn poison(&self) -> Option<&str> {
        self.poison.as_deref()
    }

    /// `Some(limit)` when a batch of `events` is too large for the batch limit set.
    pub fn too_many(&self, events: usize) -> Option<u64> {
        self.events_above.filter(|&limit| events as u64 > limit)
    }

    pub fn list(&self) -> FaultList<'_> {
        FaultList {
            faults: &self.queue,
            reject_when_path_contains: self.poison.as_deref(),
            reject_when_events_above: self.events_above,
        }
    }

    /// Uses up one application of the first queued fault, if any.
    pub fn take(&mut self) -> Option<Fault> {
        let first = self.queue.first_mut()?;
        let taken = first.clone();
        if first.count > 0 {
            first.count -= 1;
            if first.count == 0 {
                self.queue.remove(0);
            }
        }
        Some(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Vec<Fault> {
        match serde_json::from_str(text).unwrap() {
            FaultRequest::One(f) => vec![f],
            FaultRequest::Many(v) => v,
            FaultRequest::RejectWhen(_) => panic!("not a queued fault"),
        }
    }

    #[test]
    fn the_poison_marker_finds_the_event_and_is_cleared() {
        let Ok(FaultRequest::RejectWhen(r)) =
            serde_json::from_str(r#"{"reject_when_path_contains": "poison"}"#)
        else {
            panic!("parsed as a queued fault")
        };
        let mut faults = Faults::default();
        assert!(faults.set_poison(String::new()).is_err());
        faults.set_reject_when(r).unwrap();
        assert_eq!(
            serde_json::to_string(&faults.list()).unwrap(),
            r#"{"faults":[],"reject_when_path_contains":"poison"}"#
        );
        let m = faults.poison().unwrap();
        let ok = r#"{"id":"a","api_path":"/v1/x"}"#;
        let bad = r#"{"id":"b","api_path":"/v1/poison/1"}"#;
        assert_eq!(poisoned(m, [ok]), None);
        assert_eq!(poisoned(m, [ok, bad]).as_deref(), Some("\"b\""));
        faults.clear();
        assert_eq!(faults.poison(), None);
    }

    fn reject_when(text: &str) -> RejectWhen {
        match serde_json::from_str(text).unwrap() {
            FaultRequest::RejectWhen(r) => r,
            _ => panic!("parsed as a queued fault: {text}"),
        }
    }

    #[test]
    fn the_batch_limit_refuses_only_more_than_n_events_and_is_cleared() {
        let mut faults = Faults::default();
        assert_eq!(faults.too_many(1_000), None, "no limit until one is set");
        faults
            .set_reject_when(reject_when(r#"{"reject_when_events_above": 30}"#))
            .unwrap();
        assert_eq!(faults.too_many(1), None);
        assert_eq!(faults.too_many(30), None, "exactly N events fit");
        assert_eq!(faults.too_many(31), Some(30));
        assert_eq!(faults.too_many(100), Some(30));
        assert_eq!(
            serde_json::to_string(&faults.list()).unwrap(),
            r#"{"faults":[],"reject_when_events_above":30}"#
        );
        // Setting the poison marker keeps the limit, and the other way round.
        faults
            .set_reject_when(reject_when(r#"{"reject_when_path_contains": "/p/"}"#))
            .unwrap();
        faults
            .set_reject_when(reject_when(r#"{"reject_when_events_above": 5}"#))
            .unwrap();
        assert_eq!(
            serde_json::to_string(&faults.list()).unwrap(),
            r#"{"faults":[],"reject_when_path_contains":"/p/","reject_when_events_above":5}"#
        );
        faults.clear();
        assert_eq!(faults.too_many(100), None);
        assert_eq!(faults.poison(), None);
    }

    #[test]
    fn a_batch_limit_of_zero_or_nothing_set_is_refused_and_changes_nothing() {
        let mut faults = Faults::default();
        for bad in [
            r#"{"reject_when_events_above": 0}"#,
            r#"{"reject_when_events_above": 0, "reject_when_path_contains": "/p/"}"#,
            r#"{"reject_when_events_above": 3, "reject_when_path_contains": ""}"#,
        ] {
            assert!(faults.set_reject_when(reject_when(bad)).is_err(), "{bad}");
        }
        assert_eq!(faults.too_many(100), None);
        assert_eq!(faults.poison(), None);
        for unparsable in [
            r#"{"reject_when_events_above": -1}"#,
            r#"{"reject_when_events_above": "30"}"#,
            r#"{"reject_when_events_over": 30}"#,
        ] {
            assert!(
                serde_json::from_str::<FaultRequest>(unparsable).is_err(),
                "{unparsable}"
            );
        }
    }

    #[test]
    fn queue_counts_down_in_order() {
        let mut faults = Faults::default();
        faults
            .add(parse(r#"{"status": 503, "count": 2, "retry_after": 1}"#))
            .unwrap();
        faults
            .add(parse(r#"[{"close": true}, {"delay_ms": 5, "count": -1}]"#))
            .unwrap();
        assert_eq!(faults.take().unwrap().status, Some(503));
        assert_eq!(faults.take().unwrap().retry_after, Some(1));
        assert!(faults.take().unwrap().close);
        for _ in 0..10 {
            assert_eq!(faults.take().unwrap().delay_ms, Some(5));
        }
        assert_eq!(
            serde_json::to_string(&faults.list()).unwrap(),
            r#"{"faults":[{"delay_ms":5,"count":-1}]}"#
        );
        faults.clear();
        assert_eq!(faults.take(), None);
    }

    #[test]
    fn useless_or_unknown_faults_are_refused() {
        let mut faults = Faults::default();
        for bad in [
            r#"{}"#,
            r#"{"count": 3}"#,
            r#"{"status": 99}"#,
            r#"{"status": 503, "count": 0}"#,
            r#"{"status": 503, "count": -2}"#,
            r#"{"close": true, "status": 500}"#,
            r#"{"retry_after": 1, "delay_ms": 5}"#,
        ] {
            assert!(faults.add(parse(bad)).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<FaultRequest>(r#"{"stauts": 503}"#).is_err());
        assert_eq!(faults.list().faults.len(), 0);
    }
}
