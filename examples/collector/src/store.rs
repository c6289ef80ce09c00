//! Where accepted events go: the append-only out file, plus what the collector
//! remembers for idempotency and statistics.
//!
//! The filter retries a batch whose delivery it cannot confirm (timeout,
//! connection reset, 5xx). A retried batch may therefore arrive although the
//! first copy was stored. Two mechanisms make retries harmless:
//!
//! * the `x-usage-batch-id` header of every accepted batch is remembered, and
//!   a batch whose id was accepted before is a replay: answered 200 with its
//!   events counted as processed, nothing written, and counted in
//!   [`Stats::duplicate_batches`];
//! * every event `id` ever stored is remembered, and an event with a known id
//!   is not written again (it still counts as *processed*, so the sender does
//!   not retry it forever). This also covers batches without an id and the
//!   same event re-sent in a different batch.
//!
//! Every batch request is also recorded as an [`Attempt`] (`GET /attempts`),
//! so a test can see each try of a batch id and what became of it.
//!
//! Memory grows with the number of distinct ids. That is fine for a reference
//! collector used in demos and tests; a production system would keep this in
//! its database (for example a unique index on the event id).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decode::{validate_event, Candidate};

/// Counters served by `GET /stats`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Batches answered with 200.
    pub batches: u64,
    /// New events appended to the out file.
    pub events: u64,
    /// Events that failed validation (the `errors` of each 200 response).
    pub invalid_events: u64,
    /// Batches refused with a 4xx: undecodable body, or no events.
    pub rejected_batches: u64,
    /// Accepted batches whose `x-usage-batch-id` had been accepted before.
    pub duplicate_batches: u64,
    /// Valid events not written again because their `id` was already stored.
    pub duplicate_events: u64,
    /// Batches that met an injected fault (status, delay or close), or were refused with 413
    /// by the `reject_when_events_above` limit.
    pub faulted_batches: u64,
    /// Accepted batches that carried no `x-usage-batch-id`.
    pub batches_without_id: u64,
}

/// One batch request and what the collector answered (`GET /attempts`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    /// Its `x-usage-batch-id`, if any.
    pub batch_id: Option<String>,
    /// The status answered; 0 when the connection was closed without an answer.
    pub status: u16,
    /// Valid events in the batch (0 when it was not decoded); for a batch refused with 413
    /// by the `reject_when_events_above` fault, every event it held.
    pub events: u64,
    /// Of those, the ones written (not seen before).
    pub new_events: u64,
}

/// The result of one accepted batch, as reported to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Valid events, including duplicates (the sender must not retry them).
    pub processed: u64,
    /// Invalid events.
    pub errors: u64,
    /// Valid events that were already stored.
    pub duplicates: u64,
    /// Whether the batch id had been accepted before.
    pub duplicate_batch: bool,
}

/// The out file and the collector's memory. Callers wrap it in a mutex so that
/// a whole batch is checked and written atomically with respect to others.
pub struct Store {
    path: PathBuf,
    file: File,
    seen_event_ids: HashSet<String>,
    seen_batch_ids: HashSet<String>,
    stats: Stats,
    attempts: Vec<Attempt>,
}

impl Store {
    /// Opens (creating if needed) `path` for appending. Existing content is
    /// kept, but ids in it are not re-read: `POST /reset` starts from empty.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Store> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Store {
            path,
            file,
            seen_event_ids: HashSet::new(),
            seen_batch_ids: HashSet::new(),
            stats: Stats::default(),
            attempts: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn attempts(&self) -> &[Attempt] {
        &self.attempts
    }

    /// A batch refused with `status` before its events were looked at.
    pub fn count_rejected(&mut self, batch_id: Option<&str>, status: u16) {
        self.stats.rejected_batches += 1;
        self.record(batch_id, status, 0, 0);
    }

