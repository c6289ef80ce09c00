//! The root context: adapts the host's VM-wide callbacks to the delivery's decisions. It
//! reads the configuration, starts the callouts the delivery hands back and reports their
//! results, moves events over the shared queue, publishes the books as metrics, and
//! flushes at shutdown.

use crate::config::{self, Role};
use crate::delivery::Delivery;
use crate::dispatch::Outcome;
use crate::host::{BufferKind, Host, Level, Map};
use crate::metrics::Published;
use crate::random::Pool;
use crate::shared::Shared;
use crate::stream::Stream;
use messages::{refused, report, VERSION_LINE};
use std::rc::Rc;

/// Earlier configurations still draining, at most.
const MAX_RETIRED: usize = 4;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// Deliveries of earlier configurations: they keep sending what they hold, with the
    /// configuration they were given, until they are empty and no stream uses them.
    retired: Vec<Rc<Shared>>,
    /// Every metric defined so far, by name, and what was last published of it.
    published: Published,
    /// Retired deliveries' final counters by slot of `published` (no gauge), so metrics
    /// stay cumulative.
    retired_books: Vec<u64>,
    /// Each slot's value this tick (kept to reuse its allocation).
    now: Vec<u64>,
    flushing: bool,
    /// The shared queue: registered (service) or resolved (worker).
    queue: Option<u32>,
    done_reported: bool,
    /// What the host asked for in the VM configuration.
    vm: VmConfig,
    /// Clusters whose callouts the host refuses to start, already said in the log; one is
    /// said again only after a callout to it started.
    refused: Vec<String>,
}

fn now_ms(host: &dyn Host) -> u64 {
    host.now_ns() / 1_000_000
}

fn warn(host: &dyn Host, msg: &str) {
    host.log(Level::Warn, msg.as_bytes());
}

/// The VM configuration this filter understands, set by a host that has more than Envoy
/// gives it (usage-agent): `{"event_ids":"per_stream","retries":"unlimited"}`. Anything else
/// (Envoy users rarely set one) leaves the defaults.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VmConfig {
    /// One randomness draw per event id (see `random`): the host can make ids repeatable.
    pub per_event_ids: bool,
    /// A retryable failure is retried until it succeeds (backoff still capped): the host
    /// has a durable source and pauses it instead (the agent's file is its buffer), so
    /// `http.retry.max_attempts` would only throw away what the file still holds.
    pub unlimited_retries: bool,
}

impl VmConfig {
    pub(crate) fn parse(vm_config: &[u8]) -> VmConfig {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(vm_config) else {
            return VmConfig::default();
        };
        let is = |key: &str, want: &str| v.get(key).and_then(|x| x.as_str()) == Some(want);
        VmConfig {
            per_event_ids: is("event_ids", "per_stream"),
            unlimited_retries: is("retries", "unlimited"),
        }
    }
}

impl Root {
    pub fn on_vm_start(&mut self, host: &dyn Host, size: usize) -> bool {
        host.log(Level::Info, VERSION_LINE.as_bytes());
        if size > 0 {
            let raw = host
                .buffer(BufferKind::VmConfiguration, 0, size)
                .unwrap_or_default();
            self.vm = VmConfig::parse(&raw);
        }
        true
    }

    pub fn on_configure(&mut self, host: &dyn Host, size: usize) -> bool {
        let raw = host
            .buffer(BufferKind::PluginConfiguration, 0, size)
            .unwrap_or_default();
        let mut cfg = match config::parse(&raw, &|name| host.env_var(name)) {
            Ok(c) => c,
            Err(e) => {
                host.log(Level::Error, format!("usage-filter: {e}").as_bytes());
                return false;
            }
        };
        // The queue of an earlier configuration is not this one's: a worker resolves its own
        // (lazily), a service registers its own.
        self.queue = None;
        let role = cfg.role();
        if role == Role::QueueService {
            match host.register_queue(&cfg.dispatcher.queue) {
                Some(q) => self.queue = Some(q),
                None => {
                    host.log(
                        Level::Error,
                        b"usage-filter: dispatcher.mode: this host has no shared queues; use \"local\"",
                    );
                    return false;
                }
            }
        }
        let shortest = cfg.http.iter().map(|h| h.flush_interval_ms).min();
        let tick_ms = match shortest {
            _ if !cfg.enabled && role != Role::QueueService => 0,
            Some(ms) => ms.clamp(1, 100),
            None => 1000,
        };
        if tick_ms > 0 && !host.set_tick_period_ms(tick_ms as u32) {
            warn(
                host,
                "usage-filter: host has no timer; batches go out only on callout responses",
            );
        }
        host.log(
            Level::Info,
            format!(
                "usage-filter: configured: enabled={} log={} http={} role={role:?}",
                cfg.enabled,
                cfg.log_sink,
                !cfg.http.is_empty(),
            )
            .as_bytes(),
        );
        let active = cfg.enabled || role == Role::QueueService;
        if self.vm.unlimited_retries {
            for h in cfg.http.iter_mut() {
                h.retry.max_attempts = u32::MAX;
            }
        }
        let rng = if self.vm.per_event_ids {
            Pool::per_event()
        } else {
            Pool::default()
        };
        if let Some(old) = self.shared.take() {
            self.retired.push(old);
        }
        self.shared = active.then(|| Rc::new(Shared::new(cfg, rng)));
        self.define_metrics(host);
        true
    }

