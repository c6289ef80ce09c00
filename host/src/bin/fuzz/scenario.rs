//! One scenario: a simulated proxy (one local VM, a log-only VM, or shared-queue workers and
//! their service on one hub, or a configuration VM fed configurations), driven by generated
//! cases and checked after each.

use crate::check::{self, Acks};
use crate::gen;
use crate::rng::Rng;
use crate::Stats;
use proxy_wasm_host::abi::Headers;
use proxy_wasm_host::metrics::*;
use proxy_wasm_host::{Callout, Vm};
use serde_json::{json, Value};
use std::collections::HashMap;

type R<T = ()> = Result<T, String>;

/// Linear memory any VM may reach: buffers of at most 600 events, keys and paths of up to
/// 64 KiB, callouts of up to 64 KiB of events.
const MEMORY_LIMIT: usize = 256 << 20;
/// The configuration VM lives for the whole run: it must stay flat.
const CONFIG_VM_LIMIT: usize = 16 << 20;

fn trap<T>(what: &str, r: anyhow::Result<T>) -> R<T> {
    r.map_err(|e| format!("{what}: {e:#}"))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Local,
    LogOnly,
    Queue,
    Configs,
}

struct Sim {
    /// Workers first; in `Queue` the service is last.
    vms: Vec<Vm>,
    kind: Kind,
    acks: Acks,
    /// Per VM: token -> (batch id, event ids) of callouts not yet answered.
    sent: Vec<HashMap<u32, (String, Vec<String>)>>,
    /// Change of the books no request caused: what damaged hand-over messages claimed.
    phantom: i64,
    queue_name: String,
    log: Vec<String>,
    /// Every delivered event was acknowledged by the collector (false once a
    /// reconfiguration made the VM log only, whose written lines count as delivered).
    exact_acks: bool,
    /// A reconfiguration made the VM a queue worker with no service: it cannot drain.
    stranded: bool,
}

/// Runs scenarios from `seed` until `budget` cases are used (the main loop's unit).
pub fn run(seed: u64, budget: u64, stats: &mut Stats) -> R {
    let mut r = Rng::new(seed);
    let kind = match r.below(100) {
        0..=44 => Kind::Local,
        45..=69 => Kind::Queue,
        70..=79 => Kind::LogOnly,
        _ => Kind::Configs,
    };
    let mut steps = r.range(20, 1500).min(budget.max(1));
    if let Some(stop) = std::env::var("FUZZ_STOP_AT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Replaying a failure: the same scenario cut after `stop` steps.
        steps = steps.min(stop);
    }
    stats.scenarios += 1;
    if kind == Kind::Configs {
        return configs(&mut r, steps, stats);
    }
    check::DAMAGED.with(|d| d.set(false));
    let mut sim = Sim::new(&mut r, kind)?;
    for _ in 0..steps {
        sim.step(&mut r, stats)?;
        stats.cases += 1;
    }
    sim.drain(&mut r)?;
    stats.events_acked += sim.acks.events;
    Ok(())
}

/// One scenario alone, to replay a failure.
pub fn run_one(seed: u64, stats: &mut Stats) -> R {
    run(seed, u64::MAX, stats)
}

fn vm_with(hub: &proxy_wasm_host::state::SharedHub, cfg: &Value, vm_id: &str) -> R<Vm> {
    let mut vm = Vm::envoy()
        .fuel(false)
        .hub(hub)
        .vm_id(vm_id)
        .log_level(2)
        .config(cfg.clone())
        .start()
        .map_err(|e| format!("start with {cfg}: {e}"))?;
    vm.limit_history(0);
    Ok(vm)
}

