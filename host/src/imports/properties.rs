//! Properties: Envoy's attribute vocabulary (the part a usage filter can ask for), integers
//! as 8-byte little-endian; `proxy_set_property` writes the stream's filter state. Kong and
//! APISIX answer only `plugin_root_id` and `plugin_vm_id`; APISIX cannot set properties.

use super::buffers::header_of;
use super::guest::{count, give, read, stream, C, E};
use crate::abi::{self, status::*};
use crate::state::{HostState, Profile};
use wasmtime::{Linker, Result};

fn i64_bytes(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn property(st: &mut HostState, path: &[String]) -> Option<Vec<u8>> {
    let joined = path.join(".");
    match joined.as_str() {
        "plugin_root_id" => return Some(st.root_id.to_string().into_bytes()),
        "plugin_vm_id" => return Some(st.vm_id.clone().into_bytes()),
        _ => {}
    }
    if st.profile != Profile::Envoy {
        return None;
    }
    let now = st.hub.borrow().now_ns;
    let s = stream(st)?;
    if let Some(v) = s.filter_state.get(&joined) {
        return Some(v.clone());
    }
    let req = |n: &str| header_of(&s.request_headers, n);
    match path
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["request", "path"] => req(":path"),
        ["request", "url_path"] => {
            req(":path").map(|p| p.split(|&b| b == b'?').next().unwrap_or(&[]).to_vec())
        }
        ["request", "method"] => req(":method"),
        ["request", "host"] => req(":authority"),
        ["request", "scheme"] => req(":scheme"),
        ["request", "id"] => req("x-request-id"),
        ["request", "headers", name] => req(name),
        ["request", "time"] => Some(i64_bytes(s.start_ns as i64)),
        ["request", "duration"] => Some(i64_bytes((s.end_ns.unwrap_or(now) - s.start_ns) as i64)),
        ["request", "size"] => Some(i64_bytes(s.request_body.len() as i64)),
        ["request", "total_size"] => Some(i64_bytes(
            (s.request_body.len() + abi::encode_map(&s.request_headers).len()) as i64,
        )),
        ["response", "code"] => s.response_code.map(|c| i64_bytes(c as i64)),
        ["response", "size"] => Some(i64_bytes(s.response_size as i64)),
        ["response", "total_size"] => Some(i64_bytes(
            (s.response_size as usize + abi::encode_map(&s.response_headers).len()) as i64,
        )),
        ["response", "headers", name] => header_of(&s.response_headers, name),
        _ => None,
    }
}

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_get_property",
        |mut c: C, pp: i32, pl: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_property");
            let Some(raw) = read(&mut c, pp, pl) else {
                return Ok(INVALID_MEMORY_ACCESS);
            };
            let path = abi::property_path(&raw);
            match property(c.data_mut(), &path) {
                Some(v) => give(&mut c, &v, ret_ptr, ret_size),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_property",
        |mut c: C, pp: i32, pl: i32, vp: i32, vl: i32| -> i32 {
            count(&mut c, "proxy_set_property");
            let (Some(raw), Some(v)) = (read(&mut c, pp, pl), read(&mut c, vp, vl)) else {
                return INVALID_MEMORY_ACCESS;
            };
            let key = abi::property_path(&raw).join(".");
            let st = c.data_mut();
            if st.profile == Profile::Apisix {
                return UNIMPLEMENTED;
            }
            match stream(st) {
                Some(s) => {
                    s.filter_state.insert(key, v);
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
    Ok(())
}