    /// A new HTTP stream; it meters nothing when streaming is off.
    pub fn new_stream(&self) -> Stream {
        Stream::new(self.shared.clone().filter(|s| s.config.enabled))
    }

    pub fn on_tick(&mut self, host: &dyn Host) {
        self.hand_over(host);
        self.pump(host, now_ms(host));
        self.publish(host);
    }

    pub fn on_http_call_response(
        &mut self,
        host: &dyn Host,
        token: u32,
        num_headers: usize,
        body_size: usize,
    ) {
        let (status, retry_after) = if num_headers == 0 {
            (None, None)
        } else {
            let status = host
                .header(Map::CallResponseHeaders, ":status")
                .map(|s| crate::event::parse_status(&s));
            // Only an attempt to be retried waits: any other answer costs no second read.
            let ra = match crate::retry::classify(status) {
                crate::retry::Verdict::Retry => host
                    .header(Map::CallResponseHeaders, "retry-after")
                    .and_then(|v| crate::retry::parse_retry_after(&v)),
                _ => None,
            };
            (status, ra)
        };
        let now = now_ms(host);
        for sh in self.live() {
            let mut d = sh.delivery.borrow_mut();
            let mut rng = sh.rng.borrow_mut();
            let (dest, outcome) = d.on_response(token, status, retry_after, now, &mut *rng);
            if outcome == Outcome::Unknown {
                continue;
            }
            let head = match outcome {
                Outcome::Rejected { .. } | Outcome::RejectedEvent { .. } => {
                    host.buffer(BufferKind::CallResponseBody, 0, body_size.min(256))
                }
                _ => None,
            };
            report(host, d.label(dest), &outcome, head.as_deref());
            break;
        }
        // the answer's time serves the pump too: one clock read per answer
        self.pump(host, now);
        if self.flushing {
            self.publish(host);
            if self.idle() && !self.done_reported {
                self.done_reported = true;
                host.done();
            }
        }
    }

    pub fn on_queue_ready(&mut self, host: &dyn Host, queue_id: u32) {
        let Some(sh) = self.shared.clone() else {
            return;
        };
        if sh.delivery.borrow().role() != Role::QueueService {
            return;
        }
        let now = now_ms(host);
        while let Some(msg) = host.dequeue(queue_id) {
            sh.delivery.borrow_mut().receive(&msg, now);
        }
        self.pump(host, now);
    }

    pub fn on_done(&mut self, host: &dyn Host) -> bool {
        self.flushing = true;
        let held = self.held();
        let service = self
            .shared
            .as_ref()
            .is_some_and(|sh| sh.delivery.borrow().role() == Role::QueueService);
        if service {
            // The singleton service is only torn down when Envoy exits, and Envoy 1.40 crashes
            // (SIGSEGV) on a callout made from this on_done: say what is lost, send nothing.
            if held > 0 {
                warn(
                    host,
                    &format!("usage-filter: proxy exiting: {held} buffered events cannot be sent"),
                );
            }
            self.publish(host);
            return true;
        }
        if held > 0 {
            host.log(
                Level::Info,
                format!("usage-filter: shutting down, flushing {held} buffered events").as_bytes(),
            );
        }
        self.hand_over(host);
        self.pump(host, now_ms(host));
        self.publish(host);
        let idle = self.idle();
        self.done_reported = idle;
        idle
    }

    /// Shut down and told the host so (`on_done` answered true, or `proxy_done` was called):
    /// the host will not call this root again.
    pub fn finished(&self) -> bool {
        self.flushing && self.done_reported
    }

    /// The current delivery, then the retired ones.
    fn live(&self) -> impl Iterator<Item = &Rc<Shared>> {
        self.shared.iter().chain(self.retired.iter())
    }

    fn held(&self) -> usize {
        self.live().map(|sh| sh.delivery.borrow().held()).sum()
    }

    fn idle(&self) -> bool {
        self.held() == 0
    }

