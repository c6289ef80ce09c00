//! `make bench`, part (a): deterministic costs of the compiled filter in our host, in wasm fuel
//! (about one unit per wasm instruction), printed as JSON for `bench/report.py`.
//!
//! usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm> [<before.wasm>]
//!        fuel-bench --destinations <usage_filter.wasm> [<another build>...]
//!        fuel-bench --loop <usage_filter.wasm> <requests>
//!
//! `--loop` runs only typical GETs through the http sink (callouts answered 200), nothing else,
//! so `perf record` with `PROXY_WASM_HOST_PERFMAP=1` and a build with its name section
//! (`CARGO_PROFILE_WASM_STRIP=false`, no wasm-opt) shows where the per-request wasm goes.
//!
//! With a fourth argument (another build of the filter, e.g. the last release), the per-callback
//! fuel and the host calls of both builds are measured the same way and printed side by side
//! (JSON key `before`, and a table on stderr). The reference filters found beside
//! `null_filter.wasm` (`floor_filter.wasm`, `probe_*.wasm`) get their fuel and host calls too,
//! which checks that each makes exactly the calls it claims.

use anyhow::{anyhow, Result};
use proxy_wasm_host::metrics::EVENTS_DELIVERED;
use proxy_wasm_host::{Reply, Vm};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

mod llm;
mod root;

use llm::{force, llm, shapes};

const WARMUP: usize = 200;

/// The http sink with its defaults, the configuration of every per-request figure.
fn http_sink() -> Value {
    json!({"enabled": true, "sinks": ["http"], "http": {"cluster": "collector"}})
}

/// The filter in an Envoy-like VM with `config`, every callout answered 200.
fn acked_vm(wasm: &str, config: Value) -> Result<Vm> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .config(config)
        .start()
        .map_err(|e| anyhow!("{wasm}: {e}"))?;
    vm.auto_reply(|_| Reply::Status(200));
    Ok(vm)
}
const MEASURED: usize = 2000;

fn typical_get(vm: &mut Vm) -> Result<proxy_wasm_host::Outcome> {
    vm.request()
        .path("/v1/things/42?expand=owner")
        .key("sk_live_0123456789abcdef")
        .upstream_ms(3)
        .response_body(512)
        .respond(200)
}

/// Host calls one more typical request makes, by import name (after the warm-up).
fn host_calls_of_one(vm: &mut Vm) -> Result<BTreeMap<&'static str, u64>> {
    let before = vm.host_calls().clone();
    typical_get(vm)?;
    Ok(vm
        .host_calls()
        .iter()
        .map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect())
}

/// A reference filter (no configuration): fuel per request and its host calls.
fn reference(wasm: &str) -> Result<Value> {
    let mut vm = Vm::envoy()
        .wasm(wasm)
        .start()
        .map_err(|e| anyhow!("{wasm}: {e}"))?;
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    let mut total = 0;
    for _ in 0..MEASURED {
        total += typical_get(&mut vm)?.total_fuel();
    }
    let calls = host_calls_of_one(&mut vm)?;
    Ok(json!({"total": total / MEASURED as u64, "host_calls": calls, "wasm_bytes": size(wasm)}))
}

fn size(p: &str) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Average fuel per request by callback, and the batch share per event.
fn per_request(wasm: &str, config: Value) -> Result<Value> {
    let mut vm = acked_vm(wasm, config)?;
    for _ in 0..WARMUP {
        typical_get(&mut vm)?;
    }
    let host_calls = host_calls_of_one(&mut vm)?;
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
    // (calls, fuel) of each root callback over the run
    let root_callbacks: serde_json::Map<String, Value> = ["on_tick", "on_http_call_response"]
        .iter()
        .map(|k| (k.to_string(), json!(all.get(k).copied().unwrap_or((0, 0)))))
        .collect();
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
        "root_callbacks": root_callbacks,
        "total": capture + lifecycle + on_log + root / n,
        "delivered": vm.metric(EVENTS_DELIVERED),
        "host_calls": host_calls,
    }))
}

