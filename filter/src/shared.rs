//! What a root context and its streams share (one VM is one thread): the configuration, the
//! delivery, and the randomness event and batch ids are drawn from.

use crate::config::Config;
use crate::delivery::Delivery;
use crate::random::Pool;
use std::cell::RefCell;

pub struct Shared {
    pub config: Config,
    pub delivery: RefCell<Delivery>,
    pub rng: RefCell<Pool>,
    /// Whether any configured output carries the extra fields (request id, authority,
    /// attributes); `veil` over http alone sends exactly the ten fields, so capture skips
    /// the host calls that would read them.
    pub extras: bool,
}

impl Shared {
    pub fn new(config: Config, rng: Pool) -> Self {
        let extras = config.log_sink
            || config
                .http
                .iter()
                .any(|h| h.format != crate::config::Format::Veil);
        Shared {
            delivery: RefCell::new(Delivery::new(&config)),
            config,
            rng: RefCell::new(rng),
            extras,
        }
    }
}
