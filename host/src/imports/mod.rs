//! Every `env.proxy_*` import of ABI v0.2.1, answering the way Envoy 1.40 does: the status
//! codes the spec gives, NOT_FOUND for absent values, properties in Envoy's encoding,
//! BAD_ARGUMENT for a callout to an unknown cluster or without `:method`/`:path`/`:authority`.
//!
//! One module per ABI area; this one holds what they share: guest memory access and the
//! count of host calls by import name.

use crate::abi::status::*;
use crate::state::*;
use wasmtime::Result;
use wasmtime::{Caller, Linker};

type C<'a> = Caller<'a, HostState>;

/// The module of every proxy-wasm import.
const E: &str = "env";

mod buffers;
mod callouts;
mod clock;
mod context;
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

/// Counts a host call under its import name (`HostState::host_calls`).
fn count(c: &mut C, name: &'static str) {
    *c.data_mut().host_calls.entry(name).or_default() += 1;
}

fn read(c: &mut C, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = c.data().memory?;
    let mut buf = vec![0u8; len as u32 as usize];
    m.read(&*c, ptr as u32 as usize, &mut buf).ok()?;
    Some(buf)
}

fn read_str(c: &mut C, ptr: i32, len: i32) -> Option<String> {
    read(c, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

fn write(c: &mut C, ptr: i32, data: &[u8]) -> bool {
    match c.data().memory {
        Some(m) => m.write(&mut *c, ptr as u32 as usize, data).is_ok(),
        None => false,
    }
}

/// OK when `data` was written at `ptr`, else INVALID_MEMORY_ACCESS.
fn write_status(c: &mut C, ptr: i32, data: &[u8]) -> i32 {
    if write(c, ptr, data) {
        OK
    } else {
        INVALID_MEMORY_ACCESS
    }
}

fn write_u32(c: &mut C, ptr: i32, v: u32) -> i32 {
    write_status(c, ptr, &v.to_le_bytes())
}

fn write_u64(c: &mut C, ptr: i32, v: u64) -> i32 {
    write_status(c, ptr, &v.to_le_bytes())
}

/// Hands bytes to the guest: memory from its `proxy_on_memory_allocate`, then the pointer
/// and size written to the two out-parameters.
fn give(c: &mut C, data: &[u8], ret_ptr: i32, ret_size: i32) -> Result<i32> {
    let Some(alloc) = c.data().alloc.clone() else {
        return Ok(INTERNAL_FAILURE);
    };
    let p = alloc.call(&mut *c, data.len() as i32)?;
    if !write(c, p, data) {
        return Ok(INVALID_MEMORY_ACCESS);
    }
    if write(c, ret_ptr, &(p as u32).to_le_bytes())
        && write(c, ret_size, &(data.len() as u32).to_le_bytes())
    {
        Ok(OK)
    } else {
        Ok(INVALID_MEMORY_ACCESS)
    }
}

/// The stream of the active context, if it is one.
fn stream(st: &mut HostState) -> Option<&mut StreamData> {
    let id = st.active;
    st.streams.get_mut(&id)
}