/// One build's per-request figures for both sinks.
fn sinks(wasm: &str) -> Result<(Value, Value)> {
    let http = http_sink();
    let log = json!({"enabled": true, "sinks": ["log"], "log_output": "filter_state"});
    Ok((per_request(wasm, http)?, per_request(wasm, log)?))
}

/// `http` as one object and as arrays of destinations: the per-request fuel (capture, on_log,
/// the batch share) and host calls of each, so a single destination can be held to the cost
/// it had before there could be several, and the cost of each more one seen. The
/// collector-facing encoding shows in the batch share.
fn destinations(wasm: &str) -> Result<Value> {
    let d =
        |name: &str, format: &str| json!({"name": name, "cluster": "collector", "format": format});
    let runs = [
        ("no http (log sink)", Value::Null),
        ("object veil", json!({"cluster": "collector"})),
        // No batch falls due: the root's share is its ticks alone (on_tick fuel / ticks).
        (
            "object veil, ticks only",
            json!({"cluster": "collector", "batch_size": 100_000, "buffer_size": 100_000,
                   "flush_interval_ms": 3_600_000}),
        ),
        ("array [veil]", json!([d("a", "veil")])),
        (
            "array [veil, ndjson]",
            json!([d("a", "veil"), d("b", "ndjson")]),
        ),
        ("array [ndjson]", json!([d("a", "ndjson")])),
        (
            "array [ndjson, ndjson]",
            json!([d("a", "ndjson"), d("b", "ndjson")]),
        ),
        (
            "array [veil, ndjson, cloudevents]",
            json!([d("a", "veil"), d("b", "ndjson"), d("c", "cloudevents")]),
        ),
    ];
    let mut out = serde_json::Map::new();
    for (label, http) in runs {
        let cfg = match http {
            Value::Null => {
                json!({"enabled": true, "sinks": ["log"], "log_output": "filter_state"})
            }
            http => json!({"enabled": true, "sinks": ["http"], "http": http}),
        };
        // A build from before `http` could be an array refuses those: its row stays empty.
        let Ok(r) = per_request(wasm, cfg) else {
            eprintln!("  {label:<36} (refused by this build)");
            continue;
        };
        let calls: u64 = r["host_calls"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(Value::as_u64).sum());
        eprintln!(
            "  {label:<36} on_log {:>6}  batch share {:>6}  total {:>6}  host calls {calls}  {}",
            r["on_log"], r["batch_share"], r["total"], r["root_callbacks"]
        );
        out.insert(label.to_string(), r);
    }
    Ok(Value::Object(out))
}