    /// A batch that met an injected fault; `answered` is the status the fault
    /// answered with (0: closed unanswered), `None` for a pure delay (the batch
    /// is then processed and recorded as usual).
    pub fn count_faulted(&mut self, batch_id: Option<&str>, answered: Option<u16>) {
        self.stats.faulted_batches += 1;
        if let Some(status) = answered {
            self.record(batch_id, status, 0, 0);
        }
    }

    /// A batch of `events` refused with 413 by the `reject_when_events_above` fault: an
    /// injected fault, recorded with its size.
    pub fn count_too_large(&mut self, batch_id: Option<&str>, events: u64) {
        self.stats.faulted_batches += 1;
        self.record(batch_id, 413, events, 0);
    }

    fn record(&mut self, batch_id: Option<&str>, status: u16, events: u64, new_events: u64) {
        self.attempts.push(Attempt {
            batch_id: batch_id.map(str::to_string),
            status,
            events,
            new_events,
        });
    }

    /// Validates, de-duplicates and appends one non-empty batch. A batch whose
    /// id was accepted before writes nothing: all its valid events are duplicates.
    ///
    /// All new events of the batch are written with a single `write_all` and
    /// reach the file before this returns, so a client that got the 200 can
    /// read them immediately. Ids are remembered only after the write
    /// succeeded: if it fails the caller answers 500 and a retry is not
    /// mistaken for a duplicate.
    pub fn ingest(
        &mut self,
        batch_id: Option<&str>,
        candidates: Vec<Candidate<'_>>,
    ) -> io::Result<BatchOutcome> {
        let mut outcome = BatchOutcome {
            processed: 0,
            errors: 0,
            duplicates: 0,
            duplicate_batch: batch_id.is_some_and(|id| self.seen_batch_ids.contains(id)),
        };
        let mut new_ids = HashSet::new();
        let mut lines = String::new();

        for (index, candidate) in candidates.into_iter().enumerate() {
            match candidate.and_then(validate_event) {
                Ok(event) => {
                    outcome.processed += 1;
                    // Also catches the same id twice inside one batch.
                    if outcome.duplicate_batch
                        || self.seen_event_ids.contains(&event.id)
                        || new_ids.contains(&event.id)
                    {
                        outcome.duplicates += 1;
                    } else {
                        lines.push_str(&event.line);
                        lines.push('\n');
                        new_ids.insert(event.id);
                    }
                }
                Err(reason) => {
                    outcome.errors += 1;
                    // Tell the operator why; the response only carries a count.
                    eprintln!(
                        "collector: invalid event #{index} in batch {}: {reason}",
                        batch_id.unwrap_or("-")
                    );
                }
            }
        }

        if !lines.is_empty() {
            self.file.write_all(lines.as_bytes())?;
            self.file.flush()?;
        }

        self.stats.batches += 1;
        self.stats.events += new_ids.len() as u64;
        self.stats.invalid_events += outcome.errors;
        self.stats.duplicate_events += outcome.duplicates;
        if outcome.duplicate_batch {
            self.stats.duplicate_batches += 1;
        }
        if batch_id.is_none() {
            self.stats.batches_without_id += 1;
        }
        self.record(batch_id, 200, outcome.processed, new_ids.len() as u64);
        self.seen_event_ids.extend(new_ids);
        if let Some(id) = batch_id {
            self.seen_batch_ids.insert(id.to_string());
        }
        Ok(outcome)
    }

    /// Forgets everything and empties the out file (`POST /reset`).
    pub fn reset(&mut self) -> io::Result<()> {
        // The file is in append mode, so later writes start at the new end (0).
        self.file.set_len(0)?;
        self.seen_event_ids.clear();
        self.seen_batch_ids.clear();
        self.stats = Stats::default();
        self.attempts.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode_batch, Format};
    use serde_json::{json, Value};

    use crate::decode::tests::uid;

