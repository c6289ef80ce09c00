//! The root context: reads the configuration, owns the state the streams share, and carries
//! out what the dispatcher decides — callouts on the timer, their responses, the shared-queue
//! hand-over, metric publication and the flush at shutdown.

use crate::capture::Stream;
use crate::config::{self, Config, DispatcherMode, LogOutput};
use crate::dispatch::{Dispatcher, Outcome};
use crate::encode::{self, Encoded};
use crate::event::{self, Event, SecondCache};
use crate::hostcall::{self, LOG_DEBUG, LOG_ERROR, LOG_INFO, LOG_WARN};
use crate::metrics::{self, Counters, Published};
use crate::random::Pool;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// What the root context and its streams share (one VM is one thread).
pub struct Shared {
    pub config: Config,
    pub state: RefCell<State>,
    /// Whether any configured output carries the extra fields (request id, authority,
    /// attributes); `veil` over http alone sends exactly the ten fields.
    pub extras: bool,
}

#[derive(Default)]
pub struct State {
    pub rng: Pool,
    /// The http sink in local mode and in the singleton service.
    pub dispatcher: Option<Dispatcher>,
    /// Counts kept outside a dispatcher: log-only delivery, shared-queue workers.
    pub counters: Counters,
    /// A shared-queue worker's events waiting for the next hand-over.
    pub handoff: Vec<Encoded>,
    pub seconds: SecondCache,
}

impl Shared {
    fn is_worker_of_queue(&self) -> bool {
        self.config.http.is_some()
            && self.config.dispatcher.mode == DispatcherMode::SharedQueue
            && !self.config.dispatcher.service
    }

    /// One finished request: write the log line, hand the event to the http sink.
    pub fn emit(&self, e: &Event<'_>, now_ns: u64) {
        let enc = encode::encode_event_with(e, &mut self.state.borrow_mut().seconds);
        if self.config.log_sink {
            let line = encode::log_line(&enc);
            if matches!(self.config.log_output, LogOutput::HostLog | LogOutput::Both) {
                hostcall::log(LOG_INFO, &line);
            }
            if matches!(
                self.config.log_output,
                LogOutput::FilterState | LogOutput::Both
            ) {
                hostcall::set_property(b"usage_event", &line);
            }
        }
        let mut st = self.state.borrow_mut();
        let st = &mut *st;
        if let Some(d) = st.dispatcher.as_mut() {
            d.accept(enc, now_ns / 1_000_000);
        } else if self.is_worker_of_queue() {
            st.counters.captured += 1;
            let cap = self.config.http.as_ref().map_or(0, |h| h.buffer_size);
            if st.handoff.len() >= cap {
                st.counters.dropped_buffer_full += 1;
            } else {
                st.handoff.push(enc);
            }
        } else {
            st.counters.captured += 1;
            st.counters.delivered += 1;
        }
    }

    fn metric_values(&self) -> [u64; 8] {
        let st = self.state.borrow();
        let (counters, held) = match &st.dispatcher {
            Some(d) => (st.counters.add(&d.counters), d.buffered()),
            None => (st.counters, 0),
        };
        counters.values((held + st.handoff.len()) as u64)
    }
}

#[derive(Default)]
pub struct Root {
    shared: Option<Rc<Shared>>,
    metric_ids: Vec<Option<u32>>,
    published: Published,
    flushing: bool,
    /// The shared queue: registered (service) or resolved (worker).
    queue: Option<u32>,
    done_reported: bool,
}

