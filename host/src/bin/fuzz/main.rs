//! `make fuzz`: a generated-input campaign against the real `dist/usage_filter.wasm` in the
//! harness's host. Every generated input is one case: a request, a collector's answer, a
//! clock jump, a shared-queue message, a host refusal, a configuration. A scenario's `http`
//! is one object or (30% of local and shared-queue ones) an array of 2 or 3 destinations, each
//! with its own cluster. After every case the VMs are ticked (metrics are published on
//! ticks) and checked: no trap, the books balance across the VMs of a proxy for each
//! destination, every delivered body is valid in its format, no event id is acknowledged in
//! two batches of one destination, each destination's delivered and refused-alone counts are
//! what its collector acknowledged and refused, linear memory stays bounded.
//!
//! `FUZZ_CASES` (default 10,000,000), `FUZZ_SEED` (default: from the clock; always printed),
//! `FUZZ_THREADS` (default: the CPUs). The cases are a function of the seed and the count
//! only (`plan`): any number of threads runs the same ones, and the run ends with a digest of
//! them to compare. A failure prints the scenario's own seed; rerun it alone with
//! `FUZZ_SCENARIO=<seed>`.

mod check;
mod configs;
mod gen;
mod plan;
mod queue;
mod rng;
mod scenario;
mod sim;
mod stats;
mod traffic;
mod verdict;

use configs::ConfigVm;
use plan::Planned;
use stats::Stats;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.replace(['_', ','], "");
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn main() {
    let wasm = proxy_wasm_host::vm::default_wasm();
    if !wasm.exists() {
        eprintln!("fuzz: {} is missing; run `make build`", wasm.display());
        std::process::exit(2);
    }
    if let Some(seed) = env_u64("FUZZ_SCENARIO") {
        let mut stats = Stats::default();
        match scenario::run_one(seed, &mut stats) {
            Ok(()) => println!("scenario {seed:#x}: ok, {} cases", stats.cases),
            Err(e) => {
                eprintln!("scenario {seed:#x} FAILED: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let cases = env_u64("FUZZ_CASES").unwrap_or(10_000_000);
    let seed = env_u64("FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let threads = env_u64("FUZZ_THREADS")
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u64))
        .max(1);
    let items = plan::plan(seed, cases);
    let scenarios: usize = items.iter().map(Vec::len).sum();
    println!(
        "fuzz: {cases} cases in {scenarios} scenarios, seed {seed:#x} (FUZZ_SEED={seed:#x} \
         FUZZ_CASES={cases} repeats them with any FUZZ_THREADS), {threads} threads, {}",
        wasm.display()
    );
    let start = Instant::now();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let runs: Mutex<Vec<(Planned, Stats)>> = Mutex::new(Vec::with_capacity(scenarios));
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let Some(item) = items.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        return;
                    };
                    let mut config_vm = ConfigVm::default();
                    for p in item {
                        let mut stats = Stats::default();
                        if let Err(e) = scenario::run(p.seed, p.budget, &mut stats, &mut config_vm)
                        {
                            stop.store(true, Ordering::Relaxed);
                            let msg = format!("scenario {}, seed {:#x}: {e}", p.index, p.seed);
                            failures.lock().map(|mut f| f.push(msg)).ok();
                            return;
                        }
                        let before = done.fetch_add(stats.cases, Ordering::Relaxed);
                        if (before + stats.cases) / 1_000_000 > before / 1_000_000 {
                            println!(
                                "fuzz: ~{} cases, {:.0} s",
                                before + stats.cases,
                                start.elapsed().as_secs_f64()
                            );
                        }
                        runs.lock().map(|mut r| r.push((*p, stats))).ok();
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    let secs = start.elapsed().as_secs_f64();
    if !failures.is_empty() {
        for e in &failures {
            eprintln!("fuzz FAILED: {e}\n  rerun it alone: FUZZ_SCENARIO=<the scenario seed> cargo run --release -p proxy-wasm-host --bin fuzz");
        }
        eprintln!("fuzz: seed {seed:#x}");
        std::process::exit(1);
    }
    let mut runs = runs.into_inner().unwrap_or_default();
    runs.sort_by_key(|(p, _)| p.index);
    if runs.len() != scenarios {
        eprintln!(
            "fuzz FAILED: {} of {scenarios} scenarios ran (a thread panicked)",
            runs.len()
        );
        std::process::exit(1);
    }
    let digest = plan::digest(&runs);
    let mut total = Stats::default();
    for (_, s) in &runs {
        total.add(s);
    }
    println!(
        "fuzz: {} cases in {secs:.1} s ({:.0}/s), seed {seed:#x}: {} scenarios ({} with several \
         destinations), {} requests, \
         {} collector answers, {} clock jumps, {} queue messages, {} configurations ({} accepted), \
         {} events acknowledged ({} checked with llm fields), max linear memory {} KiB; no trap, books balanced, bodies valid, \
         no event acknowledged twice",
        total.cases,
        total.cases as f64 / secs,
        total.scenarios,
        total.several,
        total.requests,
        total.answers,
        total.clock,
        total.queue_messages,
        total.configs,
        total.configs_accepted,
        total.events_acked,
        check::WITH_TOKENS.load(Ordering::Relaxed),
        total.max_memory / 1024
    );
    println!(
        "fuzz: digest {digest:#018x} of the {scenarios} scenarios run (seed, steps and counts of each; \
         the same for FUZZ_SEED={seed:#x} FUZZ_CASES={cases} on any FUZZ_THREADS)"
    );
}
