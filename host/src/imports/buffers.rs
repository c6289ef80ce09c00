//! Buffers and header maps: the active stream's bodies and headers, the callout response
//! being delivered, and the VM and plugin configuration. Trailers read as empty maps.

use super::guest::{count, give, read, read_str, stream, C, E};
use crate::abi::{self, buffer_type, map_type, status::*, Headers};
use crate::state::HostState;
use wasmtime::{Linker, Result};

/// A map about to be written: request headers already let go upstream are kept as they went.
fn map_write(st: &mut HostState, map: i32) -> Option<&mut Headers> {
    if map == map_type::REQUEST_HEADERS {
        if let Some(s) = stream(st).filter(|s| s.request_headers_open) {
            if s.released && s.upstream_headers.is_none() {
                s.upstream_headers = Some(s.request_headers.clone());
            }
        }
    }
    map_mut(st, map)
}

fn map_mut(st: &mut HostState, map: i32) -> Option<&mut Headers> {
    match map {
        map_type::REQUEST_HEADERS => stream(st)
            .filter(|s| s.request_headers_open)
            .map(|s| &mut s.request_headers),
        map_type::RESPONSE_HEADERS => stream(st)
            .filter(|s| s.response_headers_open)
            .map(|s| &mut s.response_headers),
        map_type::CALL_RESPONSE_HEADERS => st.call_response.as_mut().map(|r| &mut r.headers),
        _ => None,
    }
}

/// The map in the ABI's encoding (encoded in place: the agent reads every entry's map once).
fn map_encoded(st: &mut HostState, map: i32) -> Option<Vec<u8>> {
    match map {
        map_type::REQUEST_TRAILERS
        | map_type::RESPONSE_TRAILERS
        | map_type::CALL_RESPONSE_TRAILERS => Some(abi::encode_map(&Vec::new())),
        _ => map_mut(st, map).map(|m| abi::encode_map(m)),
    }
}

pub(super) fn header_of(h: &Headers, name: &str) -> Option<Vec<u8>> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
    add_buffers(l)?;
    add_header_maps(l)?;
    add_header_values(l)
}

fn add_buffers(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_get_buffer_bytes",
        |mut c: C, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_buffer_bytes");
            let st = c.data_mut();
            let data = match kind {
                buffer_type::REQUEST_BODY => stream(st).map(|s| s.request_chunk.clone()),
                buffer_type::RESPONSE_BODY => stream(st).map(|s| s.response_body.clone()),
                buffer_type::CALL_RESPONSE_BODY => {
                    st.call_response.as_ref().map(|r| r.body.clone())
                }
                buffer_type::VM_CONFIGURATION => Some(st.vm_config.clone()),
                buffer_type::PLUGIN_CONFIGURATION => Some(st.plugin_config.clone()),
                _ => None,
            };
            let Some(data) = data else {
                return Ok(NOT_FOUND);
            };
            let start = (start as u32 as usize).min(data.len());
            let end = start.saturating_add(max as u32 as usize).min(data.len());
            give(&mut c, &data[start..end], ret_ptr, ret_size)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_buffer_bytes",
        |mut c: C, kind: i32, start: i32, size: i32, ptr: i32, len: i32| -> i32 {
            count(&mut c, "proxy_set_buffer_bytes");
            let Some(data) = read(&mut c, ptr, len) else {
                return INVALID_MEMORY_ACCESS;
            };
            let st = c.data_mut();
            let Some(buf) = (match kind {
                buffer_type::REQUEST_BODY => stream(st).map(|s| &mut s.request_chunk),
                buffer_type::RESPONSE_BODY => stream(st).map(|s| &mut s.response_body),
                _ => None,
            }) else {
                return NOT_FOUND;
            };
            let start = (start as usize).min(buf.len());
            let end = start.saturating_add(size as usize).min(buf.len());
            buf.splice(start..end, data);
            OK
        },
    )?;
    Ok(())
}

/// Whole header maps, in `abi::encode_map`'s encoding.
fn add_header_maps(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_get_header_map_pairs",
        |mut c: C, map: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_pairs");
            let Some(m) = map_encoded(c.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &m, ret_ptr, ret_size)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_header_map_pairs",
        |mut c: C, map: i32, ptr: i32, len: i32| -> i32 {
            count(&mut c, "proxy_set_header_map_pairs");
            let Some(bytes) = read(&mut c, ptr, len) else {
                return INVALID_MEMORY_ACCESS;
            };
            let Some(new) = abi::decode_map(&bytes) else {
                return BAD_ARGUMENT;
            };
            match map_write(c.data_mut(), map) {
                Some(m) => {
                    *m = new;
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
    Ok(())
}

/// Adds a header read from guest memory (key and value pointers and lengths) to a map, first
/// removing those of its name when `replace`.
fn put_value(c: &mut C, map: i32, (kp, kl, vp, vl): (i32, i32, i32, i32), replace: bool) -> i32 {
    let (Some(k), Some(v)) = (read_str(c, kp, kl), read(c, vp, vl)) else {
        return INVALID_MEMORY_ACCESS;
    };
    let Some(m) = map_write(c.data_mut(), map) else {
        return NOT_FOUND;
    };
    if replace {
        m.retain(|(key, _)| *key != k);
    }
    m.push((k, v));
    OK
}

/// One header of a map: get, replace, add, remove.
fn add_header_values(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_get_header_map_value",
        |mut c: C, map: i32, kp: i32, kl: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_value");
            let Some(key) = read_str(&mut c, kp, kl) else {
                return Ok(INVALID_MEMORY_ACCESS);
            };
            let Some(m) = map_mut(c.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            let Some(v) = header_of(m, &key) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &v, ret_ptr, ret_size)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_replace_header_map_value",
        |mut c: C, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            count(&mut c, "proxy_replace_header_map_value");
            put_value(&mut c, map, (kp, kl, vp, vl), true)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_add_header_map_value",
        |mut c: C, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            count(&mut c, "proxy_add_header_map_value");
            put_value(&mut c, map, (kp, kl, vp, vl), false)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_remove_header_map_value",
        |mut c: C, map: i32, kp: i32, kl: i32| -> i32 {
            count(&mut c, "proxy_remove_header_map_value");
            let Some(k) = read_str(&mut c, kp, kl) else {
                return INVALID_MEMORY_ACCESS;
            };
            let Some(m) = map_write(c.data_mut(), map) else {
                return NOT_FOUND;
            };
            m.retain(|(key, _)| *key != k);
            OK
        },
    )?;
    Ok(())
}