impl Sim {
    fn new(r: &mut Rng, kind: Kind) -> R<Sim> {
        let hub = Vm::new_hub();
        let mut log = Vec::new();
        let vms = match kind {
            Kind::Local => {
                let (h, with_log) = (gen::http_section(r), r.chance(20));
                let cfg = gen::top(r, Some(h), with_log);
                log.push(format!("local {cfg}"));
                vec![vm_with(&hub, &cfg, "usage_filter")?]
            }
            Kind::LogOnly => {
                let cfg = gen::top(r, None, true);
                log.push(format!("log only {cfg}"));
                vec![vm_with(&hub, &cfg, "usage_filter")?]
            }
            _ => {
                let http = gen::http_section(r);
                let mut service = gen::top(r, Some(http.clone()), false);
                service["dispatcher"] = json!({"mode": "shared_queue", "service": true});
                let service_vm = vm_with(&hub, &service, "usage_service")?;
                let mut vms = Vec::new();
                for _ in 0..r.range(1, 2) {
                    let with_log = r.chance(10);
                    let mut w = gen::top(r, Some(http.clone()), with_log);
                    w["dispatcher"] = json!({"mode": "shared_queue"});
                    log.push(format!("worker {w}"));
                    vms.push(vm_with(&hub, &w, "usage_filter")?);
                }
                log.push(format!("service {service}"));
                vms.push(service_vm);
                vms
            }
        };
        let n = vms.len();
        Ok(Sim {
            vms,
            kind,
            acks: Acks::default(),
            sent: vec![HashMap::new(); n],
            phantom: 0,
            queue_name: "usage_events".into(),
            log,
            exact_acks: true,
            stranded: false,
        })
    }

    fn context(&self, e: String) -> String {
        if std::env::var_os("FUZZ_TRACE").is_some() {
            for l in &self.log {
                eprintln!("  step: {l}");
            }
        }
        let tail: Vec<&String> = self.log.iter().rev().take(8).collect();
        format!(
            "{e}\n  {:?} scenario, first and last steps: {:?} ... {tail:?}",
            self.kind,
            self.log.first()
        )
    }

    /// The VM that sends callouts (the single VM, or the service).
    fn sender(&self) -> usize {
        self.vms.len() - 1
    }

    fn step(&mut self, r: &mut Rng, stats: &mut Stats) -> R {
        let pending = self.vms[self.sender()].pending();
        let action = r.below(100);
        let res = match action {
            0..=49 => {
                stats.requests += 1;
                self.request(r)
            }
            50..=74 if !pending.is_empty() => {
                stats.answers += 1;
                self.answer(r, &pending)
            }
            50..=74 => {
                stats.requests += 1;
                self.request(r)
            }
            75..=87 => {
                stats.clock += 1;
                self.clock(r)
            }
            88..=94 => match (self.kind, action) {
                (Kind::Queue, 88..=92) => {
                    stats.queue_messages += 1;
                    self.queue(r)
                }
                (Kind::Queue, _) | (_, 88..=90) => {
                    self.log.push("refusal".into());
                    let s = self.sender();
                    let status = if r.chance(50) {
                        None
                    } else {
                        Some(*r.pick(&[1, 2, 10, 12, 99, -1]))
                    };
                    self.vms[s].refuse_callouts_with(status);
                    Ok(())
                }
                _ => {
                    stats.configs += 1;
                    self.reconfigure(r)
                }
            },
            _ => {
                stats.clock += 1;
                let ms = r.size(500);
                self.log.push(format!("skip {ms} ms"));
                self.vms[0].skip_ms(ms);
                Ok(())
            }
        };
        res.and_then(|_| self.check())
            .map_err(|e| self.context(e))?;
        for vm in &self.vms {
            stats.max_memory = stats.max_memory.max(vm.memory_bytes());
        }
        Ok(())
    }

