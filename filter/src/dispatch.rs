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
        // `batch_size` still decides when a batch is due; a backlog only lets it grow.
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
        let most = self.shrink.batch_size(self.most_events(), now_ms);
        let events = self.buffer.take(most, self.cfg.max_batch_bytes);
        Some(Batch {
            id: uuid_v4(rng.bytes16()),
            events,
            attempts: 0,
            not_before_ms: now_ms,
        })
    }

    /// The most events a new batch may hold: `backlog_batch_size` while more events wait than
    /// the open callouts carry at `batch_size` (`max_in_flight × batch_size`), since then the
    /// buffer drains by only that much per round trip and fills meanwhile; `batch_size`
    /// otherwise. `max_batch_bytes` caps either (`Buffer::take`).
    fn most_events(&self) -> usize {
        let per_round_trip = self.cfg.max_in_flight.saturating_mul(self.cfg.batch_size);
        if self.buffer.waiting() > per_round_trip {
            self.backlog_batch_size()
        } else {
            self.cfg.batch_size
        }
    }

    /// Never below `batch_size`: the configuration refuses that, and an `Http` made another
    /// way must not shrink batches under load either.
    fn backlog_batch_size(&self) -> usize {
        self.cfg.backlog_batch_size.max(self.cfg.batch_size)
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
            // The largest size it may limit: a refused backlog batch lowers backlog batches
            // too, and normal ones only once the limit falls below `batch_size`.
            self.shrink
                .too_large(batch.events.len(), self.backlog_batch_size(), now_ms);
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
pub(crate) mod tests;
