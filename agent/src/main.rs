//! `usage-agent`: runs the unchanged usage-filter `.wasm` beside Caddy. Each entry of
//! Caddy's JSON access log (followed from a file, or received over TCP from `output net`)
//! becomes one HTTP stream through the filter, on the same proxy-wasm host as the test
//! harness (`host-tests`), with a real clock, real timers and real HTTP callouts.
//!
//! The main loop owns the VM (one thread, like an Envoy worker). It alternates
//! - a tick (real time), then the callout answers and timeouts that came in meanwhile,
//! - a group of log entries, until the next tick is due.
//!
//! No answer is fed to the VM inside a group, which is what lets `books` tell which
//! entries the filter dropped for a full buffer (see there).

mod books;
mod caddy_log;
mod callout;
mod cli;
mod follow;
mod listen;
mod metrics;

use books::Books;
use caddy_log::Malformed;
use callout::{Answer, Client, Outcome};
use follow::{Follower, Item, Position};
use host_tests::{Profile, Vm};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Asks the filter for one `random_get` of 10 bytes per event id, made in the stream's
/// `on_log`: the agent answers it from the entry, so an entry read again after a restart
/// gets the same event id.
const VM_CONFIG: &[u8] = br#"{"event_ids":"per_stream"}"#;
/// How often the saved offset may be rewritten.
const SAVE_EVERY: Duration = Duration::from_millis(200);
/// Entries between two looks at the clock.
const BATCH: usize = 256;
/// Longest idle wait (new lines in the file are noticed this fast).
const IDLE: Duration = Duration::from_millis(5);
/// Longest group while callouts are in flight: their answers wait for the group's end (an
/// extra tick), so this bounds how long a finished callout holds its `max_in_flight` slot.
/// With groups as long as the filter's timer period (100 ms), delivery was capped at
/// `max_in_flight × batch_size` per period while reading a backlog.
const GROUP: Duration = Duration::from_millis(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::parse(&args, &|n| std::env::var(n).ok()) {
        Ok(cli::Parsed::Run(o)) => o,
        Ok(cli::Parsed::Help) => {
            println!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("usage-agent: {e}");
            return ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("usage-agent: {}", e.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn os_random_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b) ^ now_ns()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random part of an entry's event id, from what identifies the entry: for a file,
/// its identity, the entry's offset and its bytes (a copy-truncated file reuses offsets).
fn id_bytes(k1: u64, k2: u64, line: &[u8]) -> [u8; 10] {
    let mut a = mix(k1 ^ 0x243F_6A88_85A3_08D3);
    let mut b = mix(k2 ^ 0x1319_8A2E_0370_7344);
    for c in line.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        a = mix(a ^ w);
        b = mix(b ^ w.rotate_left(29) ^ a);
    }
    a = mix(a ^ line.len() as u64);
    b = mix(b ^ a);
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    out
}

/// The event id the filter makes from these bytes in an `on_log` at `end_ns`.
fn event_id(end_ns: u64, bytes: &[u8; 10]) -> u128 {
    uuid::Builder::from_unix_timestamp_millis(end_ns / 1_000_000, bytes)
        .into_uuid()
        .as_u128()
}

/// What the agent needs to know of the plugin configuration.
struct Settings {
    timeout_ms: u64,
    buffer_size: usize,
}

fn settings(config: &str) -> Settings {
    let v: serde_json::Value = serde_json::from_str(config).unwrap_or_default();
    let http = &v["http"];
    Settings {
        timeout_ms: http["timeout_ms"].as_u64().unwrap_or(5000),
        buffer_size: http["buffer_size"].as_u64().unwrap_or(10_000) as usize,
    }
}

struct Flight {
    deadline: Instant,
    ids: Vec<u128>,
}

struct Agent {
    vm: Vm,
    client: Client,
    answers: Receiver<Answer>,
    in_flight: HashMap<u32, Flight>,
    books: Books<Position>,
    follower: Option<Follower>,
    listen: Option<Receiver<listen::Input>>,
    period: Duration,
    timer: bool,
    next_tick: Instant,
    dropped_seen: i64,
    /// Entries were run since the last tick: answers wait for the next one.
    group_open: bool,
    /// When the open group began.
    group_start: Instant,
    counts: metrics::Agent,
    malformed: BTreeMap<Malformed, u64>,
    state: Option<PathBuf>,
    saved: Option<Position>,
    saved_at: Instant,
    save_failed: bool,
    page: Arc<Mutex<String>>,
    salt: u64,
    listen_seq: u64,
    saw_per_stream: bool,
    warned_pooled: bool,
}

fn level_name(l: i32) -> &'static str {
    match l {
        0 => "trace",
        1 => "debug",
        2 => "info",
        3 => "warn",
        4 => "error",
        _ => "critical",
    }
}

fn run(o: cli::Options) -> Result<(), String> {
    let config = match &o.config {
        Some(p) => {
            std::fs::read_to_string(p).map_err(|e| format!("--config {}: {e}", p.display()))?
        }
        None => "{}".to_string(),
    };
    if let Err(e) = std::fs::metadata(&o.wasm) {
        return Err(format!("--wasm {}: {e}", o.wasm.display()));
    }
    let names: Vec<String> = o.clusters.iter().map(|(n, _)| n.clone()).collect();
    let mut b = Vm::with_profile(Profile::Envoy)
        .wasm(&o.wasm)
        .fuel(false)
        .config_str(&config)
        .vm_config(VM_CONFIG.to_vec())
        .random_seed(os_random_u64())
        .log_level(2)
        .clusters_only(&names);
    for (k, v) in &o.env {
        b = b.env(k, v);
    }
    let mut vm = match b.start() {
        Ok(vm) => vm,
        Err(e) => {
            for l in e.logs.iter().filter(|l| l.level < 4) {
                eprintln!("[{}] {}", level_name(l.level), l.message);
            }
            // The filter names the refused key in an error line.
            let refused = e.logs.iter().rev().find(|l| l.level >= 4).map(|l| {
                l.message
                    .strip_prefix("usage-filter: ")
                    .unwrap_or(&l.message)
                    .to_string()
            });
            return Err(match refused {
                Some(m) => match &o.config {
                    Some(p) => format!("--config {}: {m}", p.display()),
                    None => format!("plugin configuration: {m}"),
                },
                None => format!("--wasm {}: {}", o.wasm.display(), e.message),
            });
        }
    };
    // The harness keeps every finished callout (and its body) for its tests; the agent
    // keeps none, or memory grows by a batch body per callout.
    vm.limit_history(0);
    let s = settings(&config);
    let saved = match &o.state {
        Some(p) => follow::load_state(p).map_err(|e| format!("--state {}: {e}", p.display()))?,
        None => None,
    };
    let page = Arc::new(Mutex::new(String::new()));
    if let Some(addr) = &o.metrics {
        let local =
            metrics::serve(addr, page.clone()).map_err(|e| format!("--metrics {addr}: {e}"))?;
        eprintln!("usage-agent: metrics at http://{local}/metrics");
    }
    let listen = match &o.listen {
        Some(addr) => {
            let (tx, rx) = mpsc::sync_channel(listen::CHANNEL);
            let local = listen::start(addr, tx).map_err(|e| format!("--listen {addr}: {e}"))?;
            eprintln!("usage-agent: listening for log lines on {local}");
            Some(rx)
        }
        None => None,
    };
    let follower = o.follow.as_ref().map(|p| {
        eprintln!("usage-agent: following {}", p.display());
        Follower::new(p, saved)
    });
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(|e| format!("signals: {e}"))?;
    }
    let (tx, answers) = mpsc::channel();
    let period_ms = vm.tick_period_ms() as u64;
    let mut a = Agent {
        vm,
        client: Client::new(&o.clusters, tx),
        answers,
        in_flight: HashMap::new(),
        // Beyond the filter's buffer (all it can hold) plus what is in the pipe.
        books: Books::new(s.buffer_size.saturating_mul(2) + 10_000),
        follower,
        listen,
        period: Duration::from_millis(if period_ms > 0 { period_ms } else { 100 }),
        timer: period_ms > 0,
        next_tick: Instant::now(),
        dropped_seen: 0,
        group_open: false,
        group_start: Instant::now(),
        counts: metrics::Agent::default(),
        malformed: BTreeMap::new(),
        state: o.state.clone(),
        saved,
        saved_at: Instant::now(),
        save_failed: false,
        page,
        salt: os_random_u64(),
        listen_seq: 0,
        saw_per_stream: false,
        warned_pooled: false,
    };
    a.drain_logs();
    a.next_tick = Instant::now() + a.period;
    a.render();
    while !term.load(Ordering::Relaxed) {
        a.step()?;
    }
    eprintln!("usage-agent: stopping: flushing what the filter holds");
    a.shutdown(Duration::from_millis(s.timeout_ms + 1000))
}