    fn request(&mut self, r: &mut Rng) -> R {
        let i = if self.kind == Kind::Queue {
            r.below(self.vms.len() as u64 - 1) as usize
        } else {
            0
        };
        let big = r.chance(2);
        let text = |r: &mut Rng| r.text_upto(if big { 64 * 1024 } else { 64 });
        let path: Vec<u8> = match r.below(10) {
            0 => text(r),
            1 => b"/health".to_vec(),
            _ => {
                let mut p = format!("/v1/{}", r.string_upto(20)).into_bytes();
                if r.chance(30) {
                    p.extend_from_slice(format!("?q={}", r.below(100)).as_bytes());
                }
                p
            }
        };
        let method = r
            .pick(&[
                "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "",
            ])
            .as_bytes()
            .to_vec();
        let key_name = if r.chance(80) {
            "x-subscription-key"
        } else {
            "x-api-key"
        };
        let mut headers: Headers = vec![
            (":method".into(), method),
            (":path".into(), path),
            (":authority".into(), b"api.example.com".to_vec()),
        ];
        if r.chance(85) {
            let k = if r.chance(70) {
                format!("k{}", r.below(50)).into_bytes()
            } else {
                text(r)
            };
            headers.push((key_name.into(), k));
        }
        if r.chance(20) {
            headers.push(("x-org".into(), text(r)));
        }
        if r.chance(50) {
            headers.push(("x-request-id".into(), r.text_upto(40)));
        }
        for _ in 0..r.size(6) {
            let name = String::from_utf8_lossy(&r.text_in(1, 20)).to_ascii_lowercase();
            headers.push((name, text(r)));
        }
        if r.chance(5) {
            // Pseudo-headers missing or repeated.
            let j = r.below(headers.len() as u64) as usize;
            if r.chance(50) {
                headers.remove(j);
            } else {
                let dup = headers[j].clone();
                headers.push(dup);
            }
        }
        let body = r.size(if big { 1 << 20 } else { 40_000 });
        let llm_body = r.chance(25).then(|| gen::llm_body(r));
        let response = match &llm_body {
            Some(b) => b.len() as u64,
            None => r.size(if big { 1 << 20 } else { 40_000 }),
        };
        let chunk = r.range(((body.max(response)) / 64).max(1), 64 * 1024);
        let upstream = if r.chance(70) {
            r.size(50)
        } else {
            r.size(3000)
        };
        let ending = r.below(100);
        self.log.push(format!(
            "request on vm {i}: {} headers, body {body}, response {response}, chunk {chunk}, upstream {upstream} ms, ending {ending}",
            headers.len()
        ));
        let vm = &mut self.vms[i];
        let mut req = vm
            .request()
            .headers_exact(headers)
            .body(body as usize)
            .response_body(response as usize)
            .chunk_size(chunk)
            .upstream_ms(upstream);
        if let Some(b) = llm_body {
            let ct = *r.pick(&[
                "text/event-stream",
                "application/json",
                "Application/JSON; charset=utf-8",
                "text/plain",
            ]);
            req = req
                .response_header("content-type", ct)
                .response_body_bytes(b);
            if r.chance(10) {
                let enc = *r.pick(&["gzip", "br", "identity"]);
                req = req.response_header("content-encoding", enc);
            }
        } else if r.chance(20) {
            req = req.response_header("content-type", "application/json");
        }
        let out = match ending {
            0..=69 => req.respond(gen::answer_status(r)),
            70..=79 => req.respond_raw_status(&r.text_upto(8)),
            80..=89 => req.local_reply(*r.pick(&[503, 404, 429, 500, 200])),
            _ => req.abort(),
        };
        let out = trap("request", out)?;
        if let Some(line) = out.filter_state.get("usage_event") {
            log_line(line)?;
        }
        Ok(())
    }

    fn answer(&mut self, r: &mut Rng, pending: &[Callout]) -> R {
        let s = self.sender();
        let c = r.pick(pending).clone();
        let vm = &mut self.vms[s];
        let what = r.below(100);
        self.log
            .push(format!("answer callout {} with {what}", c.token));
        match what {
            0..=79 => {
                let status = gen::answer_status(r);
                let headers = gen::answer_headers(r);
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = if r.chance(2) {
                    r.bytes_upto(1 << 20)
                } else {
                    r.text_upto(300)
                };
                trap("answer", vm.reply(c.token, status, &h, &body))?;
                if let Some((batch, ids)) = self.sent[s].remove(&c.token) {
                    if (200..300).contains(&status) {
                        self.acks.ack(&batch, &ids)?;
                    }
                }
            }
            80..=89 => {
                trap("reset", vm.reset(c.token))?;
                self.sent[s].remove(&c.token);
            }
            _ => {
                // No answer: Envoy times it out at its deadline.
                let ms = c.timeout_ms as u64 + r.below(50);
                trap("timeout", vm.advance_ms(ms))?;
            }
        }
        Ok(())
    }

    fn clock(&mut self, r: &mut Rng) -> R {
        let s = self.sender();
        let now = self.vms[s].now_ns();
        match r.below(20) {
            0 => {
                // Backwards: a host clock may step back (NTP); the filter must not trap.
                let back = r.size(10_000) * 1_000_000;
                self.log.push(format!("clock back {} ms", back / 1_000_000));
                self.vms[s].set_clock_ns(now.saturating_sub(back));
            }
            1 => {
                let ms = r.range(10_000, 120_000);
                self.log.push(format!("clock +{ms} ms"));
                trap("advance", self.vms[s].advance_ms(ms))?;
            }
            _ => {
                let ms = r.size(3000);
                self.log.push(format!("clock +{ms} ms"));
                trap("advance", self.vms[s].advance_ms(ms))?;
            }
        }
        for vm in self.vms.iter_mut() {
            trap("advance", vm.advance_ms(0))?;
        }
        Ok(())
    }

