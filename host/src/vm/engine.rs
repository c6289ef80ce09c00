//! The wasmtime engines and the compiled filter: one engine with fuel metering (tests,
//! benches) and one without (the agent), and each `.wasm` compiled once per process.

use anyhow::{anyhow, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use wasmtime::{Config, Engine, Module};

/// Fuel given to each call; what is left afterwards tells what the call consumed.
pub(crate) const FUEL_BUDGET: u64 = u64::MAX / 4;

/// One engine with fuel metering (tests, benches) and one without (the agent).
pub(crate) fn engine(fuel: bool) -> &'static Engine {
    static ENGINES: [OnceLock<Engine>; 2] = [OnceLock::new(), OnceLock::new()];
    ENGINES[fuel as usize].get_or_init(|| {
        let mut c = Config::new();
        c.consume_fuel(fuel);
        // `perf record` can name the filter's compiled functions (perf-<pid>.map in /tmp).
        if std::env::var_os("PROXY_WASM_HOST_PERFMAP").is_some() {
            c.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        Engine::new(&c).unwrap_or_else(|e| panic!("wasmtime engine: {e}"))
    })
}

/// Compiles each `.wasm` once per process; tests share the compiled module.
pub fn module(path: &Path) -> Result<Module> {
    module_for(path, true)
}

/// The compiled module for an engine with or without fuel metering.
pub fn module_for(path: &Path, fuel: bool) -> Result<Module> {
    type Cache = Mutex<HashMap<(PathBuf, bool), Module>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().map_err(|_| anyhow!("module cache poisoned"))?;
    let key = (path.to_path_buf(), fuel);
    if let Some(m) = cache.get(&key) {
        return Ok(m.clone());
    }
    let m = Module::from_file(engine(fuel), path)
        .map_err(|e| anyhow!("loading {}: {e:?}", path.display()))?;
    cache.insert(key, m.clone());
    Ok(m)
}

/// The filter under test: `$USAGE_FILTER_WASM`, or `dist/usage_filter.wasm` (`make build`).
pub fn default_wasm() -> PathBuf {
    match std::env::var_os("USAGE_FILTER_WASM") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/usage_filter.wasm"),
    }
}