fn now_ms() -> u64 {
    hostcall::now_ns() / 1_000_000
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Root {
    fn log(level: u32, msg: &str) {
        hostcall::log(level, msg.as_bytes());
    }

    /// Sends every batch the dispatcher wants sent now.
    fn pump(&mut self) {
        let Some(sh) = self.shared.clone() else {
            return;
        };
        let now = now_ms();
        loop {
            let mut st = sh.state.borrow_mut();
            let st = &mut *st;
            let Some(d) = st.dispatcher.as_mut() else {
                return;
            };
            let Some(batch) = d.next_send(now, self.flushing, &mut st.rng) else {
                return;
            };
            let h = d.config();
            let id = event::uuid_string(&batch.id);
            let mut headers: Vec<(&str, &str)> = vec![
                (":method", "POST"),
                (":path", &h.path),
                (":authority", &h.authority),
                ("content-type", encode::content_type(h.format)),
                ("x-usage-batch-id", &id),
            ];
            if h.compression == config::Compression::Gzip {
                headers.push(("content-encoding", "gzip"));
            }
            for (k, v) in &h.headers {
                headers.push((k, v));
            }
            let timeout = Duration::from_millis(h.timeout_ms);
            let body = d.body(&batch);
            let cluster = h.cluster.clone();
            match proxy_wasm::hostcalls::dispatch_http_call(
                &cluster,
                headers,
                Some(&body),
                vec![],
                timeout,
            ) {
                Ok(token) => d.sent(token, batch),
                Err(status) => {
                    let outcome = d.not_sent(batch, now, &mut st.rng);
                    Self::log(
                        LOG_WARN,
                        &format!("usage-filter: callout to cluster \"{cluster}\" could not start ({status:?}); {outcome:?}"),
                    );
                }
            }
        }
    }

    /// A shared-queue worker hands its waiting events to the service in one message.
    fn hand_over(&mut self) {
        let Some(sh) = self.shared.clone() else {
            return;
        };
        if !sh.is_worker_of_queue() || sh.state.borrow().handoff.is_empty() {
            return;
        }
        if self.queue.is_none() {
            let d = &sh.config.dispatcher;
            // The service may be configured after this VM (main thread): resolve lazily.
            self.queue = hostcall::resolve_shared_queue(&d.vm_id, &d.queue);
        }
        let Some(q) = self.queue else { return };
        let mut st = sh.state.borrow_mut();
        let msg = encode::pack(&st.handoff);
        if hostcall::enqueue_shared_queue(q, &msg) {
            st.handoff.clear();
        } else {
            // The queue went away (service reloaded): resolve again next time.
            self.queue = None;
        }
    }

    fn publish(&mut self) {
        let Some(sh) = &self.shared else { return };
        for (i, delta) in self.published.changes(sh.metric_values()) {
            if let Some(Some(id)) = self.metric_ids.get(i) {
                hostcall::increment_metric_signed(*id, delta);
            }
        }
    }

    fn idle(&self) -> bool {
        self.shared.as_ref().is_none_or(|sh| {
            let st = sh.state.borrow();
            st.handoff.is_empty() && st.dispatcher.as_ref().is_none_or(|d| d.idle())
        })
    }

    fn report(outcome: &Outcome, body_head: Option<&[u8]>) {
        match outcome {
            Outcome::Rejected { events, status } => Self::log(
                LOG_WARN,
                &format!(
                    "usage-filter: collector refused a batch of {events} events with status {status}, dropped: {}",
                    String::from_utf8_lossy(body_head.unwrap_or(b""))
                ),
            ),
            Outcome::Exhausted { events, attempts } => Self::log(
                LOG_WARN,
                &format!("usage-filter: batch of {events} events dropped after {attempts} attempts"),
            ),
            Outcome::Retrying { attempt, at_ms } => Self::log(
                LOG_DEBUG,
                &format!("usage-filter: batch will be retried (attempt {attempt}) at {at_ms} ms"),
            ),
            Outcome::Delivered { .. } | Outcome::Unknown => {}
        }
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some(sh) = self.shared.clone() else {
            return;
        };
        let (status, retry_after) = if num_headers == 0 {
            (None, None)
        } else {
            let status = hostcall::header(hostcall::CALL_RESPONSE_HEADERS, ":status")
                .map(|s| event::parse_status(&s));
            let ra = hostcall::header(hostcall::CALL_RESPONSE_HEADERS, "retry-after")
                .and_then(|v| crate::retry::parse_retry_after(&v));
            (status, ra)
        };
        let outcome = {
            let mut st = sh.state.borrow_mut();
            let st = &mut *st;
            match st.dispatcher.as_mut() {
                Some(d) => d.on_response(token, status, retry_after, now_ms(), &mut st.rng),
                None => Outcome::Unknown,
            }
        };
        let head = match outcome {
            Outcome::Rejected { .. } => {
                hostcall::buffer(hostcall::CALL_RESPONSE_BODY, 0, body_size.min(256))
            }
            _ => None,
        };
        Self::report(&outcome, head.as_deref());
        self.pump();
        if self.flushing {
            self.publish();
            if self.idle() && !self.done_reported {
                self.done_reported = true;
                hostcall::done();
            }
        }
    }

    fn on_done(&mut self) -> bool {
        self.flushing = true;
        let held = self.shared.as_ref().map_or(0, |sh| {
            let st = sh.state.borrow();
            st.handoff.len() + st.dispatcher.as_ref().map_or(0, |d| d.buffered())
        });
        let service = self
            .shared
            .as_ref()
            .is_some_and(|sh| sh.config.dispatcher.service);
        if service {
            // The singleton service is only torn down when Envoy exits, and Envoy 1.40 crashes
            // (SIGSEGV) on a callout made from this on_done: say what is lost, send nothing.
            if held > 0 {
                Self::log(
                    LOG_WARN,
                    &format!("usage-filter: proxy exiting: {held} buffered events cannot be sent"),
                );
            }
            self.publish();
            return true;
        }
        if held > 0 {
            Self::log(
                LOG_INFO,
                &format!("usage-filter: shutting down, flushing {held} buffered events"),
            );
        }
        self.hand_over();
        self.pump();
        self.publish();
        let idle = self.idle();
        self.done_reported = idle;
        idle
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, size: usize) -> bool {
        let raw = hostcall::buffer(hostcall::PLUGIN_CONFIGURATION, 0, size).unwrap_or_default();
        let cfg = match config::parse(&raw, &env_var) {
            Ok(c) => c,
            Err(e) => {
                Self::log(LOG_ERROR, &format!("usage-filter: {e}"));
                return false;
            }
        };
        if self.metric_ids.is_empty() {
            self.metric_ids = metrics::NAMES
                .iter()
                .enumerate()
                .map(|(i, n)| hostcall::define_metric(u32::from(i == metrics::GAUGE), n))
                .collect();
        }
        let service = cfg.dispatcher.service && cfg.dispatcher.mode == DispatcherMode::SharedQueue;
        if service {
            match hostcall::register_shared_queue(&cfg.dispatcher.queue) {
                Some(q) => self.queue = Some(q),
                None => {
                    Self::log(
                        LOG_ERROR,
                        "usage-filter: dispatcher.mode: this host has no shared queues; use \"local\"",
                    );
                    return false;
                }
            }
        }
        let dispatcher = match (&cfg.http, cfg.dispatcher.mode) {
            (Some(h), DispatcherMode::Local) => Some(Dispatcher::new(h.clone())),
            (Some(h), DispatcherMode::SharedQueue) if service => Some(Dispatcher::new(h.clone())),
            _ => None,
        };
        let tick_ms = match &cfg.http {
            _ if !cfg.enabled && !service => 0,
            Some(h) => h.flush_interval_ms.clamp(1, 100),
            None => 1000,
        };
        if tick_ms > 0 && !hostcall::set_tick_period_ms(tick_ms as u32) {
            Self::log(
                LOG_WARN,
                "usage-filter: host has no timer; batches go out only on callout responses",
            );
        }
        Self::log(
            LOG_INFO,
            &format!(
                "usage-filter: configured: enabled={} log={} http={} mode={:?}{}",
                cfg.enabled,
                cfg.log_sink,
                cfg.http.is_some(),
                cfg.dispatcher.mode,
                if service { " (service)" } else { "" }
            ),
        );
        let enabled = cfg.enabled;
        let extras = cfg.log_sink
            || cfg
                .http
                .as_ref()
                .is_some_and(|h| h.format != config::Format::Veil);
        let shared = Rc::new(Shared {
            config: cfg,
            state: RefCell::new(State {
                dispatcher,
                ..Default::default()
            }),
            extras,
        });
        // Streams of a disabled plugin get no shared state and do nothing.
        self.shared = (enabled || service).then_some(shared);
        true
    }

    fn on_tick(&mut self) {
        self.hand_over();
        self.pump();
        self.publish();
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let Some(sh) = self.shared.clone() else {
            return;
        };
        let now = now_ms();
        while let Some(msg) = hostcall::dequeue_shared_queue(queue_id) {
            let mut st = sh.state.borrow_mut();
            let Some(d) = st.dispatcher.as_mut() else {
                break;
            };
            for e in encode::unpack(&msg) {
                d.offer(e, now);
            }
        }
        self.pump();
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.as_ref().filter(|s| s.config.enabled).cloned();
        Some(Box::new(Stream::new(shared)))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