    fn queue_index(&self) -> Option<usize> {
        let hub = self.vms[0].hub();
        let hub = hub.borrow();
        hub.queues.iter().position(|q| q.name == self.queue_name)
    }

    /// A hand-over message damaged on the way, or one nobody sent.
    fn queue(&mut self, r: &mut Rng) -> R {
        let n = self.vms.len();
        // A few requests on a worker, so that a genuine hand-over is on its way.
        for _ in 0..r.range(1, 6) {
            let w = r.below(n as u64 - 1) as usize;
            let key = format!("k{}", r.below(10));
            let path = format!("/q/{}", r.string_upto(30));
            trap(
                "request",
                self.vms[w].request().path(&path).key(&key).respond(200),
            )?;
        }
        let books_before = {
            let vms: Vec<&Vm> = self.vms.iter().collect();
            let total = |m: &str| vms.iter().map(|v| v.metric(m)).sum::<i64>();
            (
                total(EVENTS_CAPTURED),
                total(EVENTS_DELIVERED)
                    + total(EVENTS_DROPPED_BUFFER_FULL)
                    + total(EVENTS_DROPPED_SEND_FAILED)
                    + total(BUFFER_EVENTS),
            )
        };
        for w in 0..n - 1 {
            trap("worker tick", self.vms[w].tick())?;
        }
        let Some(q) = self.queue_index() else {
            return Err("the service registered no queue".into());
        };
        let hub = self.vms[0].hub();
        let what = r.below(4);
        let genuine = {
            let mut hub = hub.borrow_mut();
            let queue = &mut hub.queues[q];
            match what {
                0 => {
                    // Truncated after its count: the loss is known and must be counted.
                    if let Some(mut m) = queue.items.pop_back() {
                        let cut = r.range(4.min(m.len() as u64), m.len() as u64) as usize;
                        m.truncate(cut);
                        queue.items.push_back(m);
                        true
                    } else {
                        false
                    }
                }
                1 => {
                    if let Some(mut m) = queue.items.pop_back() {
                        for _ in 0..r.range(1, 4) {
                            if m.is_empty() {
                                break;
                            }
                            let i = r.below(m.len() as u64) as usize;
                            m[i] ^= 1 << r.below(8);
                        }
                        if r.chance(30) {
                            let cut = r.below(m.len() as u64 + 1) as usize;
                            m.truncate(cut);
                        }
                        queue.items.push_back(m);
                    }
                    false
                }
                _ => {
                    let mut m = r.bytes_upto(600);
                    if r.chance(50) && m.len() >= 4 {
                        m[..4].copy_from_slice(&(r.size(5000) as u32).to_le_bytes());
                    }
                    queue.items.push_back(m);
                    false
                }
            }
        };
        hub.borrow_mut().queues[q].ready = true;
        self.log
            .push(format!("queue message {what}, genuine {genuine}"));
        trap("service tick", self.vms[n - 1].tick())?;
        if !genuine {
            check::DAMAGED.with(|d| d.set(true));
            let books_after = self.books()?;
            self.phantom += (books_after.1 - books_after.0) - (books_before.1 - books_before.0);
        }
        Ok(())
    }

    fn reconfigure(&mut self, r: &mut Rng) -> R {
        if self.kind == Kind::Queue {
            return Ok(());
        }
        let cfg = if r.chance(70) {
            let (h, log) = (gen::http_section(r), r.chance(20));
            gen::top(r, Some(h), log)
        } else {
            gen::mutated_config(r)
        };
        self.log.push(format!("reconfigure {cfg}"));
        let vm = &mut self.vms[0];
        vm.take_logs();
        let accepted = trap("reconfigure", vm.reconfigure(cfg))?;
        let logs = vm.take_logs();
        if let Some(l) = logs.iter().find(|l| l.message.contains("configured:")) {
            self.log.push(l.message.clone());
        }
        if !accepted {
            one_refusal_line(&logs)?;
        } else if logs
            .iter()
            .any(|l| l.message.contains("configured:") && l.message.contains("http=false"))
        {
            // Log only from now on: a written line counts as delivered, no collector sees it.
            self.exact_acks = false;
        } else if logs.iter().any(|l| l.message.contains("role=QueueWorker")) {
            // A shared-queue worker with no service in this proxy holds its events (bounded)
            // until one appears: nothing to drain.
            self.stranded = true;
        }
        Ok(())
    }

