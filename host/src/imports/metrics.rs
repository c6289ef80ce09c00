//! Metrics: counters, gauges and histograms by name, ids in definition order; Envoy refuses
//! to decrement a counter.

use super::guest::{count, read_str, write_u32, write_u64, C, E};
use crate::abi::status::*;
use crate::state::{HostState, Metric, MetricKind};
use wasmtime::{Linker, Result};

pub(super) fn add(l: &mut Linker<HostState>) -> Result<()> {
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
            write_u64(&mut c, ret, v as u64)
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
    Ok(())
}
