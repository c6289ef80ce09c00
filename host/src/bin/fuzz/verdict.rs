//! What is checked after every step of a scenario, and at its end: the books across the
//! VMs, no trap, bounded memory, every callout body valid, the collector's acknowledgements;
//! then the drain, after which nothing may be held.

use crate::check::{self, log_line, trap, R};
use crate::rng::Rng;
use crate::sim::{Kind, Sim, MEMORY_LIMIT};
use proxy_wasm_host::metrics::*;

impl Sim {
    /// Ticks every VM (workers first, so the service receives their hand-over) and returns
    /// captured (once per event), and delivered + dropped + held of each destination, over
    /// all of them.
    pub(crate) fn books(&mut self) -> R<(i64, Vec<i64>)> {
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
        Ok(self.settled_now())
    }

    /// Captured, and each destination's delivered + dropped + held, as the VMs last
    /// published them (no tick).
    pub(crate) fn settled_now(&self) -> (i64, Vec<i64>) {
        let settled = (0..self.dests.max(1))
            .map(|d| {
                [
                    EVENTS_DELIVERED,
                    EVENTS_DROPPED_BUFFER_FULL,
                    EVENTS_DROPPED_SEND_FAILED,
                    EVENTS_DROPPED_REJECTED,
                    BUFFER_EVENTS,
                ]
                .iter()
                .map(|m| self.total(&self.metric_of(d, m)))
                .sum()
            })
            .collect();
        (self.total(EVENTS_CAPTURED), settled)
    }

    pub(crate) fn check(&mut self) -> R {
        let (captured, settled) = self.books()?;
        if std::env::var_os("FUZZ_TRACE").is_some() {
            self.log.push(format!("books {captured} {settled:?}"));
        }
        // Per destination: each was given every event (what a damaged message lost, each
        // counts as lost).
        for (d, settled) in settled.iter().enumerate() {
            if captured + self.phantom != *settled {
                return Err(format!(
                    "books of destination {d}: captured {captured} (+{} claimed by damaged messages) != delivered + dropped + held {settled}: {:?}",
                    self.phantom,
                    self.vms.iter().map(|v| v.metrics()).collect::<Vec<_>>()
                ));
            }
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
                let Some(d) = crate::gen::CLUSTERS.iter().position(|u| *u == c.upstream) else {
                    return Err(format!(
                        "callout {} to unknown cluster {}",
                        c.token, c.upstream
                    ));
                };
                if d >= self.acks.len() {
                    return Err(format!(
                        "callout {} to {}, not a destination",
                        c.token, c.upstream
                    ));
                }
                self.sent[i].insert(c.token, (d, batch, ids));
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
            for d in 0..self.acks.len() {
                let delivered = self.total(&self.metric_of(d, EVENTS_DELIVERED));
                let acked = self.acks[d].events as i64;
                if delivered < acked || (self.exact_acks && delivered != acked) {
                    return Err(format!(
                        "destination {d}: delivered {delivered} but the collector acknowledged {acked} events"
                    ));
                }
                let rejected = self.total(&self.metric_of(d, EVENTS_DROPPED_REJECTED));
                let alone = self.acks[d].refused_alone() as i64;
                if rejected < alone || (self.exact_acks && rejected != alone) {
                    return Err(format!(
                        "destination {d}: events_dropped_rejected {rejected} but the collector refused {alone} events alone"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The end: the host stops refusing, the collector answers 200 until nothing is held,
    /// the proxy shuts down; then the books must balance with nothing held.
    pub(crate) fn drain(&mut self, r: &mut Rng) -> R {
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
                            Some((d, batch, ids)) => self.acks[d].ack(&batch, &ids)?,
                            None => return Err(format!("callout {} was never checked", c.token)),
                        }
                    }
                    self.check()?;
                }
                let held = self.held();
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
