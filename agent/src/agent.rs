//! The main loop: one VM (like an Envoy worker), fed log entries in groups between ticks,
//! with callout answers and timeouts handed to it only between groups.

use crate::answer::Answer;
use crate::books::Books;
use crate::caddy_log::Malformed;
use crate::callout::Client;
use crate::clock::now_ns;
use crate::dead_letter::DeadLetter;
use crate::follow::Follower;
use crate::state::{self, Mark};
use crate::tuning::{GROUP, IDLE, SAVE_EVERY};
use crate::{listen, metrics, rest_proxy};
use proxy_wasm_host::Vm;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A filter log line's level, as Envoy names it.
pub(crate) fn level_name(l: i32) -> &'static str {
    match l {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

mod flights;
mod reading;

pub use flights::Flight;

pub struct Agent {
    pub(crate) vm: Vm,
    pub(crate) client: Client,
    pub(crate) answers: Receiver<Answer>,
    pub(crate) in_flight: HashMap<u32, Flight>,
    pub(crate) books: Books,
    pub(crate) follower: Option<Follower>,
    pub(crate) listen: Option<Receiver<listen::Input>>,
    pub(crate) period: Duration,
    pub(crate) timer: bool,
    pub(crate) next_tick: Instant,
    pub(crate) dropped_seen: i64,
    /// Entries were run since the last tick: answers wait for the next one.
    pub(crate) group_open: bool,
    /// When the open group began.
    pub(crate) group_start: Instant,
    pub(crate) counts: metrics::Agent,
    pub(crate) malformed: BTreeMap<Malformed, u64>,
    pub(crate) state: Option<PathBuf>,
    pub(crate) saved: Option<Vec<Mark>>,
    pub(crate) saved_at: Instant,
    pub(crate) save_failed: bool,
    pub(crate) page: Arc<Mutex<String>>,
    pub(crate) salt: u64,
    pub(crate) listen_seq: u64,
    pub(crate) saw_per_stream: bool,
    pub(crate) warned_pooled: bool,
    pub(crate) dead_letter: Option<DeadLetter>,
    /// Reading pauses while the filter holds this many events or more (the file is the
    /// buffer): `buffer_size − batch_size`, so a batch can always be cut and sent.
    pub(crate) pause_at: u64,
    /// `buffer_events` at the last tick, and events made since (the gauge is published at
    /// ticks only).
    pub(crate) held_at_tick: u64,
    pub(crate) made_since_tick: u64,
    pub(crate) answered_since_tick: bool,
    pub(crate) paused: bool,
    /// Entries lost anyway, by reason (`usage_agent_entries_lost_total`).
    pub(crate) lost_entries: BTreeMap<&'static str, u64>,
    /// `--listen-http` beside the filter: its lines join `/metrics`.
    pub(crate) rest: Option<Arc<rest_proxy::Counts>>,
}

/// The reasons `usage_agent_entries_lost_total` is shown with, even at 0.
pub const ENTRY_LOSSES: [&str; 2] = ["refused", "buffer_full"];
/// The reasons `usage_agent_bytes_lost_total` is shown with, even at 0.
pub const BYTE_LOSSES: [&str; 2] = ["deleted_unread", "truncated_unread"];

impl Agent {
    /// One turn of the main loop.
    pub(crate) fn step(&mut self) -> Result<(), String> {
        if Instant::now() >= self.next_tick {
            self.tick()?;
            let next = self.next_tick + self.period;
            self.next_tick = next.max(Instant::now());
        } else if self.group_due() || (self.paused && self.answered_since_tick) {
            // An early tick: the filter checks its triggers and publishes its counters, so
            // the group can be closed and the answers fed (or, paused, what it holds now).
            self.tick()?;
        }
        if !self.group_open {
            self.feed_answers(None)?;
            self.expire()?;
        }
        self.send_new();
        let n = self.read_group()?;
        self.drain_logs();
        self.save(false);
        if n == 0 {
            let wait = self
                .next_tick
                .saturating_duration_since(Instant::now())
                .min(IDLE);
            if self.group_open || self.listen.is_some() {
                std::thread::sleep(wait);
            } else {
                self.feed_answers(Some(wait))?;
            }
        }
        Ok(())
    }

    fn tick(&mut self) -> Result<(), String> {
        self.vm.set_clock_ns(now_ns());
        if self.timer {
            self.vm
                .tick()
                .map_err(|e| format!("the filter failed: {e:#}"))?;
        }
        self.end_group();
        self.held_at_tick = self.vm.metric("usage_filter.buffer_events").max(0) as u64;
        self.made_since_tick = 0;
        self.answered_since_tick = false;
        self.drain_logs();
        self.render();
        Ok(())
    }

    /// The open group should end now: the tick is due, or callouts are in flight (their
    /// answers wait for the group's end) and the group is `GROUP` old. Starts the callouts
    /// the filter made meanwhile (sending is not answering: the books are not affected).
    fn group_due(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.next_tick {
            return true;
        }
        if !self.group_open || now.duration_since(self.group_start) < GROUP {
            return false;
        }
        self.send_new();
        !self.in_flight.is_empty()
    }

    /// After a tick: which entries of the group the filter dropped, and whether it holds
    /// anything at all.
    fn end_group(&mut self) {
        let dropped = self.vm.metric("usage_filter.events_dropped_buffer_full");
        let d = (dropped - self.dropped_seen).max(0) as u64;
        self.dropped_seen = dropped;
        if d > 0 {
            *self.lost_entries.entry("buffer_full").or_default() += d;
        }
        self.send_new();
        let quiet = self.vm.metric("usage_filter.buffer_events") == 0 && self.in_flight.is_empty();
        self.books.tick(d, quiet);
        self.group_open = false;
        if !self.saw_per_stream
            && !self.warned_pooled
            && self.vm.metric("usage_filter.events_captured") > 0
        {
            self.warned_pooled = true;
            eprintln!(
                "usage-agent: warning: this filter build does not draw event ids per stream; \
                 entries read again after a restart get new ids and the saved offset only \
                 moves at quiet moments of the filter"
            );
        }
    }

    /// The filter's log lines, on stderr with their level.
    pub(crate) fn drain_logs(&mut self) {
        let logs = self.vm.take_logs();
        if logs.is_empty() {
            return;
        }
        let err = std::io::stderr();
        let mut w = err.lock();
        for l in logs {
            let _ = writeln!(w, "[{}] {}", level_name(l.level), l.message);
        }
    }

    pub(crate) fn render(&mut self) {
        self.counts.malformed = Malformed::ALL
            .iter()
            .map(|k| (k.name(), self.malformed.get(k).copied().unwrap_or(0)))
            .collect();
        self.counts.lines_behind = self.books.pending() as u64;
        self.counts.entries_forgotten = self.books.forgotten;
        self.counts.entries_lost = ENTRY_LOSSES
            .iter()
            .map(|r| (*r, self.lost_entries.get(r).copied().unwrap_or(0)))
            .collect();
        self.counts.reading_paused = self.paused;
        let filter: Vec<_> = self
            .vm
            .metrics()
            .into_iter()
            .map(|(n, v)| {
                let kind = self
                    .vm
                    .metric_kind(&n)
                    .unwrap_or(proxy_wasm_host::MetricKind::Gauge);
                (n, kind, v)
            })
            .collect();
        let mut page = metrics::render(&filter, &self.counts);
        if let Some(r) = &self.rest {
            page += &rest_proxy::render(r);
        }
        if let Ok(mut p) = self.page.lock() {
            *p = page;
        }
    }

    /// Saves the safe positions when they moved (at most every `SAVE_EVERY` unless `now`).
    fn save(&mut self, now: bool) {
        let Some(path) = &self.state else { return };
        let Some(f) = &self.follower else { return };
        if !now && self.saved_at.elapsed() < SAVE_EVERY {
            return;
        }
        let marks = f.marks(&self.books.oldest_pending());
        if Some(&marks) == self.saved.as_ref() {
            return;
        }
        match state::save(path, &marks) {
            Ok(()) => {
                self.saved = Some(marks);
                self.saved_at = Instant::now();
                self.save_failed = false;
            }
            Err(e) if !self.save_failed => {
                self.save_failed = true;
                eprintln!("usage-agent: cannot save {}: {e}", path.display());
            }
            Err(_) => {}
        }
    }

    /// SIGTERM/SIGINT: the filter's `on_done` (it sends everything it holds), then answers
    /// and ticks until it calls `proxy_done` or `limit` passes; the state is saved last.
    pub(crate) fn shutdown(mut self, limit: Duration) -> Result<(), String> {
        self.tick()?;
        self.vm.set_clock_ns(now_ns());
        let mut done = self
            .vm
            .shutdown()
            .map_err(|e| format!("the filter failed: {e:#}"))?;
        self.send_new();
        let until = Instant::now() + limit;
        while !(done || self.vm.done_called()) && Instant::now() < until {
            self.feed_answers(Some(Duration::from_millis(5)))?;
            self.expire()?;
            if Instant::now() >= self.next_tick {
                self.tick()?;
                self.next_tick = Instant::now() + self.period;
            }
            self.drain_logs();
            done = done || self.vm.done_called();
        }
        self.drain_logs();
        let held = self.vm.metric("usage_filter.buffer_events");
        if done || self.vm.done_called() {
            // Everything the filter held was delivered or given up on (and counted).
            self.books.tick(0, true);
        } else {
            eprintln!(
                "usage-agent: stopped waiting after {} ms with {held} events held; they are \
                 read again at the next start",
                limit.as_millis()
            );
        }
        self.render();
        self.save(true);
        Ok(())
    }
}
