//! The dispatcher: decides what to send and when, and what a callout's outcome means for the
//! events in it. It owns the buffer, the batches in flight and those waiting to be retried.
//! It makes no host calls and counts nothing itself: it hands back complete callouts and
//! outcomes, and `Delivery` keeps the books.

use crate::batch::{Batch, Policy};
use crate::buffer::Buffer;
use crate::callout::Callout;
use crate::config::{Compression, Http};
use crate::encode;
use crate::encode::timestamp::SecondCache;
use crate::event::uuid_v4;
use crate::isolate::{self, Shrink};
use crate::random::Random;
use crate::record::Record;
use crate::retry::{self, Verdict};

/// What became of a batch when its callout finished, for the root context to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        events: usize,
    },
    Retrying {
        attempt: u32,
        at_ms: u64,
    },
    /// Refused for its content (400, 413, 422): sent again as two halves, each a new batch.
    Split {
        events: usize,
        status: u32,
    },
    /// A single event refused for its content: dropped, not retried.
    RejectedEvent {
        id: [u8; 16],
        status: u32,
    },
    /// Refused by the collector (4xx other than 408/429, and not split): dropped, not retried.
    Rejected {
        events: usize,
        status: u32,
    },
    /// Out of attempts: dropped.
    Exhausted {
        events: usize,
        attempts: u32,
    },
    /// A response for a token this dispatcher does not know (ignored).
    Unknown,
}

#[derive(Debug)]
pub struct Dispatcher {
    cfg: Http,
    policy: Policy,
    buffer: Buffer,
    /// Batches waiting for their retry time, oldest first.
    retrying: Vec<Batch>,
    in_flight: Vec<(u32, Batch)>,
    /// The formatted second, reused across the events of a batch and between batches.
    seconds: SecondCache,
    /// Where bodies are encoded. An uncompressed body goes out as this buffer itself and
    /// comes back through `recycle` once the host has copied it (Envoy copies a callout's
    /// body when it starts it), so a batch allocates no body of its own and the buffer keeps
    /// the size of the largest body: no copy per batch, no heap fragmented by bodies.
    scratch: Vec<u8>,
    /// The batch size lowered by a 413.
    shrink: Shrink,
}

impl Dispatcher {
    pub fn new(cfg: Http) -> Self {
        Dispatcher {
            policy: Policy::from_config(&cfg),
            buffer: Buffer::new(cfg.buffer_size),
            cfg,
            retrying: Vec::new(),
            in_flight: Vec::new(),
            seconds: SecondCache::default(),
            scratch: Vec::new(),
            shrink: Shrink::default(),
        }
    }

