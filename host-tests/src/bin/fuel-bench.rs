//! `make bench`, part (a): deterministic costs of the compiled filter in our host, in wasm fuel
//! (about one unit per wasm instruction), printed as JSON for `bench/report.py`.
//!
//! usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm>

use anyhow::{anyhow, Result};
use host_tests::metrics::EVENTS_DELIVERED;
use host_tests::{Reply, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const WARMUP: usize = 200;
const MEASURED: usize = 2000;

fn typical_get(vm: &mut Vm) -> Result<host_tests::Outcome> {
    vm.request()
        .path("/v1/things/42?expand=owner")
        .key("sk_live_0123456789abcdef")
        .upstream_ms(3)
        .response_body(512)
        .respond(200)
}

/// Average fuel per request by callback, and the batch share per event.
fn per_request(wasm: &str, config: Value) -> Result<Value> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .config(config)
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    vm.auto_reply(|_| Reply::Status(200));
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    vm.advance_ms(1000)?;
    vm.reset_fuel();
    let mut per_cb: BTreeMap<&'static str, u64> = BTreeMap::new();
    for _ in 0..MEASURED {
        for (cb, (_, fuel)) in typical_get(&mut vm)?.fuel {
            *per_cb.entry(cb).or_default() += fuel;
        }
    }
    // the root's share: ticks, callouts and their answers, spread over the events
    vm.advance_ms(2000)?;
    let all = vm.fuel().clone();
    let root: u64 = ["on_tick", "on_http_call_response"]
        .iter()
        .filter_map(|k| all.get(k))
        .map(|(_, f)| f)
        .sum();
    let n = MEASURED as u64;
    let avg: BTreeMap<&str, u64> = per_cb.iter().map(|(k, v)| (*k, v / n)).collect();
    let g = |k: &str| avg.get(k).copied().unwrap_or(0);
    let capture = g("on_request_headers")
        + g("on_request_body")
        + g("on_response_headers")
        + g("on_response_body");
    let lifecycle = g("on_context_create") + g("on_done") + g("on_delete");
    let on_log = g("on_log");
    Ok(json!({
        "callbacks": avg,
        "capture": capture,
        "lifecycle": lifecycle,
        "on_log": on_log,
        "batch_share": root / n,
        "total": capture + lifecycle + on_log + root / n,
        "delivered": vm.metric(EVENTS_DELIVERED),
    }))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wasm, bench_wasm, null_wasm] = args.as_slice() else {
        return Err(anyhow!(
            "usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm>"
        ));
    };

    let http = json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector"}});
    let log = json!({"enabled": true, "sinks": ["log"], "log_output": "filter_state"});
    let http_run = per_request(wasm, http)?;
    let log_run = per_request(wasm, log)?;

    // the null filter: same callbacks, nothing done
    let mut null = Vm::envoy()
        .wasm(null_wasm.as_str())
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    for _ in 0..WARMUP {
        typical_get(&mut null)?;
    }
    let mut null_total = 0;
    for _ in 0..MEASURED {
        null_total += typical_get(&mut null)?.total_fuel();
    }

    // the encoder alone, from the bench build's exports
    let mut b = Vm::envoy()
        .wasm(bench_wasm.as_str())
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    b.call_export("bench_encode_event", &[10])?;
    let (_, f1) = b.call_export("bench_encode_event", &[1000])?;
    let encode_event = f1 / 1000;
    let batch = 100;
    b.call_export("bench_prepare", &[batch])?;
    let mut formats = BTreeMap::new();
    for (i, name) in [
        "veil",
        "ndjson",
        "json",
        "cloudevents",
        "kafka-rest",
        "veil+gzip",
    ]
    .iter()
    .enumerate()
    {
        b.call_export("bench_batch_body", &[i as i32])?;
        let (len, fuel) = b.call_export("bench_batch_body", &[i as i32])?;
        formats.insert(*name, json!({"fuel_per_event": fuel / batch as u64, "bytes_per_event": len.unwrap_or(0) / batch}));
    }

    // linear memory per buffered event: fill the buffer with the collector silent
    let n = 20_000;
    let mut m = Vm::envoy()
        .wasm(wasm.as_str())
        .config(
            json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector",
            "buffer_size": n, "batch_size": n, "flush_interval_ms": 3_600_000}}),
        )
        .start()
        .map_err(|e| anyhow!("{e}"))?;
    for _ in 0..100 {
        typical_get(&mut m)?;
    }
    let before = m.memory_bytes();
    for _ in 100..n {
        typical_get(&mut m)?;
    }
    let after = m.memory_bytes();
    let per_event = (after - before) as f64 / (n - 100) as f64;

    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let out = json!({
        "http": http_run,
        "log": log_run,
        "null_total": null_total / MEASURED as u64,
        "encode_event": encode_event,
        "formats": formats,
        "memory_per_buffered_event": per_event.round(),
        "wasm_bytes": size(wasm),
        "null_wasm_bytes": size(null_wasm),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
