//! Shared data (key -> value with a CAS counter) and shared queues, both on the hub the VMs
//! of one simulated process share. Queue ids are 1-based; the last VM to register a queue
//! owns it. Only Envoy resolves a queue another VM registered.

use super::guest::{count, give, read, read_str, write_u32, C, E};
use crate::abi::status::*;
use crate::state::{HostState, Profile, Queue};
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
    add_shared_data(l)?;
    add_queue_names(l)?;
    add_queue_items(l)
}

fn add_shared_data(l: &mut Linker<HostState>) -> Result<()> {
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
    Ok(())
}

/// Registering (and taking ownership of) a queue, and finding one by VM id and name.
fn add_queue_names(l: &mut Linker<HostState>) -> Result<()> {
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
    Ok(())
}

/// Items in and out; an enqueue marks the queue ready for its owner's `on_queue_ready`.
fn add_queue_items(l: &mut Linker<HostState>) -> Result<()> {
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
    Ok(())
}