    /// Events held: waiting, in flight, or waiting for a retry.
    pub fn buffered(&self) -> usize {
        self.buffer.held()
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    #[cfg(test)]
    pub fn idle(&self) -> bool {
        self.buffer.held() == 0
    }

    /// Holds one event. False when the buffer was full and it was dropped.
    pub fn offer(&mut self, e: Record, now_ms: u64) -> bool {
        self.buffer.push(e, now_ms).is_ok()
    }

    /// The next batch to send now, if any: a retry whose time has come first, then a new
    /// batch when the policy says so. `flushing` (shutdown) sends everything regardless of
    /// triggers, backoff and `max_in_flight`.
    pub fn next_send(
        &mut self,
        now_ms: u64,
        flushing: bool,
        rng: &mut dyn Random,
    ) -> Option<(Batch, Callout)> {
        let batch = self.next_batch(now_ms, flushing, rng)?;
        encode::write_batch_body(
            &mut self.scratch,
            &encode::Shape::of(&self.cfg),
            batch.events.iter(),
            &mut self.seconds,
        );
        let body = match self.cfg.compression {
            Compression::None => std::mem::take(&mut self.scratch),
            // compressed into a body of its own (callout.rs): the buffer stays
            Compression::Gzip => self.scratch.clone(),
        };
        let callout = Callout::batch(&self.cfg, &batch.id, body);
        Some((batch, callout))
    }

    /// A callout's body back once the host has copied it: the next body is encoded into it.
    pub fn recycle(&mut self, body: Vec<u8>) {
        if body.capacity() > self.scratch.capacity() {
            self.scratch = body;
        }
    }

    fn next_batch(&mut self, now_ms: u64, flushing: bool, rng: &mut dyn Random) -> Option<Batch> {
        if !flushing && self.in_flight.len() >= self.cfg.max_in_flight {
            return None;
        }
        if let Some(i) = self
            .retrying
            .iter()
            .position(|b| flushing || b.not_before_ms <= now_ms)
        {
            return Some(self.retrying.remove(i));
        }
        let batch_size = self.shrink.batch_size(self.cfg.batch_size, now_ms);
        let policy = Policy {
            batch_size,
            ..self.policy
        };
        let due = policy.due(
            self.buffer.waiting(),
            self.buffer.waiting_bytes(),
            self.buffer.oldest_ms(),
            now_ms,
            flushing,
        );
        if !due {
            return None;
        }
        let events = self.buffer.take(batch_size, self.cfg.max_batch_bytes);
        Some(Batch {
            id: uuid_v4(rng.bytes16()),
            events,
            attempts: 0,
            not_before_ms: now_ms,
        })
    }

    /// Forgets every event not in flight (waiting, or waiting for a retry) and returns how
    /// many: a configuration given up keeps only the answers it is owed.
    pub fn drop_unsent(&mut self) -> usize {
        let retrying: usize = self.retrying.drain(..).map(|b| b.events.len()).sum();
        self.buffer.release(retrying);
        let waiting = self.buffer.waiting();
        self.buffer.discard_waiting(waiting);
        retrying + waiting
    }

    /// The batch went out as callout `token`.
    pub fn sent(&mut self, token: u32, mut batch: Batch) {
        batch.attempts += 1;
        self.in_flight.push((token, batch));
    }

    /// The host refused to start the callout (unknown cluster, bad headers): a failed attempt.
    pub fn not_sent(&mut self, mut batch: Batch, now_ms: u64, rng: &mut dyn Random) -> Outcome {
        batch.attempts += 1;
        self.failed(batch, None, now_ms, rng)
    }

    /// A callout finished. `status` is None for a failure without a response.
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        retry_after_ms: Option<u64>,
        now_ms: u64,
        rng: &mut dyn Random,
    ) -> Outcome {
        let Some(i) = self.in_flight.iter().position(|(t, _)| *t == token) else {
            return Outcome::Unknown;
        };
        let (_, batch) = self.in_flight.swap_remove(i);
        match retry::classify(status) {
            Verdict::Delivered => {
                self.buffer.release(batch.events.len());
                Outcome::Delivered {
                    events: batch.events.len(),
                }
            }
            Verdict::Reject => self.refused(batch, status.unwrap_or(0), now_ms, rng),
            Verdict::Retry => self.failed(batch, retry_after_ms, now_ms, rng),
        }
    }

    /// A 4xx: content refusals are narrowed down to the events refused alone (isolate.rs);
    /// the rest drop the batch.
    fn refused(&mut self, batch: Batch, status: u32, now_ms: u64, rng: &mut dyn Random) -> Outcome {
        if !isolate::splits(status) {
            self.buffer.release(batch.events.len());
            return Outcome::Rejected {
                events: batch.events.len(),
                status,
            };
        }
        if status == 413 {
            self.shrink
                .too_large(batch.events.len(), self.cfg.batch_size, now_ms);
        }
        match batch.events.as_slice() {
            [] => Outcome::Rejected { events: 0, status },
            [one] => {
                let id = one.id;
                self.buffer.release(1);
                Outcome::RejectedEvent { id, status }
            }
            _ => {
                let events = batch.events.len();
                // The halves go ahead of older retries: they are due now.
                for (i, half) in isolate::halves(batch, now_ms, rng).into_iter().enumerate() {
                    self.retrying.insert(i, half);
                }
                Outcome::Split { events, status }
            }
        }
    }