impl Agent {
    /// One turn of the main loop.
    fn step(&mut self) -> Result<(), String> {
        if Instant::now() >= self.next_tick {
            self.tick()?;
            let next = self.next_tick + self.period;
            self.next_tick = next.max(Instant::now());
        } else if self.group_due() {
            // An early tick: the filter checks its triggers and publishes its counters, so
            // the group can be closed and the answers fed.
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
            self.in_flight.insert(c.token, Flight { deadline, ids });
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
        let r = match a.outcome {
            Outcome::Answered {
                status,
                headers,
                body,
            } => {
                if (200..300).contains(&status) {
                    for id in flight.ids {
                        self.books.delivered(id);
                    }
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
                let got = f.poll(BATCH, &mut |item| {
                    if err.is_some() {
                        return;
                    }
                    let r = match item {
                        Item::Line { start, end, bytes } => {
                            let key = (start.file.dev << 32) ^ start.file.ino;
                            let rand = id_bytes(key, start.offset, bytes);
                            self.entry(bytes, rand, Some(start), Some(end))
                        }
                        Item::Skipped { kind, end } => {
                            self.skipped(kind);
                            self.books.skipped(end);
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
                if err.is_some() || got.map_or(true, |n| n < BATCH) || self.group_due() {
                    break;
                }
            }
            self.counts.bytes_unread = f.unread_bytes();
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
                            self.entry(&line, rand, None, None)?;
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
        end: Option<Position>,
    ) -> Result<(), String> {
        self.counts.lines_read += 1;
        let e = match caddy_log::parse(line) {
            Ok(e) => e,
            Err(kind) => {
                self.malformed_line(kind, line);
                if let Some(end) = end {
                    self.books.skipped(end);
                }
                return Ok(());
            }
        };
        if !self.group_open {
            self.group_open = true;
            self.group_start = Instant::now();
        }
        let mut req = self
            .vm
            .request()
            .headers_exact(e.headers)
            .body_sizes(e.bytes_read, e.size)
            .timed(e.start_ns, e.end_ns)
            .random_bytes(rand.to_vec());
        for (k, v) in &e.response_headers {
            req = req.response_header(k, &String::from_utf8_lossy(v));
        }
        let out = if e.status == 0 {
            req.abort()
        } else {
            req.respond(e.status)
        }
        .map_err(|err| format!("the filter failed: {err:#}"))?;
        let event = (out.random_scripted == 10).then(|| event_id(e.end_ns, &rand));
        self.saw_per_stream |= event.is_some();
        self.books.read(start, end, event);
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
    fn drain_logs(&mut self) {
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

    fn render(&mut self) {
        self.counts.malformed = Malformed::ALL
            .iter()
            .map(|k| (k.name(), self.malformed.get(k).copied().unwrap_or(0)))
            .collect();
        self.counts.lines_behind = self.books.pending() as u64;
        self.counts.entries_forgotten = self.books.forgotten;
        let filter: Vec<_> = self
            .vm
            .metrics()
            .into_iter()
            .map(|(n, v)| {
                let kind = self
                    .vm
                    .metric_kind(&n)
                    .unwrap_or(host_tests::MetricKind::Gauge);
                (n, kind, v)
            })
            .collect();
        let page = metrics::render(&filter, &self.counts);
        if let Ok(mut p) = self.page.lock() {
            *p = page;
        }
    }

    /// Saves the safe position when it moved (at most every `SAVE_EVERY` unless `now`).
    fn save(&mut self, now: bool) {
        let Some(path) = &self.state else { return };
        let Some(pos) = self.books.safe() else { return };
        if Some(pos) == self.saved || (!now && self.saved_at.elapsed() < SAVE_EVERY) {
            return;
        }
        match follow::save_state(path, &pos) {
            Ok(()) => {
                self.saved = Some(pos);
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
    fn shutdown(mut self, limit: Duration) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_entry_gets_the_same_id_and_others_do_not() {
        let a = id_bytes(1, 100, b"{\"x\":1}");
        assert_eq!(a, id_bytes(1, 100, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(1, 101, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(2, 100, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(1, 100, b"{\"x\":2}"));
        let id = uuid::Uuid::from_u128(event_id(1_700_000_000_123_456_789, &a));
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos), (1_700_000_000, 123_000_000));
    }
}
