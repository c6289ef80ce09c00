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
use crate::config::{Config, LogOutput, Role};
use crate::dispatch::{Dispatcher, Outcome};
use crate::encode;
use crate::encode::timestamp::SecondCache;
use crate::event::Event;
use crate::metrics::Counters;
use crate::random::Random;
use crate::record::{handover, Record};

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
    /// Local and queue-service roles.
    dispatcher: Option<Dispatcher>,
    /// Queue-worker role: events waiting for the next hand-over, bounded like the buffer.
    handoff: Option<Buffer>,
    counters: Counters,
    seconds: SecondCache,
    /// The most a damaged hand-over message can be believed to have lost.
    lost_cap: u64,
}

impl Delivery {
    pub fn new(cfg: &Config) -> Self {
        let role = cfg.role();
        let http = cfg.http.as_ref();
        let buffer_size = http.map_or(0, |h| h.buffer_size);
        Delivery {
            role,
            log: cfg.log_sink.then_some(cfg.log_output),
            dispatcher: match (role, http) {
                (Role::Local | Role::QueueService, Some(h)) => Some(Dispatcher::new(h.clone())),
                _ => None,
            },
            handoff: (role == Role::QueueWorker).then(|| Buffer::new(buffer_size)),
            counters: Counters::default(),
            seconds: SecondCache::default(),
            lost_cap: buffer_size as u64,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// One finished request: encoded once, counted once, routed by role. Returns the log
    /// line to write, when the log sink is on.
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

    fn hold(&mut self, rec: Record, now_ms: u64) {
        let held = match (&mut self.dispatcher, &mut self.handoff) {
            (Some(d), _) => d.offer(rec, now_ms),
            (None, Some(h)) => h.push(rec, now_ms).is_ok(),
            (None, None) => false,
        };
        if !held {
            self.counters.dropped_buffer_full += 1;
        }
    }

    /// The next callout to start now, if any (see `Dispatcher::next_send`).
    pub fn next_callout(
        &mut self,
        now_ms: u64,
        flushing: bool,
        rng: &mut dyn Random,
    ) -> Option<(Batch, Callout)> {
        self.dispatcher.as_mut()?.next_send(now_ms, flushing, rng)
    }

    pub fn sent(&mut self, token: u32, batch: Batch) {
        if let Some(d) = &mut self.dispatcher {
            d.sent(token, batch);
        }
    }

    /// The host would not start the callout: a failed attempt.
    pub fn not_sent(&mut self, batch: Batch, now_ms: u64, rng: &mut dyn Random) -> Outcome {
        let Some(d) = &mut self.dispatcher else {
            return Outcome::Unknown;
        };
        let outcome = d.not_sent(batch, now_ms, rng);
        self.counters.callouts_refused += 1;
        self.counters.record(&outcome);
        outcome
    }

    /// A callout finished; `Unknown` when this delivery did not start it.
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        retry_after_ms: Option<u64>,
        now_ms: u64,
        rng: &mut dyn Random,
    ) -> Outcome {
        let Some(d) = &mut self.dispatcher else {
            return Outcome::Unknown;
        };
        let outcome = d.on_response(token, status, retry_after_ms, now_ms, rng);
        self.counters.record(&outcome);
        outcome
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
    /// captured; what the message lost on the way is counted here as failed to send.
    pub fn receive(&mut self, msg: &[u8], now_ms: u64) {
        let got = handover::unpack(msg);
        self.counters.dropped_send_failed += got.lost.min(self.lost_cap);
        for r in got.records {
            self.hold(r, now_ms);
        }
    }

    /// Events held: waiting, in flight, waiting for a retry or for the hand-over.
    pub fn held(&self) -> usize {
        self.dispatcher.as_ref().map_or(0, |d| d.buffered())
            + self.handoff.as_ref().map_or(0, |h| h.held())
    }

    /// A request `llm.force_stream_usage` had to pass unchanged.
    pub fn count_unmodified(&mut self) {
        self.counters.llm_requests_unmodified += 1;
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};
    use crate::dispatch::tests::Seq;

    fn config(json: &str) -> Config {
        config::parse(json.as_bytes(), &|_| None).unwrap()
    }

    fn local(extra: &str) -> Config {
        config(&format!(
            r#"{{"enabled":true,"sinks":["http"],"http":{{"cluster":"c","batch_size":2,"buffer_size":3{extra}}}}}"#
        ))
    }

    fn event() -> Event<'static> {
        Event {
            api_path: "/v1/x".into(),
            method: "GET".into(),
            status_code: 200,
            ..Default::default()
        }
    }

    fn books(d: &Delivery) {
        let c = d.counters();
        assert_eq!(
            c.captured,
            c.delivered
                + c.dropped_buffer_full
                + c.dropped_send_failed
                + c.dropped_rejected
                + d.held() as u64,
            "{c:?} held {}",
            d.held()
        );
    }

    #[test]
    fn the_role_is_decided_by_the_configuration() {
        assert_eq!(
            Delivery::new(&config(r#"{"enabled":true}"#)).role(),
            Role::LogOnly
        );
        assert_eq!(Delivery::new(&local("")).role(), Role::Local);
    }

    #[test]
    fn log_only_counts_written_as_delivered() {
        let mut d = Delivery::new(&config(r#"{"enabled":true}"#));
        let line = d.finish(&event(), 0).unwrap();
        assert!(line.to_host_log && !line.to_filter_state);
        assert!(line.line.starts_with(b"{\"time\":"));
        assert_eq!(d.counters().delivered, 1);
        books(&d);
    }

    #[test]
    fn the_http_sink_writes_no_log_line_and_counts_every_outcome() {
        let mut d = Delivery::new(&local(r#","retry":{"max_attempts":2}"#));
        let mut r = Seq(0);
        for _ in 0..5 {
            assert_eq!(d.finish(&event(), 0), None);
        }
        assert_eq!(d.counters().dropped_buffer_full, 2);
        books(&d);
        let (b, c) = d.next_callout(0, false, &mut r).unwrap();
        assert_eq!(c.upstream, "c");
        d.sent(1, b);
        assert!(matches!(
            d.on_response(1, Some(503), None, 0, &mut r),
            Outcome::Retrying { .. }
        ));
        books(&d);
        let (b, _) = d.next_callout(100_000, false, &mut r).unwrap();
        d.sent(2, b);
        assert!(matches!(
            d.on_response(2, Some(503), None, 0, &mut r),
            Outcome::Exhausted { .. }
        ));
        let (b, _) = d.next_callout(200_000, false, &mut r).unwrap();
        assert!(matches!(
            d.not_sent(b, 200_000, &mut r),
            Outcome::Retrying { .. }
        ));
        let (b, _) = d.next_callout(300_000, false, &mut r).unwrap();
        d.sent(3, b);
        d.on_response(3, Some(200), None, 0, &mut r);
        let c = d.counters();
        assert_eq!(
            (
                c.captured,
                c.delivered,
                c.dropped_send_failed,
                c.batch_retries
            ),
            (5, 1, 2, 2)
        );
        assert_eq!((c.batches_sent, c.batches_failed), (1, 1));
        books(&d);
    }

    fn queue(service: bool) -> Config {
        config(&format!(
            r#"{{"enabled":true,"sinks":["http"],"http":{{"cluster":"c","buffer_size":4,"batch_size":2}},
                "dispatcher":{{"mode":"shared_queue","service":{service}}}}}"#
        ))
    }

    #[test]
    fn a_worker_hands_over_what_it_holds_and_the_books_balance_across_vms() {
        let mut worker = Delivery::new(&queue(false));
        let mut service = Delivery::new(&queue(true));
        assert_eq!(worker.role(), Role::QueueWorker);
        assert_eq!(service.role(), Role::QueueService);
        for _ in 0..6 {
            worker.finish(&event(), 0);
        }
        assert_eq!(worker.counters().dropped_buffer_full, 2);
        let (msg, n) = worker.handoff_message().unwrap();
        assert_eq!(n, 4);
        worker.handed_over(n);
        assert_eq!(worker.held(), 0);
        assert!(worker.handoff_message().is_none());
        service.receive(&msg, 0);
        assert_eq!(service.held(), 4);
        let (w, s) = (worker.counters(), service.counters());
        assert_eq!(
            w.captured + s.captured,
            w.dropped_buffer_full + s.dropped_buffer_full + (worker.held() + service.held()) as u64
        );
    }

    #[test]
    fn records_lost_from_a_damaged_message_are_counted() {
        let mut worker = Delivery::new(&queue(false));
        let mut service = Delivery::new(&queue(true));
        for _ in 0..3 {
            worker.finish(&event(), 0);
        }
        let (msg, n) = worker.handoff_message().unwrap();
        worker.handed_over(n);
        service.receive(&msg[..msg.len() - 5], 0);
        assert_eq!(service.held(), 2);
        assert_eq!(service.counters().dropped_send_failed, 1);
        let (w, s) = (worker.counters(), service.counters());
        assert_eq!(
            w.captured,
            s.dropped_send_failed + service.held() as u64,
            "the books balance across the two VMs"
        );
        // A corrupt count cannot claim more than the buffer could ever have held.
        service.receive(&[0xff; 40], 0);
        assert_eq!(service.counters().dropped_send_failed, 1 + 4);
    }
}