    fn failed(
        &mut self,
        mut batch: Batch,
        retry_after_ms: Option<u64>,
        now_ms: u64,
        rng: &mut dyn Random,
    ) -> Outcome {
        if batch.attempts >= self.cfg.retry.max_attempts {
            self.buffer.release(batch.events.len());
            return Outcome::Exhausted {
                events: batch.events.len(),
                attempts: batch.attempts,
            };
        }
        let delay = retry::backoff_ms(&self.cfg.retry, batch.attempts, retry_after_ms, rng.u64());
        batch.not_before_ms = now_ms.saturating_add(delay);
        let attempt = batch.attempts + 1;
        let at_ms = batch.not_before_ms;
        self.retrying.push(batch);
        Outcome::Retrying { attempt, at_ms }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{Compression, Format, Retry};

    pub(crate) struct Seq(pub u64);
    impl Random for Seq {
        fn bytes16(&mut self) -> [u8; 16] {
            self.0 += 1;
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&self.0.to_le_bytes());
            b
        }
    }

    pub(crate) fn cfg() -> Http {
        Http {
            cluster: "c".into(),
            authority: "c".into(),
            path: "/e".into(),
            format: Format::Veil,
            headers: vec![],
            timeout_ms: 1000,
            batch_size: 3,
            backlog_batch_size: 3,
            max_batch_bytes: 1 << 20,
            flush_interval_ms: 1000,
            buffer_size: 10,
            max_in_flight: 2,
            retry: Retry {
                max_attempts: 3,
                initial_backoff_ms: 100,
                max_backoff_ms: 1000,
            },
            kafka_key: None,
            compression: Compression::None,
            name: "default".into(),
            cloudevents_type: "api.usage".into(),
            cloudevents_source: "usage-filter".into(),
        }
    }

    pub(crate) fn ev() -> Record {
        Record::from_event(&crate::event::Event {
            api_path: "/x".into(),
            ..Default::default()
        })
    }

    fn send(d: &mut Dispatcher, now: u64, r: &mut Seq) -> Option<Batch> {
        d.next_send(now, false, r).map(|(b, _)| b)
    }

