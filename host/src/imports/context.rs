//! Contexts and streams: switching the effective context, the root's `proxy_done`, local
//! responses (recorded per stream), and continue/close, which the host accepts and ignores.

use super::guest::{count, C, E};
use crate::abi::status::*;
use crate::state::HostState;
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
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
    l.func_wrap(E, "proxy_done", |mut c: C| -> i32 {
        count(&mut c, "proxy_done");
        c.data_mut().done_called = true;
        OK
    })?;
    Ok(())
}
