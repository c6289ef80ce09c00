//! Every `env.proxy_*` import of ABI v0.2.1, answering the way Envoy 1.40 does: the status
//! codes the spec gives, NOT_FOUND for absent values, properties in Envoy's encoding,
//! BAD_ARGUMENT for a callout to an unknown cluster or without `:method`/`:path`/`:authority`.

use crate::abi::{self, buffer_type, map_type, status::*, Headers};
use crate::state::*;
use wasmtime::Result;
use wasmtime::{Caller, Linker};

type C<'a> = Caller<'a, HostState>;

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

fn write_u32(c: &mut C, ptr: i32, v: u32) -> i32 {
    if write(c, ptr, &v.to_le_bytes()) {
        OK
    } else {
        INVALID_MEMORY_ACCESS
    }
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

fn stream(st: &mut HostState) -> Option<&mut StreamData> {
    let id = st.active;
    st.streams.get_mut(&id)
}

fn map_mut(st: &mut HostState, map: i32) -> Option<&mut Headers> {
    match map {
        map_type::REQUEST_HEADERS => stream(st).map(|s| &mut s.request_headers),
        map_type::RESPONSE_HEADERS => stream(st).map(|s| &mut s.response_headers),
        map_type::CALL_RESPONSE_HEADERS => st.call_response.as_mut().map(|r| &mut r.headers),
        _ => None,
    }
}

fn map_get(st: &mut HostState, map: i32) -> Option<Headers> {
    match map {
        map_type::REQUEST_TRAILERS
        | map_type::RESPONSE_TRAILERS
        | map_type::CALL_RESPONSE_TRAILERS => Some(Vec::new()),
        _ => map_mut(st, map).map(|m| m.clone()),
    }
}

fn i64_bytes(v: i64) -> Vec<u8> {
    v.to_le_bytes().to_vec()
}

fn header_of(h: &Headers, name: &str) -> Option<Vec<u8>> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// Envoy's attribute vocabulary, the part a usage filter can ask for.
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
        ["response", "size"] => Some(i64_bytes(s.response_body.len() as i64)),
        ["response", "total_size"] => Some(i64_bytes(
            (s.response_body.len() + abi::encode_map(&s.response_headers).len()) as i64,
        )),
        ["response", "headers", name] => header_of(&s.response_headers, name),
        _ => None,
    }
}