    #[test]
    fn count_trigger_cuts_full_batches_up_to_max_in_flight() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        for _ in 0..10 {
            d.offer(ev(), 0);
        }
        let b1 = send(&mut d, 0, &mut r).unwrap();
        assert_eq!(b1.events.len(), 3);
        d.sent(1, b1);
        let b2 = send(&mut d, 0, &mut r).unwrap();
        d.sent(2, b2);
        assert!(send(&mut d, 0, &mut r).is_none(), "max_in_flight");
        assert_eq!(
            d.on_response(1, Some(200), None, 5, &mut r),
            Outcome::Delivered { events: 3 }
        );
        let b3 = send(&mut d, 5, &mut r).unwrap();
        d.sent(3, b3);
        // one event left, not due until the flush interval
        d.on_response(2, Some(200), None, 5, &mut r);
        d.on_response(3, Some(200), None, 5, &mut r);
        assert!(send(&mut d, 999, &mut r).is_none());
        assert_eq!(send(&mut d, 1000, &mut r).unwrap().events.len(), 1);
    }

    #[test]
    fn a_body_goes_out_as_the_reused_buffer_and_comes_back() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        for _ in 0..9 {
            d.offer(ev(), 0);
        }
        let (b1, c1) = d.next_send(0, false, &mut r).unwrap();
        let first = c1.body.as_ptr();
        let want = c1.body.clone();
        d.sent(1, b1);
        d.recycle(c1.body);
        let (b2, c2) = d.next_send(0, false, &mut r).unwrap();
        assert_eq!(
            c2.body.as_ptr(),
            first,
            "no body of its own: the same buffer"
        );
        assert_eq!(c2.body.len(), want.len());
        d.sent(2, b2);
        // a body that does not come back costs a new buffer, never a wrong body
        let (_, c3) = d.next_send(0, true, &mut r).unwrap();
        assert_eq!(c3.body.len(), want.len());
        // gzip: the compressed body is its own, the buffer stays
        let mut d = Dispatcher::new(Http {
            compression: Compression::Gzip,
            ..cfg()
        });
        for _ in 0..3 {
            d.offer(ev(), 0);
        }
        let (_, c) = d.next_send(0, false, &mut r).unwrap();
        assert_eq!(c.header("content-encoding"), Some("gzip"));
        assert!(d.scratch.capacity() > 0);
    }

    #[test]
    fn the_callout_is_complete_and_the_same_on_every_attempt() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        for _ in 0..3 {
            d.offer(ev(), 0);
        }
        let (b, first) = d.next_send(0, false, &mut r).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        let events = v["events"].as_array().unwrap();
        assert_eq!(events.len(), 3);
        assert!(events.iter().all(|e| e["api_path"] == "/x"));
        assert_eq!(first.upstream, "c");
        assert_eq!(first.timeout_ms, 1000);
        d.sent(1, b);
        d.on_response(1, Some(503), None, 0, &mut r);
        let (_, again) = d.next_send(10_000, false, &mut r).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn retry_keeps_the_batch_id_and_waits_for_backoff() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        for _ in 0..3 {
            d.offer(ev(), 0);
        }
        let b = send(&mut d, 0, &mut r).unwrap();
        let id = b.id;
        d.sent(7, b);
        let Outcome::Retrying { attempt: 2, at_ms } = d.on_response(7, Some(503), None, 10, &mut r)
        else {
            panic!()
        };
        assert!((110..=210).contains(&at_ms));
        assert!(send(&mut d, at_ms - 1, &mut r).is_none());
        let b = send(&mut d, at_ms, &mut r).unwrap();
        assert_eq!(b.id, id);
        d.sent(8, b);
        d.on_response(8, None, None, at_ms, &mut r);
        let b = send(&mut d, at_ms + 10_000, &mut r).unwrap();
        d.sent(9, b);
        assert_eq!(
            d.on_response(9, Some(500), None, 0, &mut r),
            Outcome::Exhausted {
                events: 3,
                attempts: 3
            }
        );
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn rejected_batches_are_not_retried() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        d.offer(ev(), 0);
        let b = send(&mut d, 1000, &mut r).unwrap();
        d.sent(1, b);
        assert_eq!(
            d.on_response(1, Some(401), None, 0, &mut r),
            Outcome::Rejected {
                events: 1,
                status: 401
            }
        );
        assert!(d.next_send(100_000, true, &mut r).is_none());
        assert!(d.idle());
    }

    #[test]
    fn full_buffer_refuses_the_newest() {
        let mut d = Dispatcher::new(cfg());
        let accepted = (0..15).filter(|_| d.offer(ev(), 0)).count();
        assert_eq!(accepted, 10);
        assert_eq!(d.buffered(), 10);
    }

    #[test]
    fn unknown_tokens_change_nothing() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        d.offer(ev(), 0);
        assert_eq!(
            d.on_response(42, Some(200), None, 0, &mut r),
            Outcome::Unknown
        );
        assert_eq!(d.buffered(), 1);
    }

    #[test]
    fn flushing_ignores_triggers_and_in_flight_limit() {
        let mut d = Dispatcher::new(cfg());
        let mut r = Seq(0);
        for _ in 0..8 {
            d.offer(ev(), 0);
        }
        let mut n = 0;
        while let Some((b, _)) = d.next_send(0, true, &mut r) {
            n += b.events.len();
            d.sent(n as u32, b);
        }
        assert_eq!(n, 8);
        assert_eq!(d.in_flight(), 3);
    }
}
