//! Delivery: where each finished event goes, by the role the configuration gave this VM,
//! and the books for every event. The log line, the http dispatcher and the shared-queue
//! hand-off are all reached from here, and every counter is kept here, so
//! `captured = delivered + dropped (buffer full, send failed, rejected) + buffered` is one
//! struct's invariant.
//!
//! No host calls: the root and stream contexts carry out what it returns.

use crate::batch::Batch;
use crate::buffer::Buffer;
use crate::callout::Callout;
use crate::config::{Config, Http, LogOutput, Role};
use crate::destination::Destination;
use crate::dispatch::Outcome;
use crate::encode;
use crate::encode::timestamp::SecondCache;
use crate::event::Event;
use crate::metrics::{self, Counters};
use crate::random::Random;
use crate::record::{handover, Extra, Record};
use std::rc::Rc;

/// A log line to write for one event, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub line: Vec<u8>,
    pub to_host_log: bool,
    pub to_filter_state: bool,
}

#[derive(Debug)]
pub struct Delivery {
    role: Role,
    log: Option<LogOutput>,
    /// One per element of `http`, in configured order; each gets every event.
    dests: Vec<Destination>,
    /// Queue-worker role: events waiting for the next hand-over, bounded like the buffer.
    /// Each event once, whatever the destinations: the service hands it to each.
    handoff: Option<Buffer>,
    /// What is counted once per event (`metrics::PER_EVENT`), and the log-only books.
    counters: Counters,
    /// (index in `metrics::NAMES`, name) of the metrics `counters` is published under.
    names: Vec<(usize, String)>,
    /// The slot in the root's `Published` of each metric, in `metric_names` order.
    slots: Vec<usize>,
    seconds: SecondCache,
    /// The most a damaged hand-over message can be believed to have lost.
    lost_cap: u64,
    /// Given up: only its callouts in flight remain.
    abandoned: bool,
    /// Each wire shape two or more destinations share (the first one's configuration): an
    /// event is written in it once, and each of them copies those bytes into its bodies.
    shared: Vec<Http>,
}

