//! Every `env.proxy_*` import of ABI v0.2.1, answering the way Envoy 1.40 does: the status
//! codes the spec gives, NOT_FOUND for absent values, properties in Envoy's encoding,
//! BAD_ARGUMENT for a callout to an unknown cluster or without `:method`/`:path`/`:authority`.
//!
//! One module per ABI area; `guest` holds what they share: guest memory access and the
//! count of host calls by import name.

use crate::state::HostState;
use wasmtime::{Linker, Result};

mod buffers;
mod callouts;
mod clock;
mod context;
mod guest;
mod logging;
mod metrics;
mod properties;
mod shared;
mod stubs;

pub fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    logging::add(l)?;
    clock::add(l)?;
    buffers::add(l)?;
    properties::add(l)?;
    shared::add(l)?;
    context::add(l)?;
    callouts::add(l)?;
    stubs::add(l)?;
    metrics::add(l)?;
    Ok(())
}