    /// Ticks every VM (workers first, so the service receives their hand-over) and returns
    /// (captured, delivered + dropped + held) over all of them.
    fn books(&mut self) -> R<(i64, i64)> {
        for vm in self.vms.iter_mut() {
            trap("tick", vm.tick())?;
        }
        // A message still in a queue is in transit, in nobody's books (a VM that became the
        // service hands its old worker's events to itself): one more tick receives it.
        let in_transit = {
            let hub = self.vms[0].hub();
            let hub = hub.borrow();
            hub.queues.iter().any(|q| !q.items.is_empty())
        };
        if in_transit {
            for vm in self.vms.iter_mut() {
                trap("tick", vm.tick())?;
            }
        }
        let vms: Vec<&Vm> = self.vms.iter().collect();
        let total = |n: &str| vms.iter().map(|v| v.metric(n)).sum::<i64>();
        Ok((
            total(EVENTS_CAPTURED),
            total(EVENTS_DELIVERED)
                + total(EVENTS_DROPPED_BUFFER_FULL)
                + total(EVENTS_DROPPED_SEND_FAILED)
                + total(BUFFER_EVENTS),
        ))
    }

    fn check(&mut self) -> R {
        let (captured, settled) = self.books()?;
        if std::env::var_os("FUZZ_TRACE").is_some() {
            self.log.push(format!("books {captured} {settled}"));
        }
        if captured + self.phantom != settled {
            return Err(format!(
                "books: captured {captured} (+{} claimed by damaged messages) != delivered + dropped + held {settled}: {:?}",
                self.phantom,
                self.vms.iter().map(|v| v.metrics()).collect::<Vec<_>>()
            ));
        }
        let trace = std::env::var_os("FUZZ_TRACE").is_some();
        for (i, vm) in self.vms.iter_mut().enumerate() {
            if let Some(t) = vm.trapped() {
                return Err(format!("vm {i} trapped: {t}"));
            }
            let mem = vm.memory_bytes();
            if mem > MEMORY_LIMIT {
                return Err(format!("vm {i} linear memory {mem} bytes"));
            }
            for c in vm.take_new_callouts() {
                let (batch, ids) =
                    check::body(&c).map_err(|e| format!("callout {}: {e}", c.token))?;
                self.sent[i].insert(c.token, (batch, ids));
            }
            let pending: Vec<u32> = vm.pending().iter().map(|c| c.token).collect();
            self.sent[i].retain(|t, _| pending.contains(t));
            for l in vm.take_logs() {
                if trace && !l.message.starts_with("{\"time\"") {
                    let short: String = l.message.chars().take(300).collect();
                    eprintln!("  vm {i} log {}: {short}", l.level);
                }
                if l.message.starts_with("{\"time\"") {
                    log_line(l.message.as_bytes())?;
                }
            }
        }
        if self.kind != Kind::LogOnly {
            let delivered: i64 = self.vms.iter().map(|v| v.metric(EVENTS_DELIVERED)).sum();
            let acked = self.acks.events as i64;
            if delivered < acked || (self.exact_acks && delivered != acked) {
                return Err(format!(
                    "delivered {delivered} but the collector acknowledged {acked} events"
                ));
            }
        }
        Ok(())
    }

