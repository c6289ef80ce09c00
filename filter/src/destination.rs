//! One destination of the http sink (an element of `http`): its dispatcher (in the roles that
//! send), its own books and the names they are published under. `Delivery` holds one per
//! destination and hands each the same events.
//!
//! No host calls.

use crate::config::Http;
use crate::dispatch::Dispatcher;
use crate::metrics::{self, Counters};

#[derive(Debug)]
pub struct Destination {
    /// Local and queue-service roles; a queue worker only keeps the books.
    pub dispatcher: Option<Dispatcher>,
    /// This destination's outcomes: everything but what `metrics::PER_EVENT` counts.
    pub counters: Counters,
    /// (index in `metrics::NAMES`, the name published) of this destination's metrics.
    pub names: Vec<(usize, String)>,
    /// Named when `http` was an array; `None` keeps the plain names (and log lines).
    pub label: Option<String>,
    /// The index in `Delivery`'s shared shapes when another destination writes the same wire
    /// format: then its events come with their element written already.
    pub share: Option<usize>,
}

impl Destination {
    pub fn new(h: &Http, sends: bool, named: bool) -> Self {
        let label = named.then(|| h.name.clone());
        Destination {
            dispatcher: sends.then(|| Dispatcher::new(h.clone())),
            counters: Counters::default(),
            names: (0..metrics::COUNT)
                .filter(|i| !metrics::PER_EVENT.contains(i))
                .map(|i| (i, metrics::name(i, label.as_deref())))
                .collect(),
            label,
            share: None,
        }
    }

    /// Whether `a` and `b` write an event into the same bytes.
    pub fn same_shape(a: &Http, b: &Http) -> bool {
        a.format == b.format
            && a.kafka_key == b.kafka_key
            && a.cloudevents_type == b.cloudevents_type
            && a.cloudevents_source == b.cloudevents_source
    }

    /// Events its dispatcher holds: waiting, in flight, waiting for a retry.
    pub fn buffered(&self) -> usize {
        self.dispatcher.as_ref().map_or(0, |d| d.buffered())
    }
}
