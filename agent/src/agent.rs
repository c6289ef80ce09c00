//! The main loop: one VM (like an Envoy worker), fed log entries in groups between ticks,
//! with callout answers and timeouts handed to it only between groups.

use crate::books::Books;
use crate::caddy_log::Malformed;
use crate::callout::{Answer, Client, Outcome};
use crate::dead_letter::{self, DeadLetter};
use crate::follow::{Follower, Item, Position};
use crate::ids::{event_id, id_bytes};
use crate::state::{self, Mark};
use crate::tuning::{BATCH, GROUP, IDLE, SAVE_EVERY};
use crate::{caddy_log, callout};
use crate::{level_name, listen, metrics, now_ns};
use proxy_wasm_host::stream::SIZES_CHUNK;
use proxy_wasm_host::{Body, Response, Stream, Timing, Vm};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Flight {
    pub(crate) deadline: Instant,
    pub(crate) ids: Vec<u128>,
    pub(crate) upstream: String,
    /// The plain body, kept only for `--dead-letter`.
    pub(crate) body: Option<Vec<u8>>,
}

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

    /// Callouts the filter made since the last look: start them.
    fn send_new(&mut self) {
        for c in self.vm.take_new_callouts() {
            let deadline = Instant::now() + Duration::from_millis(c.timeout_ms as u64);
            let ids = callout::ids_in(&c);
            let body = self.dead_letter.as_ref().map(|_| c.plain_body());
            self.in_flight.insert(
                c.token,
                Flight {
                    deadline,
                    ids,
                    upstream: c.upstream.clone(),
                    body,
                },
            );
            self.client.send(c);
        }
        self.counts.callouts_in_flight = self.in_flight.len() as u64;
    }

    /// Answers that came in (waiting up to `wait` for the first when given).
    fn feed_answers(&mut self, wait: Option<Duration>) -> Result<(), String> {
        let mut first = match wait {
            Some(w) => self.answers.recv_timeout(w).ok(),
            None => None,
        };
        loop {
            let a = match first.take() {
                Some(a) => a,
                None => match self.answers.try_recv() {
                    Ok(a) => a,
                    Err(_) => break,
                },
            };
            self.answer(a)?;
        }
        self.send_new();
        Ok(())
    }

    fn answer(&mut self, a: Answer) -> Result<(), String> {
        let Some(flight) = self.in_flight.remove(&a.token) else {
            return Ok(()); // timed out already
        };
        self.vm.set_clock_ns(now_ns());
        self.answered_since_tick = true;
        let r = match a.outcome {
            Outcome::Answered {
                status,
                headers,
                body,
            } => {
                if (200..300).contains(&status) {
                    for id in &flight.ids {
                        self.books.delivered(*id);
                    }
                } else if dead_letter::refused(status) {
                    self.refused(&flight, status, &body);
                }
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.vm.reply(a.token, status, &h, &body)
            }
            Outcome::ConnectFailed => self.vm.refuse(a.token),
            Outcome::Reset => self.vm.reset(a.token),
        };
        r.map_err(|e| format!("the filter failed: {e:#}"))
    }

    /// The collector refused a batch: written aside with `--dead-letter`, else lost. Either
    /// way its entries no longer hold the saved position back, and reading goes on.
    fn refused(&mut self, flight: &Flight, status: u32, answer: &[u8]) {
        let n = flight.ids.len() as u64;
        let kept = match (&mut self.dead_letter, &flight.body) {
            (Some(d), Some(body)) => match d.write(&flight.upstream, status, answer, body) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("usage-agent: cannot write {}: {e}", d.path.display());
                    false
                }
            },
            _ => false,
        };
        if kept {
            self.counts.batches_dead_lettered += 1;
        } else {
            *self.lost_entries.entry("refused").or_default() += n;
            eprintln!(
                "usage-agent: lost {n} entries: {} refused their batch with {status} \
                 (give --dead-letter FILE to keep refused batches)",
                flight.upstream
            );
        }
        for id in &flight.ids {
            self.books.delivered(*id);
        }
    }

    /// Envoy's 504 for callouts past their timeout.
    fn expire(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let late: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.in_flight.remove(&t);
            self.vm.set_clock_ns(now_ns());
            self.vm
                .time_out(t)
                .map_err(|e| format!("the filter failed: {e:#}"))?;
        }
        self.send_new();
        Ok(())
    }

    /// Entries until the next tick is due or nothing more is there.
    fn read_group(&mut self) -> Result<usize, String> {
        let mut total = 0;
        let mut err = None;
        if let Some(mut f) = self.follower.take() {
            loop {
                let held = self.held_at_tick + self.made_since_tick;
                self.paused = held >= self.pause_at;
                if self.paused {
                    f.look();
                    for n in f.notes.drain(..) {
                        eprintln!("usage-agent: {n}");
                    }
                    break;
                }
                let room = ((self.pause_at - held) as usize).min(BATCH);
                let got = f.poll(room, &mut |item| {
                    if err.is_some() {
                        return;
                    }
                    let r = match item {
                        Item::Line { start, bytes, .. } => {
                            let rand = id_bytes(start.fp, start.offset, bytes);
                            self.entry(bytes, rand, Some(start))
                        }
                        Item::Skipped { kind, .. } => {
                            self.skipped(kind);
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        err = Some(e);
                    }
                });
                for n in f.notes.drain(..) {
                    eprintln!("usage-agent: {n}");
                }
                match got {
                    Ok(n) => total += n,
                    Err(e) => {
                        eprintln!("usage-agent: reading the log: {e}");
                        break;
                    }
                }
                if err.is_some() || got.map_or(true, |n| n < room) || self.group_due() {
                    break;
                }
            }
            (self.counts.bytes_unread, self.counts.files_pending) = f.backlog();
            self.counts.bytes_lost = BYTE_LOSSES
                .iter()
                .map(|r| (*r, f.lost_bytes.get(r).copied().unwrap_or(0)))
                .collect();
            self.follower = Some(f);
        }
        if let Some(e) = err {
            return Err(e);
        }
        if let Some(rx) = self.listen.take() {
            let r = (|| -> Result<(), String> {
                loop {
                    match rx.try_recv() {
                        Ok(listen::Input::Line(line)) => {
                            self.listen_seq += 1;
                            let rand = id_bytes(self.salt, self.listen_seq, &line);
                            self.entry(&line, rand, None)?;
                        }
                        Ok(listen::Input::Skipped(kind)) => self.skipped(kind),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                    total += 1;
                    if total % BATCH == 0 && self.group_due() {
                        break;
                    }
                }
                Ok(())
            })();
            self.listen = Some(rx);
            r?;
        }
        Ok(total)
    }

    /// One log entry through the filter.
    fn entry(
        &mut self,
        line: &[u8],
        rand: [u8; 10],
        start: Option<Position>,
    ) -> Result<(), String> {
        self.counts.lines_read += 1;
        let e = match caddy_log::parse(line) {
            Ok(e) => e,
            Err(kind) => {
                self.malformed_line(kind, line);
                return Ok(());
            }
        };
        if !self.group_open {
            self.group_open = true;
            self.group_start = Instant::now();
        }
        // The entry as it happened: its headers exactly, its body sizes (not the bodies), its
        // times, and the stream's random bytes from the entry; status 0 is a downstream reset.
        let response = (e.status != 0)
            .then(|| Response::new(e.status, e.response_headers, Body::Size(e.size)));
        let out = self
            .vm
            .run_stream(Stream {
                request_headers: e.headers,
                request_body: Body::Size(e.bytes_read),
                response,
                timing: Timing::Replay {
                    start_ns: e.start_ns,
                    end_ns: e.end_ns,
                },
                random_bytes: rand.to_vec(),
                chunk: SIZES_CHUNK,
            })
            .map_err(|err| format!("the filter failed: {err:#}"))?;
        let event = (out.random_scripted == 10).then(|| event_id(e.end_ns, &rand));
        self.saw_per_stream |= event.is_some();
        if event.is_some() || !self.saw_per_stream {
            self.made_since_tick += 1;
        }
        self.books.read(start, event);
        Ok(())
    }

    fn skipped(&mut self, kind: Malformed) {
        self.malformed_line(kind, b"");
    }

    /// Counted, and logged the first time of each kind.
    fn malformed_line(&mut self, kind: Malformed, line: &[u8]) {
        let n = self.malformed.entry(kind).or_default();
        *n += 1;
        if *n == 1 {
            let shown: String = String::from_utf8_lossy(&line[..line.len().min(120)]).into();
            eprintln!(
                "usage-agent: skipping a malformed line ({}): {shown:?} (each kind is logged once, \
                 all are counted in usage_agent_lines_malformed_total)",
                kind.name()
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
        let page = metrics::render(&filter, &self.counts);
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
