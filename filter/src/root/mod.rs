//! The root context: adapts the host's VM-wide callbacks to the delivery's decisions. It
//! reads the configuration, starts the callouts the delivery hands back and reports their
//! results, moves events over the shared queue, publishes the books as metrics, and
//! flushes at shutdown.

use crate::config::{self, Role};
use crate::dispatch::Outcome;
use crate::host::{Buffer, Host, Level, Map};
use crate::metrics::{self, Counters, Published};
use crate::random::Pool;
use crate::shared::Shared;
use crate::stream::Stream;
use std::rc::Rc;

/// Earlier configurations still draining, at most.
const MAX_RETIRED: usize = 4;

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    /// Deliveries of earlier configurations: they keep sending what they hold, with the
    /// configuration they were given, until they are empty and no stream uses them.
    retired: Vec<Rc<Shared>>,
    /// The books of retired deliveries that finished, so metrics stay cumulative.
    retired_counters: Counters,
    metric_ids: Vec<Option<u32>>,
    published: Published,
    flushing: bool,
    /// The shared queue: registered (service) or resolved (worker).
    queue: Option<u32>,
    done_reported: bool,
    /// The host asked for one randomness draw per event id (see `random`).
    per_event_ids: bool,
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

/// The VM configuration this filter understands: `{"event_ids":"per_stream"}`. Anything
/// else (Envoy users rarely set one) leaves the defaults.
fn wants_per_event_ids(vm_config: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(vm_config)
        .is_ok_and(|v| v.get("event_ids").and_then(|x| x.as_str()) == Some("per_stream"))
}

impl Root {
    pub fn on_vm_start(&mut self, host: &dyn Host, size: usize) -> bool {
        if size > 0 {
            let raw = host
                .buffer(Buffer::VmConfiguration, 0, size)
                .unwrap_or_default();
            self.per_event_ids = wants_per_event_ids(&raw);
        }
        true
    }

