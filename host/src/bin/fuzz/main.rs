//! `make fuzz`: a generated-input campaign against the real `dist/usage_filter.wasm` in the
//! harness's host. Every generated input is one case: a request, a collector's answer, a
//! clock jump, a shared-queue message, a host refusal, a configuration. After every case
//! the VMs are ticked (metrics are published on ticks) and checked: no trap, the books
//! balance across the VMs of a proxy, every delivered body is valid in its format, no event
//! id is acknowledged in two batches, linear memory stays bounded.
//!
//! `FUZZ_CASES` (default 10,000,000), `FUZZ_SEED` (default: from the clock; always printed),
//! `FUZZ_THREADS` (default: the CPUs). A failure prints the scenario's own seed; rerun it
//! alone with `FUZZ_SCENARIO=<seed>`.

mod check;
mod gen;
mod rng;
mod scenario;

use rng::Rng;
use std::time::Instant;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.replace(['_', ','], "");
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub cases: u64,
    pub scenarios: u64,
    pub configs: u64,
    pub configs_accepted: u64,
    pub requests: u64,
    pub answers: u64,
    pub queue_messages: u64,
    pub clock: u64,
    pub events_acked: u64,
    pub max_memory: usize,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.scenarios += o.scenarios;
        self.configs += o.configs;
        self.configs_accepted += o.configs_accepted;
        self.requests += o.requests;
        self.answers += o.answers;
        self.queue_messages += o.queue_messages;
        self.clock += o.clock;
        self.events_acked += o.events_acked;
        self.max_memory = self.max_memory.max(o.max_memory);
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
    println!(
        "fuzz: {cases} cases, seed {seed:#x} (FUZZ_SEED={seed:#x} FUZZ_THREADS={threads} repeats it), \
         {threads} threads, {}",
        wasm.display()
    );
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let share = cases / threads + u64::from(t < cases % threads);
            let mut r = Rng::new(seed ^ (t + 1).wrapping_mul(0xa076_1d64_78bd_642f));
            std::thread::spawn(move || {
                let mut stats = Stats::default();
                let mut next_report = 1_000_000;
                while stats.cases < share {
                    let s = r.next_u64();
                    if let Err(e) = scenario::run(s, share - stats.cases, &mut stats) {
                        return Err(format!("thread {t}, scenario seed {s:#x}: {e}"));
                    }
                    if t == 0 && stats.cases * threads >= next_report {
                        println!(
                            "fuzz: ~{} cases, {:.0} s",
                            stats.cases * threads,
                            start.elapsed().as_secs_f64()
                        );
                        next_report += 1_000_000;
                    }
                }
                Ok(stats)
            })
        })
        .collect();
    let mut total = Stats::default();
    let mut failed = false;
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => total.add(&s),
            Ok(Err(e)) => {
                eprintln!("fuzz FAILED: {e}\n  rerun it alone: FUZZ_SCENARIO=<the scenario seed> cargo run --release -p proxy-wasm-host --bin fuzz");
                failed = true;
            }
            Err(_) => {
                eprintln!("fuzz FAILED: a thread panicked");
                failed = true;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if failed {
        eprintln!("fuzz: seed {seed:#x}");
        std::process::exit(1);
    }
    println!(
        "fuzz: {} cases in {secs:.1} s ({:.0}/s), seed {seed:#x}: {} scenarios, {} requests, \
         {} collector answers, {} clock jumps, {} queue messages, {} configurations ({} accepted), \
         {} events acknowledged ({} checked with llm fields), max linear memory {} KiB; no trap, books balanced, bodies valid, \
         no event acknowledged twice",
        total.cases,
        total.cases as f64 / secs,
        total.scenarios,
        total.requests,
        total.answers,
        total.clock,
        total.queue_messages,
        total.configs,
        total.configs_accepted,
        total.events_acked,
        check::WITH_TOKENS.load(std::sync::atomic::Ordering::Relaxed),
        total.max_memory / 1024
    );
}
