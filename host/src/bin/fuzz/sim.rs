//! The simulated proxy of one scenario: one local VM, a log-only VM, or shared-queue workers
//! and their service on one hub; and the steps that drive it (the requests and answers are
//! in `traffic`, the hand-over messages in `queue`, the checks in `verdict`).

use crate::check::{one_refusal_line, trap, Acks, R};
use crate::gen;
use crate::rng::Rng;
use crate::stats::Stats;
use proxy_wasm_host::state::SharedHub;
use proxy_wasm_host::Vm;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Linear memory any VM may reach: buffers of at most 600 events, keys and paths of up to
/// 64 KiB, callouts of up to 64 KiB of events.
pub(crate) const MEMORY_LIMIT: usize = 256 << 20;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Local,
    LogOnly,
    Queue,
    Configs,
}

/// A callout not yet answered: its destination (index as `gen::CLUSTERS`), batch id and
/// event ids.
pub(crate) type Sent = (usize, String, Vec<String>);

pub(crate) struct Sim {
    /// Workers first; in `Queue` the service is last.
    pub(crate) vms: Vec<Vm>,
    pub(crate) kind: Kind,
    /// The destinations of `http`: 0 for one object, else an array of that many (`d0`, `d1`,
    /// … to `gen::CLUSTERS` in order). A reconfiguration keeps the same ones, so each
    /// destination's books hold over the whole scenario.
    pub(crate) dests: usize,
    /// What each destination's collector acknowledged and refused (index as `gen::CLUSTERS`).
    pub(crate) acks: Vec<Acks>,
    /// Per VM: token -> the callouts not yet answered.
    pub(crate) sent: Vec<HashMap<u32, Sent>>,
    /// Change of the books no request caused: what damaged hand-over messages claimed.
    pub(crate) phantom: i64,
    pub(crate) queue_name: String,
    pub(crate) log: Vec<String>,
    /// Every delivered event was acknowledged by the collector (false once a
    /// reconfiguration made the VM log only, whose written lines count as delivered).
    pub(crate) exact_acks: bool,
    /// A reconfiguration made the VM a queue worker with no service: it cannot drain.
    pub(crate) stranded: bool,
}

fn vm_with(hub: &SharedHub, cfg: &Value, vm_id: &str) -> R<Vm> {
    let clusters: Vec<String> = gen::CLUSTERS.iter().map(|c| c.to_string()).collect();
    let mut vm = Vm::envoy()
        .clusters_only(&clusters)
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
    pub(crate) fn new(r: &mut Rng, kind: Kind) -> R<Sim> {
        let hub = Vm::new_hub();
        let mut log = Vec::new();
        let dests = match kind {
            Kind::Local | Kind::Queue if r.chance(30) => r.range(2, 3) as usize,
            _ => 0,
        };
        let vms = match kind {
            Kind::Local => {
                let (h, with_log) = (gen::http_value(r, dests), r.chance(20));
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
                let http = gen::http_value(r, dests);
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
            dests,
            acks: (0..dests.max(1)).map(|_| Acks::default()).collect(),
            sent: vec![HashMap::new(); n],
            phantom: 0,
            queue_name: "usage_events".into(),
            log,
            exact_acks: true,
            stranded: false,
        })
    }

    pub(crate) fn context(&self, e: String) -> String {
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

    /// The name of `metric` (a name of `proxy_wasm_host::metrics`) for destination `d`.
    pub(crate) fn metric_of(&self, d: usize, metric: &str) -> String {
        match self.dests {
            0 => metric.to_string(),
            _ => proxy_wasm_host::metrics::of(&gen::dest_name(d), metric),
        }
    }

    /// A metric summed over the VMs.
    pub(crate) fn total(&self, name: &str) -> i64 {
        self.vms.iter().map(|v| v.metric(name)).sum()
    }

    /// Events held by every destination together, over the VMs.
    pub(crate) fn held(&self) -> i64 {
        (0..self.dests.max(1))
            .map(|d| self.total(&self.metric_of(d, proxy_wasm_host::metrics::BUFFER_EVENTS)))
            .sum()
    }

    /// The VM that sends callouts (the single VM, or the service).
    pub(crate) fn sender(&self) -> usize {
        self.vms.len() - 1
    }

    pub(crate) fn step(&mut self, r: &mut Rng, stats: &mut Stats) -> R {
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

    pub(crate) fn clock(&mut self, r: &mut Rng) -> R {
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

    pub(crate) fn reconfigure(&mut self, r: &mut Rng) -> R {
        if self.kind == Kind::Queue {
            return Ok(());
        }
        // Several destinations: always the same ones (books per destination hold only for
        // events every one of them was given).
        let cfg = if self.dests > 0 || r.chance(70) {
            let (h, log) = (gen::http_value(r, self.dests), r.chance(20));
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
}