/// Before and after, per callback, on stderr (the JSON on stdout is for report.py).
fn print_comparison(before: &Value, after: &Value) {
    eprintln!("fuel per typical GET, by callback (before -> after)");
    for sink in ["http", "log"] {
        let (b, a) = (&before[sink], &after[sink]);
        eprintln!("  {sink} sink");
        let mut names: Vec<String> = Vec::new();
        for v in [b, a] {
            if let Some(m) = v["callbacks"].as_object() {
                names.extend(
                    m.keys()
                        .filter(|k| !names.contains(k))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        let row = |name: &str, x: &Value, y: &Value| {
            let (x, y) = (x.as_u64().unwrap_or(0), y.as_u64().unwrap_or(0));
            eprintln!(
                "    {name:<22} {x:>8} -> {y:>8}  ({:+})",
                y as i64 - x as i64
            );
        };
        for n in &names {
            row(n, &b["callbacks"][n], &a["callbacks"][n]);
        }
        row("batch share", &b["batch_share"], &a["batch_share"]);
        row("total", &b["total"], &a["total"]);
        let calls = |v: &Value| {
            v["host_calls"]
                .as_object()
                .map_or(0, |m| m.values().filter_map(Value::as_u64).sum::<u64>())
        };
        eprintln!(
            "    {:<22} {:>8} -> {:>8}",
            "host calls",
            calls(b),
            calls(a)
        );
    }
}

/// `--loop`: `n` typical GETs through the http sink and nothing else, for `perf record` (see the
/// module's usage): fuel per request by callback on stderr.
fn typical_gets_only(wasm: &str, n: usize) -> Result<()> {
    let mut vm = acked_vm(wasm, http_sink())?;
    for i in 0..n {
        typical_get(&mut vm)?;
        if i % 100 == 99 {
            vm.advance_ms(100)?;
        }
    }
    vm.advance_ms(2000)?;
    // every callback's fuel over the run, per request: the root's are the batch share
    let per: BTreeMap<&str, u64> = vm
        .fuel()
        .iter()
        .map(|(k, (_, f))| (*k, f / n as u64))
        .collect();
    let total: u64 = per.values().sum();
    eprintln!("{n} typical GETs, fuel per request {total}: {per:?}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, wasm, n] = args.as_slice() {
        if flag == "--loop" {
            return typical_gets_only(wasm, n.parse()?);
        }
    }
    // `fuel-bench --destinations <wasm>...`: only the destinations table, for each build.
    if let Some(("--destinations", builds)) = args.split_first().map(|(a, r)| (a.as_str(), r)) {
        let mut all = serde_json::Map::new();
        for w in builds {
            eprintln!("{w}");
            all.insert(w.clone(), destinations(w)?);
        }
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let (wasm, bench_wasm, null_wasm, before_wasm) = match args.as_slice() {
        [w, b, n] => (w, b, n, None),
        [w, b, n, before] => (w, b, n, Some(before)),
        _ => {
            return Err(anyhow!(
                "usage: fuel-bench <usage_filter.wasm> <usage_filter_bench.wasm> <null_filter.wasm> [<before.wasm>]"
            ))
        }
    };

    let (http_run, log_run) = sinks(wasm)?;
    let before_build = match before_wasm {
        Some(b) => {
            let (http, log) = sinks(b)?;
            let before = json!({"path": b, "wasm_bytes": size(b), "http": http, "log": log});
            print_comparison(&before, &json!({"http": http_run, "log": log_run}));
            before
        }
        None => Value::Null,
    };

    // the reference filters built beside the null filter (bench/build.sh)
    let dir = Path::new(null_wasm.as_str())
        .parent()
        .unwrap_or(Path::new("."));
    let mut references = BTreeMap::new();
    let mut names = vec![
        "null_filter.wasm".to_string(),
        "floor_filter.wasm".to_string(),
    ];
    let mut probes: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("probe_") && n.ends_with(".wasm"))
        .collect();
    probes.sort();
    names.extend(probes);
    for name in names {
        let path = dir.join(&name);
        if path.exists() {
            let key = name
                .trim_end_matches(".wasm")
                .trim_end_matches("_filter")
                .to_string();
            references.insert(key, reference(&path.to_string_lossy())?);
        }
    }

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

    // the first shape (OpenAI Chat SSE) in 256- and 16 KB chunks is `llm` (report.py's table);
    // every shape in 1 KB chunks is `llm_shapes`
    let all = shapes(32);
    let llm_runs = vec![llm(wasm, &all[0], 256)?, llm(wasm, &all[0], 16 * 1024)?];
    let llm_shapes = all
        .iter()
        .map(|shape| llm(wasm, shape, 1024))
        .collect::<Result<Vec<_>>>()?;

    eprintln!("destinations");
    let destinations = destinations(wasm)?;

    let root = root::root_costs(wasm)?;
    eprintln!("root costs (http sink defaults): {root}");
    let out = json!({
        "root_costs": root,
        "destinations": destinations,
        "llm": llm_runs,
        "llm_shapes": llm_shapes,
        "force_stream_usage": force(wasm)?,
        "http": http_run,
        "log": log_run,
        "before": before_build,
        "references": references,
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