    fn event(name: &str) -> Value {
        json!({
            "id": uid(name), "api_path": "/p", "subscription_key": "k", "method": "POST",
            "response_time_ms": 3, "status_code": 201, "success": true,
            "timestamp": "2024-01-01T00:00:00Z", "request_size": 5, "response_size": 7
        })
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("usage-collector-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    fn ingest(store: &mut Store, batch_id: Option<&str>, events: Value) -> BatchOutcome {
        let body = events.to_string();
        let candidates = decode_batch(Format::Json, body.as_bytes()).unwrap();
        store.ingest(batch_id, candidates).unwrap()
    }

    fn file_ids(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn duplicates_are_processed_but_not_written_again() {
        let path = temp_path("dedup.ndjson");
        let mut store = Store::open(&path).unwrap();

        let first = ingest(&mut store, Some("b1"), json!([event("a"), event("b")]));
        assert_eq!(
            first,
            BatchOutcome {
                processed: 2,
                errors: 0,
                duplicates: 0,
                duplicate_batch: false
            }
        );

        // The same batch id again (a retry after a lost response): a replay,
        // nothing written even for an event id not seen before.
        let retry = ingest(
            &mut store,
            Some("b1"),
            json!([event("a"), event("b"), event("z")]),
        );
        assert_eq!(
            retry,
            BatchOutcome {
                processed: 3,
                errors: 0,
                duplicates: 3,
                duplicate_batch: true
            }
        );

        // Known event ids in a new batch id: dropped by event id, the new one kept.
        let mixed = ingest(&mut store, Some("b3"), json!([event("a"), event("c")]));
        assert_eq!((mixed.duplicates, mixed.duplicate_batch), (1, false));

        // Same id twice inside one batch; an invalid event alongside.
        let inner = ingest(
            &mut store,
            Some("b2"),
            json!([event("d"), event("d"), {"id": "x"}]),
        );
        assert_eq!(
            inner,
            BatchOutcome {
                processed: 2,
                errors: 1,
                duplicates: 1,
                duplicate_batch: false
            }
        );

        // A batch without a batch id is never a duplicate batch.
        let none = ingest(&mut store, None, json!([event("a")]));
        assert!(!none.duplicate_batch);

        assert_eq!(file_ids(&path), [uid("a"), uid("b"), uid("c"), uid("d")]);
        assert_eq!(
            store.stats(),
            Stats {
                batches: 5,
                events: 4,
                invalid_events: 1,
                rejected_batches: 0,
                duplicate_batches: 1,
                duplicate_events: 6,
                faulted_batches: 0,
                batches_without_id: 1,
            }
        );
        let tries: Vec<_> = store
            .attempts()
            .iter()
            .map(|a| (a.batch_id.as_deref(), a.status, a.events, a.new_events))
            .collect();
        assert_eq!(
            tries,
            [
                (Some("b1"), 200, 2, 2),
                (Some("b1"), 200, 3, 0),
                (Some("b3"), 200, 2, 1),
                (Some("b2"), 200, 2, 1),
                (None, 200, 1, 0)
            ]
        );
    }

    #[test]
    fn reset_forgets_ids_and_truncates() {
        let path = temp_path("reset.ndjson");
        let mut store = Store::open(&path).unwrap();
        ingest(&mut store, Some("b1"), json!([event("a")]));
        store.count_rejected(Some("b0"), 400);
        store.reset().unwrap();
        assert!(store.attempts().is_empty());
        assert_eq!(store.stats(), Stats::default());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");

        let again = ingest(&mut store, Some("b1"), json!([event("a")]));
        assert_eq!(again.duplicates, 0);
        assert!(!again.duplicate_batch);
        assert_eq!(file_ids(&path), [uid("a")]);
    }

    #[test]
    fn open_appends_to_existing_file() {
        let path = temp_path("append.ndjson");
        std::fs::write(&path, format!("{}\n", event("old"))).unwrap();
        let mut store = Store::open(&path).unwrap();
        ingest(&mut store, None, json!([event("new")]));
        assert_eq!(file_ids(&path), [uid("old"), uid("new")]);
    }
}
