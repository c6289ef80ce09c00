//! What the imports share: the guest's memory (read, write, hand bytes over through its
//! allocator), the active stream, and the count of host calls by import name.

use crate::abi::status::{INTERNAL_FAILURE, INVALID_MEMORY_ACCESS, OK};
use crate::state::{HostState, StreamData};
use wasmtime::Caller;
use wasmtime::Result;

pub(super) type C<'a> = Caller<'a, HostState>;

/// The module of every proxy-wasm import.
pub(super) const E: &str = "env";

/// Counts a host call under its import name (`HostState::host_calls`).
pub(super) fn count(c: &mut C, name: &'static str) {
    *c.data_mut().host_calls.entry(name).or_default() += 1;
}

pub(super) fn read(c: &mut C, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let m = c.data().memory?;
    let mut buf = vec![0u8; len as u32 as usize];
    m.read(&*c, ptr as u32 as usize, &mut buf).ok()?;
    Some(buf)
}

pub(super) fn read_str(c: &mut C, ptr: i32, len: i32) -> Option<String> {
    read(c, ptr, len).map(|b| String::from_utf8_lossy(&b).into_owned())
}

pub(super) fn write(c: &mut C, ptr: i32, data: &[u8]) -> bool {
    match c.data().memory {
        Some(m) => m.write(&mut *c, ptr as u32 as usize, data).is_ok(),
        None => false,
    }
}

/// OK when `data` was written at `ptr`, else INVALID_MEMORY_ACCESS.
pub(super) fn write_status(c: &mut C, ptr: i32, data: &[u8]) -> i32 {
    if write(c, ptr, data) {
        OK
    } else {
        INVALID_MEMORY_ACCESS
    }
}

pub(super) fn write_u32(c: &mut C, ptr: i32, v: u32) -> i32 {
    write_status(c, ptr, &v.to_le_bytes())
}

pub(super) fn write_u64(c: &mut C, ptr: i32, v: u64) -> i32 {
    write_status(c, ptr, &v.to_le_bytes())
}

/// Hands bytes to the guest: memory from its `proxy_on_memory_allocate`, then the pointer
/// and size written to the two out-parameters.
pub(super) fn give(c: &mut C, data: &[u8], ret_ptr: i32, ret_size: i32) -> Result<i32> {
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
pub(super) fn stream(st: &mut HostState) -> Option<&mut StreamData> {
    let id = st.active;
    st.streams.get_mut(&id)
}