    /// The end: the host stops refusing, the collector answers 200 until nothing is held,
    /// the proxy shuts down; then the books must balance with nothing held.
    fn drain(&mut self, r: &mut Rng) -> R {
        let _ = r;
        let s = self.sender();
        self.vms[s].refuse_callouts_with(None);
        let n = self.vms.len();
        let res = (|| -> R {
            for w in 0..n.saturating_sub(1) {
                trap("worker shutdown", self.vms[w].shutdown())?;
            }
            for round in 0..200 {
                self.check()?;
                for _ in 0..10_000 {
                    let pending = self.vms[s].pending();
                    if pending.is_empty() {
                        break;
                    }
                    for c in pending {
                        trap("drain answer", self.vms[s].reply(c.token, 200, &[], b"{}"))?;
                        match self.sent[s].remove(&c.token) {
                            Some((batch, ids)) => self.acks.ack(&batch, &ids)?,
                            None => return Err(format!("callout {} was never checked", c.token)),
                        }
                    }
                    self.check()?;
                }
                let held: i64 = self.vms.iter().map(|v| v.metric(BUFFER_EVENTS)).sum();
                if (held == 0 || self.stranded) && self.vms[s].pending().is_empty() {
                    break;
                }
                if round == 199 {
                    return Err(format!(
                        "still {held} events held after draining 100 s: {:?}",
                        self.vms.iter().map(|v| v.metrics()).collect::<Vec<_>>()
                    ));
                }
                trap("drain advance", self.vms[s].advance_ms(500))?;
            }
            if self.kind != Kind::Queue && !self.stranded {
                let idle = trap("shutdown", self.vms[s].shutdown())?;
                if !idle {
                    return Err("on_done with nothing held did not finish at once".into());
                }
            }
            Ok(())
        })();
        res.map_err(|e| self.context(format!("drain: {e}")))
    }
}

/// A log-sink line: Veil's slog shape around a valid event.
fn log_line(line: &[u8]) -> R {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        format!(
            "log line is not JSON ({e}): {}",
            String::from_utf8_lossy(line)
        )
    })?;
    if v["msg"] != "usage_event" || v["event_type"] != "api_usage" || v["level"] != "INFO" {
        return Err(format!("log line shape: {v}"));
    }
    check::event(&v, false).map(|_| ())
}

/// A refused configuration is one error line, naming a key.
fn one_refusal_line(logs: &[proxy_wasm_host::LogLine]) -> R {
    let errors: Vec<_> = logs.iter().filter(|l| l.level >= 4).collect();
    if errors.len() != 1 || !errors[0].message.contains("usage-filter: ") {
        return Err(format!(
            "a refused configuration must say so in one error line: {logs:?}"
        ));
    }
    Ok(())
}

/// Configurations of every kind into one long-lived VM: accepted ones take effect (a request
/// runs through them), refused ones leave one error line, memory stays flat.
fn configs(r: &mut Rng, steps: u64, stats: &mut Stats) -> R {
    thread_local! {
        static VM: std::cell::RefCell<Option<Vm>> = const { std::cell::RefCell::new(None) };
    }
    thread_local! {
        static USES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    // A fresh VM every 20 scenarios (~15,000 configurations): a VM reconfigured without end
    // keeps each retired queue worker that holds events no service will take (see README).
    let renew = USES.with(|u| {
        u.set(u.get() + 1);
        u.get() % 20 == 0
    });
    VM.with(|cell| {
        let mut slot = cell.borrow_mut();
        if renew {
            *slot = None;
        }
        if slot.is_none() {
            let mut vm = Vm::envoy()
                .fuel(false)
                .log_level(2)
                .start()
                .map_err(|e| format!("config vm: {e}"))?;
            vm.limit_history(0);
            vm.auto_reply(|_| proxy_wasm_host::Reply::Status(200));
            *slot = Some(vm);
        }
        let Some(vm) = slot.as_mut() else {
            return Err("config vm".into());
        };
        for _ in 0..steps {
            let bytes = gen::config_bytes(r);
            vm.take_logs();
            let accepted = vm.reconfigure_bytes(&bytes).map_err(|e| {
                format!("configuration {:?}: {e:#}", String::from_utf8_lossy(&bytes))
            })?;
            stats.configs += 1;
            stats.cases += 1;
            if accepted {
                stats.configs_accepted += 1;
                if r.chance(10) {
                    trap("request", vm.request().path("/c").key("k").respond(200))?;
                    trap("advance", vm.advance_ms(r.size(2000)))?;
                }
            } else {
                one_refusal_line(&vm.take_logs())
                    .map_err(|e| format!("{e} for {:?}", String::from_utf8_lossy(&bytes)))?;
            }
            let mem = vm.memory_bytes();
            stats.max_memory = stats.max_memory.max(mem);
            if mem > CONFIG_VM_LIMIT {
                return Err(format!("the configuration VM grew to {mem} bytes"));
            }
        }
        Ok(())
    })
}
