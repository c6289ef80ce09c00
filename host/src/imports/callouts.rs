//! HTTP callouts: `proxy_http_call` queues a `Callout` for the test (or the scripted
//! collector) to answer; BAD_ARGUMENT for an unknown cluster or a missing `:method`,
//! `:path` or `:authority`, as Envoy.

use super::guest::{count, read, read_str, write_u32, C, E};
use crate::abi::{self, status::*};
use crate::state::{Callout, CalloutState, HostState};
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
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
            if let Some(status) = st.callout_refusal {
                return status;
            }
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
    Ok(())
}
