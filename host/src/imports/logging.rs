//! Logging: `proxy_log` keeps lines at or above the VM's log level; `proxy_get_log_level`.

use super::guest::{count, read_str, write_u32, C, E};
use crate::abi::status::*;
use crate::state::{HostState, LogLine};
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
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
    Ok(())
}
