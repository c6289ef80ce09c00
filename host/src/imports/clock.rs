//! Timers and clock: the hub's simulated clock and the root context's tick period
//! (APISIX has no timer).

use super::guest::{count, write_u64, C, E};
use crate::abi::status::*;
use crate::state::{HostState, Profile};
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
    l.func_wrap(
        E,
        "proxy_get_current_time_nanoseconds",
        |mut c: C, out: i32| -> i32 {
            count(&mut c, "proxy_get_current_time_nanoseconds");
            let now = c.data().hub.borrow().now_ns;
            write_u64(&mut c, out, now)
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
    Ok(())
}