    pub fn on_configure(&mut self, host: &dyn Host, size: usize) -> bool {
        let raw = host
            .buffer(Buffer::PluginConfiguration, 0, size)
            .unwrap_or_default();
        let cfg = match config::parse(&raw, &|name| host.env_var(name)) {
            Ok(c) => c,
            Err(e) => {
                host.log(Level::Error, format!("usage-filter: {e}").as_bytes());
                return false;
            }
        };
        if self.metric_ids.is_empty() {
            self.metric_ids = metrics::NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| host.define_metric(i == metrics::GAUGE, n))
                .collect();
        }
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
        let tick_ms = match &cfg.http {
            _ if !cfg.enabled && role != Role::QueueService => 0,
            Some(h) => h.flush_interval_ms.clamp(1, 100),
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
                cfg.http.is_some(),
            )
            .as_bytes(),
        );
        let active = cfg.enabled || role == Role::QueueService;
        let rng = if self.per_event_ids {
            Pool::per_event()
        } else {
            Pool::default()
        };
        if let Some(old) = self.shared.take() {
            self.retired.push(old);
        }
        self.shared = active.then(|| Rc::new(Shared::new(cfg, rng)));
        true
    }

    /// A new HTTP stream; it meters nothing when streaming is off.
    pub fn new_stream(&self) -> Stream {
        Stream::new(self.shared.clone().filter(|s| s.config.enabled))
    }

    pub fn on_tick(&mut self, host: &dyn Host) {
        self.hand_over(host);
        self.pump(host);
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
            let ra = host
                .header(Map::CallResponseHeaders, "retry-after")
                .and_then(|v| crate::retry::parse_retry_after(&v));
            (status, ra)
        };
        let now = now_ms(host);
        let outcome = self
            .live()
            .map(|sh| {
                let mut rng = sh.rng.borrow_mut();
                sh.delivery
                    .borrow_mut()
                    .on_response(token, status, retry_after, now, &mut *rng)
            })
            .find(|o| *o != Outcome::Unknown)
            .unwrap_or(Outcome::Unknown);
        let head = match outcome {
            Outcome::Rejected { .. } => {
                host.buffer(Buffer::CallResponseBody, 0, body_size.min(256))
            }
            _ => None,
        };
        report(host, &outcome, head.as_deref());
        self.pump(host);
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
        self.pump(host);
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
        self.pump(host);
        self.publish(host);
        let idle = self.idle();
        self.done_reported = idle;
        idle
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

    /// Starts every callout the deliveries want started now.
    fn pump(&mut self, host: &dyn Host) {
        let now = now_ms(host);
        let current = self.shared.iter().map(|sh| (sh, self.flushing));
        let retired = self.retired.iter().map(|sh| (sh, true));
        for (sh, flushing) in current.chain(retired) {
            let mut rng = sh.rng.borrow_mut();
            let mut d = sh.delivery.borrow_mut();
            while let Some((batch, callout)) = d.next_callout(now, flushing, &mut *rng) {
                match host.http_call(&callout) {
                    Ok(token) => {
                        d.sent(token, batch);
                        if !self.refused.is_empty() {
                            self.refused.retain(|c| *c != callout.upstream);
                        }
                    }
                    Err(status) => {
                        let outcome = d.not_sent(batch, now, &mut *rng);
                        refused(host, &mut self.refused, &callout.upstream, status);
                        report(host, &outcome, None);
                    }
                }
            }
        }
        self.retire_finished(host);
    }

    /// Retired deliveries that hold nothing and serve no stream are folded into the books.
    /// Beyond `MAX_RETIRED` the oldest is given up: what it still holds is counted as failed
    /// to send, so memory stays bounded however often the host reconfigures a VM whose old
    /// events cannot leave (a queue worker whose service never comes).
    fn retire_finished(&mut self, host: &dyn Host) {
        let (done, keep): (Vec<_>, Vec<_>) = self
            .retired
            .drain(..)
            .partition(|sh| sh.delivery.borrow().held() == 0 && Rc::strong_count(sh) == 1);
        self.retired = keep;
        for sh in done {
            self.retired_counters = self.retired_counters.add(&sh.delivery.borrow().counters());
        }
        while self.retired.len() > MAX_RETIRED {
            let old = self.retired.remove(0);
            let d = old.delivery.borrow();
            let mut books = d.counters();
            books.dropped_send_failed += d.held() as u64;
            self.retired_counters = self.retired_counters.add(&books);
            warn(
                host,
                &format!(
                    "usage-filter: {} events of a configuration replaced {MAX_RETIRED} times since could not be sent and are dropped",
                    d.held()
                ),
            );
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

    fn publish(&mut self, host: &dyn Host) {
        let counters = self.live().fold(self.retired_counters, |c, sh| {
            c.add(&sh.delivery.borrow().counters())
        });
        let values = counters.values(self.held() as u64);
        for (i, delta) in self.published.changes(values) {
            if let Some(Some(id)) = self.metric_ids.get(i) {
                host.increment_metric(*id, delta);
            }
        }
    }
}

/// The host would not start a callout. A cluster Envoy does not know (BadArgument) may still
/// arrive through CDS, so the batch stays a failed attempt; the operator is told once per
/// cluster, at error level, until a callout to it starts again.
fn refused(host: &dyn Host, said: &mut Vec<String>, cluster: &str, status: u32) {
    let name = crate::host::status_name(status);
    if said.iter().any(|c| c == cluster) {
        let msg = format!("usage-filter: callout to cluster \"{cluster}\" refused again ({name})");
        host.log(Level::Debug, msg.as_bytes());
        return;
    }
    said.push(cluster.to_string());
    let why = if status == 2 {
        "the cluster does not exist on this host (Envoy may still add it through CDS)"
    } else {
        "the host would not start it"
    };
    let msg = format!(
        "usage-filter: the host refused to start a callout to cluster \"{cluster}\" ({name}): \
         {why}. Batches are retried as failed attempts and dropped after \
         http.retry.max_attempts; {} counts every refusal. Said once until a callout to it starts.",
        crate::metrics::NAMES[crate::metrics::CALLOUTS_REFUSED]
    );
    host.log(Level::Error, msg.as_bytes());
}

fn report(host: &dyn Host, outcome: &Outcome, body_head: Option<&[u8]>) {
    let (level, msg) = match outcome {
        Outcome::Rejected { events, status } => (
            Level::Warn,
            format!(
                "usage-filter: collector refused a batch of {events} events with status {status}, dropped: {}",
                String::from_utf8_lossy(body_head.unwrap_or(b""))
            ),
        ),
        Outcome::Exhausted { events, attempts } => (
            Level::Warn,
            format!("usage-filter: batch of {events} events dropped after {attempts} attempts"),
        ),
        Outcome::Retrying { attempt, at_ms } => (
            Level::Debug,
            format!("usage-filter: batch will be retried (attempt {attempt}) at {at_ms} ms"),
        ),
        Outcome::Delivered { .. } | Outcome::Unknown => return,
    };
    host.log(level, msg.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_host::FakeHost;

    fn configure(root: &mut Root, host: &FakeHost, json: &str) -> bool {
        host.set_config(json);
        root.on_configure(host, host.config_len())
    }

    /// One keyed GET through a new stream, as the host would drive it.
    fn request(root: &Root, host: &FakeHost, path: &str) {
        let mut s = root.new_stream();
        host.set_header(Map::RequestHeaders, ":path", path.as_bytes());
        host.set_header(Map::RequestHeaders, ":method", b"GET");
        host.set_header(Map::RequestHeaders, "x-subscription-key", b"k");
        s.on_request_headers(host);
        host.advance_ms(3);
        host.set_header(Map::ResponseHeaders, ":status", b"200");
        s.on_response_headers(host);
        s.on_response_body(10);
        s.on_log(host);
    }

    fn answer(root: &mut Root, host: &FakeHost, token: u32, status: &[u8]) {
        host.set_header(Map::CallResponseHeaders, ":status", status);
        root.on_http_call_response(host, token, 1, 0);
        host.clear_headers(Map::CallResponseHeaders);
    }

    fn books(host: &FakeHost) {
        let m = |n: &str| host.metric(&format!("usage_filter.{n}"));
        assert_eq!(
            m("events_captured"),
            m("events_delivered")
                + m("events_dropped_buffer_full")
                + m("events_dropped_send_failed")
                + m("buffer_events"),
            "{:?}",
            host.metrics.borrow()
        );
    }

    const HTTP: &str = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":100,"flush_interval_ms":1000}}"#;

    #[test]
    fn a_reconfiguration_loses_nothing_the_old_configuration_held() {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, HTTP));
        for i in 0..5 {
            request(&root, &host, &format!("/v1/{i}"));
        }
        root.on_tick(&host);
        assert!(host.take_callouts().is_empty(), "not due yet");
        // A stream that began before the change finishes after it.
        let mut late = root.new_stream();
        host.set_header(Map::RequestHeaders, ":path", b"/late");
        late.on_request_headers(&host);
        let other = HTTP.replace("\"c\"", "\"d\"");
        assert!(configure(&mut root, &host, &other));
        late.on_log(&host);
        drop(late);
        request(&root, &host, "/v1/new");
        root.on_tick(&host);
        let calls = host.take_callouts();
        let to_c: Vec<_> = calls.iter().filter(|(_, c)| c.upstream == "c").collect();
        assert_eq!(
            to_c.len(),
            1,
            "the old events go out at once, with the old cluster"
        );
        let body = String::from_utf8_lossy(&to_c[0].1.body).into_owned();
        assert_eq!(body.matches("\"api_path\"").count(), 6, "{body}");
        for (t, _) in &calls {
            answer(&mut root, &host, *t, b"200");
        }
        host.advance_ms(2000);
        root.on_tick(&host);
        let calls = host.take_callouts();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].1.upstream, "d");
        answer(&mut root, &host, calls[0].0, b"200");
        root.on_tick(&host);
        assert_eq!(host.metric("usage_filter.events_captured"), 7);
        assert_eq!(host.metric("usage_filter.events_delivered"), 7);
        assert!(
            root.retired.is_empty(),
            "the old delivery is gone once drained"
        );
        books(&host);
    }

    #[test]
    fn configurations_replaced_again_and_again_hold_bounded_memory_and_keep_the_books() {
        let host = FakeHost::default();
        let mut root = Root::default();
        // a queue worker whose service never answers: its events cannot leave
        *host.refuse_enqueue.borrow_mut() = true;
        let worker = r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"c","batch_size":2,"buffer_size":10},
                         "dispatcher":{"mode":"shared_queue"}}"#;
        for _ in 0..20 {
            assert!(configure(&mut root, &host, worker));
            for i in 0..3 {
                request(&root, &host, &format!("/{i}"));
            }
            root.on_tick(&host);
        }
        assert!(root.retired.len() <= MAX_RETIRED);
        assert!(root.held() <= (MAX_RETIRED + 1) * 10);
        assert_eq!(host.metric("usage_filter.events_captured"), 60);
        books(&host);
    }

    #[test]
    fn a_callout_the_host_refuses_with_any_status_is_a_failed_attempt_not_a_panic() {
        for status in [1, 2, 10, 12, 99, u32::MAX] {
            let host = FakeHost::default();
            let mut root = Root::default();
            assert!(configure(&mut root, &host, HTTP));
            request(&root, &host, "/a");
            *host.refuse_calls.borrow_mut() = Some(status);
            host.advance_ms(1000);
            root.on_tick(&host);
            assert_eq!(host.metric("usage_filter.batch_retries"), 1, "{status}");
            assert_eq!(host.metric("usage_filter.callouts_refused"), 1, "{status}");
            // Later refusals of the same cluster are not said again at error level.
            host.advance_ms(20_000);
            root.on_tick(&host);
            assert_eq!(host.metric("usage_filter.callouts_refused"), 2, "{status}");
            let loud = host
                .logs
                .borrow()
                .iter()
                .filter(|(level, l)| {
                    *level == Level::Error
                        && l.contains("refused to start a callout to cluster \"c\"")
                })
                .count();
            assert_eq!(loud, 1, "{status}: {:?}", host.logs.borrow());
            books(&host);
        }
    }

    #[test]
    fn shutdown_flushes_and_reports_done_when_the_last_answer_arrives() {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, HTTP));
        request(&root, &host, "/a");
        assert!(!root.on_done(&host), "must wait for the flush");
        let calls = host.take_callouts();
        assert_eq!(calls.len(), 1);
        answer(&mut root, &host, calls[0].0, b"200");
        assert_eq!(*host.done_calls.borrow(), 1);
        assert_eq!(host.metric("usage_filter.events_delivered"), 1);
        books(&host);
    }

    #[test]
    fn the_vm_configuration_can_ask_for_one_draw_per_event_id() {
        assert!(wants_per_event_ids(br#"{"event_ids":"per_stream"}"#));
        assert!(!wants_per_event_ids(b""));
        assert!(!wants_per_event_ids(b"not json"));
        assert!(!wants_per_event_ids(br#"{"event_ids":"pooled"}"#));
    }

    #[test]
    fn streams_of_a_disabled_plugin_make_no_host_calls() {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, "{}"));
        let before = *host.host_calls.borrow();
        let mut s = root.new_stream();
        s.on_request_headers(&host);
        s.on_response_headers(&host);
        s.on_log(&host);
        assert_eq!(*host.host_calls.borrow(), before);
    }

    #[test]
    fn a_keyed_get_costs_four_host_calls_with_veil_over_http() {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, HTTP));
        let before = *host.host_calls.borrow();
        request(&root, &host, "/a");
        // the request map and the clock at the start; :status; the clock at the end
        assert_eq!(*host.host_calls.borrow() - before, 4);
    }

    #[test]
    fn the_log_sink_adds_only_the_line_it_writes() {
        let host = FakeHost::default();
        let mut root = Root::default();
        assert!(configure(&mut root, &host, r#"{"enabled":true}"#));
        let before = *host.host_calls.borrow();
        request(&root, &host, "/a");
        assert_eq!(*host.host_calls.borrow() - before, 5);
        let logs = host.logs.borrow();
        let line = &logs.last().unwrap().1;
        assert!(line.contains(r#""api_path":"/a""#) && line.contains(r#""subscription_key":"k""#));
    }
}