    /// Starts every callout the deliveries want started at `now` (ms, read by the caller).
    fn pump(&mut self, host: &dyn Host, now: u64) {
        let current = self.shared.iter().map(|sh| (sh, self.flushing));
        let retired = self.retired.iter().map(|sh| (sh, true));
        for (sh, flushing) in current.chain(retired) {
            let mut rng = sh.rng.borrow_mut();
            let mut d = sh.delivery.borrow_mut();
            while let Some((dest, batch, callout)) = d.next_callout(now, flushing, &mut *rng) {
                match host.http_call(&callout) {
                    Ok(token) => {
                        d.sent(dest, token, batch);
                        if !self.refused.is_empty() {
                            self.refused.retain(|c| *c != callout.upstream);
                        }
                    }
                    Err(status) => {
                        let outcome = d.not_sent(dest, batch, now, &mut *rng);
                        refused(host, &mut self.refused, &callout.upstream, status);
                        report(host, d.label(dest), &outcome, None);
                    }
                }
                // the host has copied the body: its buffer encodes the next one
                d.recycle(dest, callout.body);
            }
        }
        self.retire_finished(host);
    }

    /// Retired deliveries that hold nothing and serve no stream are folded into the books.
    /// Beyond `MAX_RETIRED` still sending, the oldest is given up: what it holds that is not
    /// in flight is counted as failed to send, so memory stays bounded however often the host
    /// reconfigures a VM whose old events cannot leave (a queue worker whose service never
    /// comes). A given-up delivery stays only until its callouts in flight are answered (or
    /// time out): an event the collector then acknowledges is counted delivered, not lost.
    fn retire_finished(&mut self, host: &dyn Host) {
        // The common case, every tick: nothing retired.
        if self.retired.is_empty() {
            return;
        }
        let sending = |r: &[Rc<Shared>]| {
            r.iter()
                .filter(|sh| !sh.delivery.borrow().abandoned())
                .count()
        };
        while sending(&self.retired) > MAX_RETIRED {
            let Some(old) = self
                .retired
                .iter()
                .find(|sh| !sh.delivery.borrow().abandoned())
            else {
                break;
            };
            let lost = old.delivery.borrow_mut().abandon();
            warn(
                host,
                &format!(
                    "usage-filter: {lost} events of a configuration replaced {MAX_RETIRED} times since could not be sent and are dropped"
                ),
            );
        }
        let (done, keep): (Vec<_>, Vec<_>) = self
            .retired
            .drain(..)
            .partition(|sh| sh.delivery.borrow().held() == 0 && Rc::strong_count(sh) == 1);
        self.retired = keep;
        for sh in done {
            self.fold(&sh.delivery.borrow());
        }
    }

    /// A shared-queue worker hands its waiting events to the service in one message.
    /// Retired worker deliveries hand over too: what they held when the configuration
    /// changed would otherwise stay with them forever.
    fn hand_over(&mut self, host: &dyn Host) {
        let all: Vec<Rc<Shared>> = self.live().cloned().collect();
        for sh in all {
            let Some((msg, n)) = sh.delivery.borrow().handoff_message() else {
                continue;
            };
            if self.queue.is_none() {
                let d = &sh.config.dispatcher;
                // The service may be configured after this VM (main thread): resolve lazily.
                self.queue = host.resolve_queue(&d.vm_id, &d.queue);
            }
            let Some(q) = self.queue else { return };
            if host.enqueue(q, &msg) {
                sh.delivery.borrow_mut().handed_over(n);
            } else {
                // The queue went away (service reloaded): resolve again next time.
                self.queue = None;
                return;
            }
        }
    }

    /// A finished delivery's counters join the retired books (its gauge is zero or given
    /// up, and is not kept).
    fn fold(&mut self, d: &Delivery) {
        let mut values = vec![0; self.published.len()];
        d.add_values(&mut values);
        self.retired_books.resize(values.len(), 0);
        for (i, (sum, v)) in self.retired_books.iter_mut().zip(values).enumerate() {
            if !self.published.is_gauge(i) {
                *sum += v;
            }
        }
    }

    /// Defines the current configuration's metrics that are not defined yet (a host
    /// defines a name once; a reconfiguration may name new destinations), and gives the
    /// delivery the slot of each.
    fn define_metrics(&mut self, host: &dyn Host) {
        let Some(sh) = &self.shared else { return };
        let mut d = sh.delivery.borrow_mut();
        let slots = d
            .metric_names()
            .map(|(name, gauge)| {
                self.published
                    .define(name, || host.define_metric(gauge, name))
            })
            .collect();
        d.set_slots(slots);
    }

    fn publish(&mut self, host: &dyn Host) {
        let mut now = std::mem::take(&mut self.now);
        now.clear();
        now.extend_from_slice(&self.retired_books);
        now.resize(self.published.len(), 0);
        for sh in self.live() {
            sh.delivery.borrow().add_values(&mut now);
        }
        self.published
            .publish(&now, |id, delta| host.increment_metric(id, delta));
        self.now = now;
    }
}

#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod llm_read_tests;
#[cfg(test)]
mod llm_tests;
mod messages;
#[cfg(test)]
mod tests;
