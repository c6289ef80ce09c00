//! Runs a libtest binary built for `wasm32-wasip1` (`cargo test --target wasm32-wasip1
//! --no-run`) on our wasmtime host's WASI subset, and exits with its exit code.
//! Usage: wasi-test-runner <test.wasm> [libtest args...]

use anyhow::{anyhow, Result};
use proxy_wasm_host::wasi::{self, Exit, WasiState, WasiView};
use wasmtime::{Config, Engine, Linker, Module, Store};

struct State(WasiState);
impl WasiView for State {
    fn wasi(&mut self) -> &mut WasiState {
        &mut self.0
    }
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or_else(|| anyhow!("usage: wasi-test-runner <test.wasm> [args]"))?;
    let engine = Engine::new(&Config::new()).map_err(|e| anyhow!("{e:?}"))?;
    let module = Module::from_file(&engine, &path).map_err(|e| anyhow!("{path}: {e:?}"))?;
    let mut linker: Linker<State> = Linker::new(&engine);
    wasi::add_to_linker(&mut linker, &module).map_err(|e| anyhow!("{e:?}"))?;
    // proxy-wasm imports of the filter's shell are never called by unit tests.
    linker
        .define_unknown_imports_as_traps(&module)
        .map_err(|e| anyhow!("{e:?}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let mut argv = vec!["test.wasm".to_string()];
    argv.extend(args);
    // No threads on wasip1.
    if !argv.iter().any(|a| a.starts_with("--test-threads")) {
        argv.push("--test-threads=1".into());
    }
    let state = State(WasiState {
        args: argv,
        realtime_ns: now,
        monotonic_ns: now,
        passthrough: true,
        rng_state: now,
        ..Default::default()
    });
    let mut store = Store::new(&engine, state);
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| anyhow!("{e:?}"))?;
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .map_err(|e| anyhow!("{e:?}"))?;
    let code = match start.call(&mut store, ()) {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<Exit>() {
            Some(Exit(c)) => *c,
            None => {
                eprintln!("wasi-test-runner: trap: {e:?}");
                101
            }
        },
    };
    std::process::exit(code)
}
