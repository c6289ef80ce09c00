//! The root's own costs with the http sink's defaults (issue 22): an idle second's ticks, and
//! one batch of 100 events beyond its events' requests, in host calls and fuel; and whether
//! the linear memory grows while batches go out.

use super::{acked_vm, http_sink, typical_get, WARMUP};
use anyhow::Result;
use proxy_wasm_host::metrics::EVENTS_DELIVERED;
use proxy_wasm_host::Vm;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Host calls made since `before`, by import name.
pub fn calls_since(
    vm: &Vm,
    before: &std::collections::HashMap<&'static str, u64>,
) -> BTreeMap<&'static str, u64> {
    vm.host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// The root's own costs with the http sink's defaults (issue 22): what an idle second costs
/// (its ticks), and what one batch of 100 events costs beyond its events' requests (the
/// callout, its answer, and the ticks while the events came), in host calls and fuel.
pub fn root_costs(wasm: &str) -> Result<Value> {
    let mut vm = acked_vm(wasm, http_sink())?;
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    vm.advance_ms(2000)?;
    // idle: ten seconds without a request
    let before = vm.host_calls().clone();
    vm.reset_fuel();
    vm.advance_ms(10_000)?;
    let idle_calls = calls_since(&vm, &before);
    let (ticks, idle_fuel) = vm.fuel().get("on_tick").copied().unwrap_or((0, 0));
    // busy: 1,000 events at once (a loaded worker: the count cuts the batches, one tick
    // starts them and each answer starts the next), then two seconds to deliver them
    let dense = |vm: &mut Vm| {
        vm.request()
            .path("/v1/things/42?expand=owner")
            .key("sk_live_0123456789abcdef")
            .response_body(512)
            .respond(200)
    };
    let before = vm.host_calls().clone();
    dense(&mut vm)?;
    let per_request = calls_since(&vm, &before);
    vm.advance_ms(2000)?;
    let delivered_before = vm.metric(EVENTS_DELIVERED);
    let before = vm.host_calls().clone();
    vm.reset_fuel();
    let n = 1000u64;
    for _ in 0..n {
        dense(&mut vm)?;
    }
    vm.advance_ms(2000)?;
    let delivered = (vm.metric(EVENTS_DELIVERED) - delivered_before).max(0) as u64;
    let batches = delivered.div_ceil(100).max(1);
    let root_calls: BTreeMap<&str, f64> = calls_since(&vm, &before)
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.saturating_sub(per_request.get(k).copied().unwrap_or(0) * n),
            )
        })
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| (k, v as f64 / batches as f64))
        .collect();
    let root_fuel: u64 = ["on_tick", "on_http_call_response"]
        .iter()
        .filter_map(|k| vm.fuel().get(k))
        .map(|(_, f)| f)
        .sum();
    let busy_ticks = vm.fuel().get("on_tick").map_or(0, |(c, _)| *c);
    let by_callback: BTreeMap<&str, u64> = ["on_tick", "on_http_call_response"]
        .iter()
        .map(|k| (*k, vm.fuel().get(k).map_or(0, |(_, f)| *f) / batches))
        .collect();
    // memory: twenty more such seconds must not grow the linear memory (bodies built in a
    // reused buffer; records freed at their answers)
    let memory_before = vm.memory_bytes();
    for _ in 0..20 {
        for _ in 0..n {
            dense(&mut vm)?;
        }
        vm.advance_ms(1000)?;
    }
    let memory_growth = vm.memory_bytes() - memory_before;
    Ok(json!({
        "idle_ticks_per_s": ticks as f64 / 10.0,
        "idle_host_calls_per_s": idle_calls.iter().map(|(k, v)| (*k, *v as f64 / 10.0)).collect::<BTreeMap<_, _>>(),
        "idle_fuel_per_tick": idle_fuel / ticks.max(1),
        "events": delivered,
        "batches": batches,
        "ticks_while_busy": busy_ticks,
        "root_host_calls_per_batch": root_calls,
        "root_fuel_per_batch": root_fuel / batches,
        "root_fuel_per_batch_by_callback": by_callback,
        "memory_growth_bytes_over_20000_events": memory_growth,
    }))
}