impl Delivery {
    pub fn new(cfg: &Config) -> Self {
        let role = cfg.role();
        let buffer_size = cfg.http.iter().map(|h| h.buffer_size).max().unwrap_or(0);
        let sends = matches!(role, Role::Local | Role::QueueService);
        let names = (0..metrics::COUNT)
            .filter(|i| role == Role::LogOnly || metrics::PER_EVENT.contains(i))
            .map(|i| (i, metrics::name(i, None)))
            .collect();
        let mut dests: Vec<Destination> = cfg
            .http
            .iter()
            .map(|h| Destination::new(h, sends, cfg.http_named))
            .collect();
        let mut shared: Vec<Http> = Vec::new();
        if sends {
            for (i, h) in cfg.http.iter().enumerate() {
                let twin = cfg.http[..i]
                    .iter()
                    .chain(&cfg.http[i + 1..])
                    .any(|o| Destination::same_shape(h, o));
                if !twin {
                    continue;
                }
                let g = match shared.iter().position(|s| Destination::same_shape(s, h)) {
                    Some(g) => g,
                    None => {
                        shared.push(h.clone());
                        shared.len() - 1
                    }
                };
                dests[i].share = Some(g);
            }
        }
        Delivery {
            role,
            log: cfg.log_sink.then_some(cfg.log_output),
            dests,
            handoff: (role == Role::QueueWorker).then(|| Buffer::new(buffer_size)),
            counters: Counters::default(),
            names,
            slots: Vec::new(),
            seconds: SecondCache::default(),
            lost_cap: buffer_size as u64,
            abandoned: false,
            shared,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// One finished request: made into its record once, counted once, routed by role.
    /// Returns the log line to write, when the log sink is on.
    pub fn finish(&mut self, e: &Event<'_>, now_ms: u64) -> Option<LogLine> {
        self.counters.captured += 1;
        if e.tokens.as_ref().is_some_and(|t| t.unpriced) {
            self.counters.llm_unpriced += 1;
        }
        let line = self.log.map(|out| LogLine {
            line: encode::log_line(e, &mut self.seconds),
            to_host_log: matches!(out, LogOutput::HostLog | LogOutput::Both),
            to_filter_state: matches!(out, LogOutput::FilterState | LogOutput::Both),
        });
        match self.role {
            // Log only: written is delivered.
            Role::LogOnly => self.counters.delivered += 1,
            _ => self.hold(Record::from_event(e), now_ms),
        }
        line
    }

    /// Every destination gets the record: a copy for each but the last, which takes it (one
    /// destination: no copy and no extra move, as before there could be several).
    fn hold(&mut self, rec: Record, now_ms: u64) {
        // The one-destination case first, and as directly as before there could be more.
        if let ([only], None) = (self.dests.as_mut_slice(), &self.handoff) {
            return offer(only, rec, now_ms);
        }
        if let Some(h) = &mut self.handoff {
            if h.push(rec, now_ms).is_err() {
                for d in &mut self.dests {
                    d.counters.dropped_buffer_full += 1;
                }
            }
            return;
        }
        if !self.shared.is_empty() {
            return self.hold_shared(rec, now_ms);
        }
        let Some((last, rest)) = self.dests.split_last_mut() else {
            return;
        };
        for d in rest {
            offer(d, rec.clone(), now_ms);
        }
        offer(last, rec, now_ms);
    }

    /// `hold` when destinations share a wire shape: the copies of the record for the
    /// destinations of one shape share one place for its element, which the first of them to
    /// cut a batch fills and the others copy (`encode::write_batch_body`): written once per
    /// format, off the request path.
    fn hold_shared(&mut self, rec: Record, now_ms: u64) {
        let elements: Vec<Rc<Extra>> = self.shared.iter().map(|_| rec.with_element()).collect();
        let Some((last, rest)) = self.dests.split_last_mut() else {
            return;
        };
        let with = |mut r: Record, d: &Destination| {
            if let Some(e) = d.share.and_then(|g| elements.get(g)) {
                r.set_extra(e.clone());
            }
            r
        };
        for d in rest {
            let r = with(rec.clone(), d);
            offer(d, r, now_ms);
        }
        let r = with(rec, last);
        offer(last, r, now_ms);
    }

    /// The next callout to start now, if any, and the destination it is for (see
    /// `Dispatcher::next_send`).
    pub fn next_callout(
        &mut self,
        now_ms: u64,
        flushing: bool,
        rng: &mut dyn Random,
    ) -> Option<(usize, Batch, Callout)> {
        self.dests.iter_mut().enumerate().find_map(|(i, d)| {
            let (b, c) = d.dispatcher.as_mut()?.next_send(now_ms, flushing, rng)?;
            Some((i, b, c))
        })
    }

    pub fn sent(&mut self, dest: usize, token: u32, batch: Batch) {
        if let Some(d) = self.dests.get_mut(dest).and_then(|d| d.dispatcher.as_mut()) {
            d.sent(token, batch);
        }
    }

    /// A callout's body back once the host has copied it (see `Dispatcher::recycle`).
    pub fn recycle(&mut self, dest: usize, body: Vec<u8>) {
        if let Some(d) = self.dests.get_mut(dest).and_then(|d| d.dispatcher.as_mut()) {
            d.recycle(body);
        }
    }

    /// The host would not start the callout: a failed attempt.
    pub fn not_sent(
        &mut self,
        dest: usize,
        batch: Batch,
        now_ms: u64,
        rng: &mut dyn Random,
    ) -> Outcome {
        let Some(d) = self.dests.get_mut(dest) else {
            return Outcome::Unknown;
        };
        let Some(disp) = &mut d.dispatcher else {
            return Outcome::Unknown;
        };
        let outcome = disp.not_sent(batch, now_ms, rng);
        d.counters.callouts_refused += 1;
        d.counters.record(&outcome);
        outcome
    }

    /// A callout finished: the destination that started it and what became of the batch;
    /// `Unknown` when this delivery did not start it.
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        retry_after_ms: Option<u64>,
        now_ms: u64,
        rng: &mut dyn Random,
    ) -> (usize, Outcome) {
        for (i, d) in self.dests.iter_mut().enumerate() {
            let Some(disp) = &mut d.dispatcher else {
                continue;
            };
            let outcome = disp.on_response(token, status, retry_after_ms, now_ms, rng);
            if outcome != Outcome::Unknown {
                d.counters.record(&outcome);
                return (i, outcome);
            }
        }
        (0, Outcome::Unknown)
    }

    /// How the log names destination `dest`: `None` for a single `http` object.
    pub fn label(&self, dest: usize) -> Option<&str> {
        self.dests.get(dest)?.label.as_deref()
    }

    /// A queue worker's waiting events as one message, and how many it holds.
    pub fn handoff_message(&self) -> Option<(Vec<u8>, usize)> {
        let h = self.handoff.as_ref()?;
        let n = h.waiting();
        (n > 0).then(|| (handover::pack(h.waiting_events()), n))
    }

    /// The message of `n` events is in the queue: the service holds them now.
    pub fn handed_over(&mut self, n: usize) {
        if let Some(h) = &mut self.handoff {
            h.discard_waiting(n);
        }
    }

    /// The queue service takes a worker's message. The worker counted its events as
    /// captured; what the message lost on the way is counted here, for every destination,
    /// as failed to send.
    pub fn receive(&mut self, msg: &[u8], now_ms: u64) {
        let got = handover::unpack(msg);
        let lost = got.lost.min(self.lost_cap);
        for d in &mut self.dests {
            d.counters.dropped_send_failed += lost;
        }
        for r in got.records {
            self.hold(r, now_ms);
        }
    }

    /// Events held, all destinations together: waiting, in flight, waiting for a retry or
    /// for the hand-over (an event several destinations hold is counted by each).
    pub fn held(&self) -> usize {
        self.dests.iter().map(|d| d.buffered()).sum::<usize>()
            + self.handoff.as_ref().map_or(0, |h| h.held())
    }

    /// The events one destination holds; a worker's hand-over holds them for every one.
    fn held_by(&self, d: &Destination) -> usize {
        d.buffered() + self.handoff.as_ref().map_or(0, |h| h.held())
    }

    /// A request `llm.force_stream_usage` had to pass unchanged.
    pub fn count_unmodified(&mut self) {
        self.counters.llm_requests_unmodified += 1;
    }

    /// Gives each metric, in `metric_names` order, its slot in the root's `Published`.
    pub fn set_slots(&mut self, slots: Vec<usize>) {
        self.slots = slots;
    }

    /// Adds each metric's value now (the gauge included) at its slot in `into`: a tick
    /// publishes without comparing a name.
    pub fn add_values(&self, into: &mut [u64]) {
        self.add_values_at(&self.slots, into);
    }

    fn add_values_at(&self, slots: &[usize], into: &mut [u64]) {
        let mut slots = slots.iter();
        let mut add = |v: u64| {
            if let Some(x) = slots.next().and_then(|s| into.get_mut(*s)) {
                *x += v;
            }
        };
        let own = self
            .counters
            .values(self.handoff.as_ref().map_or(0, |h| h.held()) as u64);
        for (i, _) in &self.names {
            add(own[*i]);
        }
        for d in &self.dests {
            let v = d.counters.values(self.held_by(d) as u64);
            for (i, _) in &d.names {
                add(v[*i]);
            }
        }
    }

    /// Every metric by name with its value now, for the tests.
    #[cfg(test)]
    pub fn books(&self) -> Vec<(String, u64)> {
        let names: Vec<String> = self.metric_names().map(|(n, _)| n.to_string()).collect();
        let mut values = vec![0; names.len()];
        self.add_values_at(&(0..names.len()).collect::<Vec<_>>(), &mut values);
        names.into_iter().zip(values).collect()
    }

    /// Metric names and whether each is the gauge, for defining them up front.
    pub fn metric_names(&self) -> impl Iterator<Item = (&str, bool)> {
        let own = self.names.iter();
        own.chain(self.dests.iter().flat_map(|d| d.names.iter()))
            .map(|(i, n)| (n.as_str(), *i == metrics::GAUGE))
    }

    /// Given up (a configuration replaced too often): what each destination holds that is
    /// not in flight is dropped and counted as failed to send. Batches in flight stay: their
    /// answers still book them (an event the collector acknowledges is delivered, however
    /// late). Returns the most events one destination lost.
    pub fn abandon(&mut self) -> usize {
        let handoff = self.handoff.as_mut().map_or(0, |h| {
            let n = h.waiting();
            h.discard_waiting(n);
            n
        });
        let mut most = 0;
        for d in &mut self.dests {
            let n = handoff + d.dispatcher.as_mut().map_or(0, |disp| disp.drop_unsent());
            d.counters.dropped_send_failed += n as u64;
            most = most.max(n);
        }
        self.abandoned = true;
        most
    }

    /// Whether `abandon` was called.
    pub fn abandoned(&self) -> bool {
        self.abandoned
    }

    /// The once-per-event counters (captured, llm), and the log-only books.
    #[cfg(test)]
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The books of destination `dest`, for the tests.
    #[cfg(test)]
    pub fn dest_counters(&self, dest: usize) -> Counters {
        self.dests[dest].counters
    }

    /// The events destination `dest` holds, for the tests.
    #[cfg(test)]
    pub fn dest_held(&self, dest: usize) -> usize {
        self.held_by(&self.dests[dest])
    }
}

/// Holds `rec` at `d`, or counts it dropped when `d`'s buffer is full.
fn offer(d: &mut Destination, rec: Record, now_ms: u64) {
    let held = match &mut d.dispatcher {
        Some(disp) => disp.offer(rec, now_ms),
        None => false,
    };
    if !held {
        d.counters.dropped_buffer_full += 1;
    }
}

#[cfg(test)]
mod tests;