pub fn add_to_linker(l: &mut Linker<HostState>) -> Result<()> {
    const E: &str = "env";
    l.func_wrap(
        E,
        "proxy_log",
        |mut c: C, level: i32, ptr: i32, len: i32| -> i32 {
            count(&mut c, "proxy_log");
            let Some(msg) = read_str(&mut c, ptr, len) else {
                return INVALID_MEMORY_ACCESS;
            };
            let st = c.data_mut();
            if level >= st.log_level {
                st.logs.push(LogLine {
                    level,
                    message: msg,
                });
            }
            OK
        },
    )?;
    l.func_wrap(E, "proxy_get_log_level", |mut c: C, out: i32| -> i32 {
        count(&mut c, "proxy_get_log_level");
        let lvl = c.data().log_level as u32;
        write_u32(&mut c, out, lvl)
    })?;
    l.func_wrap(
        E,
        "proxy_get_current_time_nanoseconds",
        |mut c: C, out: i32| -> i32 {
            count(&mut c, "proxy_get_current_time_nanoseconds");
            let now = c.data().hub.borrow().now_ns;
            if write(&mut c, out, &now.to_le_bytes()) {
                OK
            } else {
                INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_tick_period_milliseconds",
        |mut c: C, ms: i32| -> i32 {
            count(&mut c, "proxy_set_tick_period_milliseconds");
            let st = c.data_mut();
            if st.profile == Profile::Apisix {
                return UNIMPLEMENTED;
            }
            st.tick_period_ms = ms as u32;
            OK
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_buffer_bytes",
        |mut c: C, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_buffer_bytes");
            let st = c.data_mut();
            let data = match kind {
                buffer_type::REQUEST_BODY => stream(st).map(|s| s.request_body.clone()),
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
                buffer_type::REQUEST_BODY => stream(st).map(|s| &mut s.request_body),
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
    l.func_wrap(
        E,
        "proxy_get_header_map_pairs",
        |mut c: C, map: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_get_header_map_pairs");
            let Some(m) = map_get(c.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            give(&mut c, &abi::encode_map(&m), ret_ptr, ret_size)
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
            match map_mut(c.data_mut(), map) {
                Some(m) => {
                    *m = new;
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
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
            let (Some(k), Some(v)) = (read_str(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return INVALID_MEMORY_ACCESS;
            };
            let Some(m) = map_mut(c.data_mut(), map) else {
                return NOT_FOUND;
            };
            m.retain(|(key, _)| *key != k);
            m.push((k, v));
            OK
        },
    )?;
    l.func_wrap(
        E,
        "proxy_add_header_map_value",
        |mut c: C, map: i32, kp: i32, kl: i32, vp: i32, vl: i32| -> i32 {
            count(&mut c, "proxy_add_header_map_value");
            let (Some(k), Some(v)) = (read_str(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return INVALID_MEMORY_ACCESS;
            };
            let Some(m) = map_mut(c.data_mut(), map) else {
                return NOT_FOUND;
            };
            m.push((k, v));
            OK
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
            let Some(m) = map_mut(c.data_mut(), map) else {
                return NOT_FOUND;
            };
            m.retain(|(key, _)| *key != k);
            OK
        },
    )?;
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
    l.func_wrap(
        E,
        "proxy_get_shared_data",
        |mut c: C, kp: i32, kl: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32| -> Result<i32> {
            count(&mut c, "proxy_get_shared_data");
            let Some(k) = read_str(&mut c, kp, kl) else {
                return Ok(INVALID_MEMORY_ACCESS);
            };
            let found = c.data().hub.borrow().shared_data.get(&k).cloned();
            let Some((v, cas)) = found else {
                return Ok(NOT_FOUND);
            };
            let st = give(&mut c, &v, ret_ptr, ret_size)?;
            if st != OK {
                return Ok(st);
            }
            Ok(write_u32(&mut c, ret_cas, cas))
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_shared_data",
        |mut c: C, kp: i32, kl: i32, vp: i32, vl: i32, cas: i32| -> i32 {
            count(&mut c, "proxy_set_shared_data");
            let (Some(k), Some(v)) = (read_str(&mut c, kp, kl), read(&mut c, vp, vl)) else {
                return INVALID_MEMORY_ACCESS;
            };
            let hub = c.data().hub.clone();
            let mut hub = hub.borrow_mut();
            let entry = hub.shared_data.entry(k).or_insert((Vec::new(), 0));
            if cas != 0 && entry.1 != cas as u32 {
                return CAS_MISMATCH;
            }
            *entry = (v, entry.1.wrapping_add(1).max(1));
            OK
        },
    )?;
    l.func_wrap(
        E,
        "proxy_register_shared_queue",
        |mut c: C, np: i32, nl: i32, ret: i32| -> i32 {
            count(&mut c, "proxy_register_shared_queue");
            let Some(name) = read_str(&mut c, np, nl) else {
                return INVALID_MEMORY_ACCESS;
            };
            let (vm_id, key, hub) = (
                c.data().vm_id.clone(),
                c.data().vm_key,
                c.data().hub.clone(),
            );
            let id = {
                let mut hub = hub.borrow_mut();
                match hub
                    .queues
                    .iter()
                    .position(|q| q.vm_id == vm_id && q.name == name)
                {
                    Some(i) => {
                        hub.queues[i].owner = Some(key);
                        i + 1
                    }
                    None => {
                        hub.queues.push(Queue {
                            vm_id,
                            name,
                            owner: Some(key),
                            ..Default::default()
                        });
                        hub.queues.len()
                    }
                }
            };
            write_u32(&mut c, ret, id as u32)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_resolve_shared_queue",
        |mut c: C, vp: i32, vl: i32, np: i32, nl: i32, ret: i32| -> i32 {
            count(&mut c, "proxy_resolve_shared_queue");
            if c.data().profile != Profile::Envoy {
                return UNIMPLEMENTED;
            }
            let (Some(vm_id), Some(name)) = (read_str(&mut c, vp, vl), read_str(&mut c, np, nl))
            else {
                return INVALID_MEMORY_ACCESS;
            };
            let found = c
                .data()
                .hub
                .borrow()
                .queues
                .iter()
                .position(|q| q.vm_id == vm_id && q.name == name);
            match found {
                Some(i) => write_u32(&mut c, ret, (i + 1) as u32),
                None => NOT_FOUND,
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_enqueue_shared_queue",
        |mut c: C, id: i32, vp: i32, vl: i32| -> i32 {
            count(&mut c, "proxy_enqueue_shared_queue");
            let Some(v) = read(&mut c, vp, vl) else {
                return INVALID_MEMORY_ACCESS;
            };
            let hub = c.data().hub.clone();
            let mut hub = hub.borrow_mut();
            match hub.queues.get_mut((id as usize).wrapping_sub(1)) {
                Some(q) => {
                    q.items.push_back(v);
                    q.ready = true;
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_dequeue_shared_queue",
        |mut c: C, id: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            count(&mut c, "proxy_dequeue_shared_queue");
            let item = {
                let hub = c.data().hub.clone();
                let mut hub = hub.borrow_mut();
                match hub.queues.get_mut((id as usize).wrapping_sub(1)) {
                    None => return Ok(NOT_FOUND),
                    Some(q) => q.items.pop_front(),
                }
            };
            match item {
                Some(v) => give(&mut c, &v, ret_ptr, ret_size),
                None => Ok(EMPTY),
            }
        },
    )?;
    l.func_wrap(E, "proxy_continue_stream", |mut c: C, _t: i32| -> i32 {
        count(&mut c, "proxy_continue_stream");
        OK
    })?;
    l.func_wrap(E, "proxy_close_stream", |mut c: C, _t: i32| -> i32 {
        count(&mut c, "proxy_close_stream");
        OK
    })?;
    l.func_wrap(
        E,
        "proxy_send_local_response",
        |mut c: C,
         code: i32,
         _dp: i32,
         _dl: i32,
         _bp: i32,
         _bl: i32,
         _hp: i32,
         _hl: i32,
         _grpc: i32|
         -> i32 {
            count(&mut c, "proxy_send_local_response");
            let st = c.data_mut();
            let id = st.active;
            st.local_responses.push((id, code as u32));
            OK
        },
    )?;
    l.func_wrap(
        E,
        "proxy_http_call",
        |mut c: C,
         up: i32,
         ul: i32,
         hp: i32,
         hl: i32,
         bp: i32,
         bl: i32,
         tp: i32,
         tl: i32,
         timeout: i32,
         ret: i32|
         -> i32 {
            count(&mut c, "proxy_http_call");
            let (Some(upstream), Some(hbytes), Some(body), Some(_trailers)) = (
                read_str(&mut c, up, ul),
                read(&mut c, hp, hl),
                read(&mut c, bp, bl),
                read(&mut c, tp, tl),
            ) else {
                return INVALID_MEMORY_ACCESS;
            };
            let Some(headers) = abi::decode_map(&hbytes) else {
                return BAD_ARGUMENT;
            };
            let st = c.data_mut();
            let has = |n: &str| headers.iter().any(|(k, v)| k == n && !v.is_empty());
            if !st.clusters.contains(&upstream)
                || !has(":method")
                || !has(":path")
                || !has(":authority")
            {
                return BAD_ARGUMENT;
            }
            st.next_token += 1;
            let token = st.next_token;
            let sent_at_ns = st.hub.borrow().now_ns;
            st.pending.push(Callout {
                token,
                context_id: st.active,
                upstream,
                headers,
                body,
                timeout_ms: timeout as u32,
                sent_at_ns,
                state: CalloutState::Pending,
            });
            write_u32(&mut c, ret, token)
        },
    )?;
    for name in ["proxy_grpc_call"] {
        l.func_wrap(
            E,
            name,
            |mut c: C,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32,
             _: i32|
             -> i32 {
                count(&mut c, "proxy_grpc_call");
                BAD_ARGUMENT
            },
        )?;
    }
    l.func_wrap(
        E,
        "proxy_grpc_stream",
        |mut c: C, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_grpc_stream");
            BAD_ARGUMENT
        },
    )?;
    l.func_wrap(
        E,
        "proxy_grpc_send",
        |mut c: C, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_grpc_send");
            NOT_FOUND
        },
    )?;
    l.func_wrap(E, "proxy_grpc_cancel", |mut c: C, _: i32| -> i32 {
        count(&mut c, "proxy_grpc_cancel");
        NOT_FOUND
    })?;
    l.func_wrap(E, "proxy_grpc_close", |mut c: C, _: i32| -> i32 {
        count(&mut c, "proxy_grpc_close");
        NOT_FOUND
    })?;
    l.func_wrap(
        E,
        "proxy_get_status",
        |mut c: C, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_get_status");
            NOT_FOUND
        },
    )?;
    l.func_wrap(
        E,
        "proxy_set_effective_context",
        |mut c: C, id: i32| -> i32 {
            count(&mut c, "proxy_set_effective_context");
            let st = c.data_mut();
            let id = id as u32;
            if id == st.root_id || st.streams.contains_key(&id) {
                st.active = id;
                OK
            } else {
                BAD_ARGUMENT
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_call_foreign_function",
        |mut c: C, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 {
            count(&mut c, "proxy_call_foreign_function");
            NOT_FOUND
        },
    )?;
    l.func_wrap(E, "proxy_done", |mut c: C| -> i32 {
        count(&mut c, "proxy_done");
        c.data_mut().done_called = true;
        OK
    })?;
    l.func_wrap(
        E,
        "proxy_define_metric",
        |mut c: C, kind: i32, np: i32, nl: i32, ret: i32| -> i32 {
            count(&mut c, "proxy_define_metric");
            let Some(name) = read_str(&mut c, np, nl) else {
                return INVALID_MEMORY_ACCESS;
            };
            let kind = match kind {
                0 => MetricKind::Counter,
                1 => MetricKind::Gauge,
                2 => MetricKind::Histogram,
                _ => return BAD_ARGUMENT,
            };
            let st = c.data_mut();
            let id = match st.metrics.iter().position(|m| m.name == name) {
                Some(i) => i,
                None => {
                    st.metrics.push(Metric {
                        name,
                        kind,
                        value: 0,
                    });
                    st.metrics.len() - 1
                }
            };
            write_u32(&mut c, ret, id as u32)
        },
    )?;
    l.func_wrap(
        E,
        "proxy_get_metric",
        |mut c: C, id: i32, ret: i32| -> i32 {
            count(&mut c, "proxy_get_metric");
            let Some(v) = c.data().metrics.get(id as usize).map(|m| m.value) else {
                return NOT_FOUND;
            };
            if write(&mut c, ret, &(v as u64).to_le_bytes()) {
                OK
            } else {
                INVALID_MEMORY_ACCESS
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_record_metric",
        |mut c: C, id: i32, value: i64| -> i32 {
            count(&mut c, "proxy_record_metric");
            match c.data_mut().metrics.get_mut(id as usize) {
                Some(m) => {
                    m.value = value;
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
    l.func_wrap(
        E,
        "proxy_increment_metric",
        |mut c: C, id: i32, offset: i64| -> i32 {
            count(&mut c, "proxy_increment_metric");
            match c.data_mut().metrics.get_mut(id as usize) {
                // Envoy: counters only go up; gauges add or subtract.
                Some(m) if m.kind == MetricKind::Counter && offset < 0 => BAD_ARGUMENT,
                Some(m) => {
                    m.value += offset;
                    OK
                }
                None => NOT_FOUND,
            }
        },
    )?;
    let _ = SERIALIZATION_FAILURE;
    Ok(())
}
