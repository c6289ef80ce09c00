//! One proxy-wasm VM running the filter: the wasmtime instance, the host's state, and every
//! call into the guest (with the active context, the clock it reads, fuel accounting, and a
//! trap that poisons the VM). What a host does with it is in the files beside this one.

use super::engine::{default_wasm, engine, module_for, FUEL_BUDGET};
use super::reply::ScriptedCollector;
use crate::state::{HostState, LogLine, Profile, SharedHub};
use crate::wasi::WasiState;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::{Linker, Store, TypedFunc, WasmParams, WasmResults};

/// Start of the simulated clock: 2023-11-14T22:13:20Z.
pub const EPOCH_NS: u64 = 1_700_000_000_000_000_000;

#[derive(Clone)]
pub(crate) struct Exports {
    pub(crate) context_create: TypedFunc<(i32, i32), ()>,
    pub(crate) vm_start: TypedFunc<(i32, i32), i32>,
    pub(crate) configure: TypedFunc<(i32, i32), i32>,
    pub(crate) tick: TypedFunc<i32, ()>,
    pub(crate) request_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) request_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) response_headers: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) response_body: Option<TypedFunc<(i32, i32, i32), i32>>,
    pub(crate) log: Option<TypedFunc<i32, ()>>,
    pub(crate) done: Option<TypedFunc<i32, i32>>,
    pub(crate) delete: Option<TypedFunc<i32, ()>>,
    pub(crate) http_call_response: TypedFunc<(i32, i32, i32, i32, i32), ()>,
    pub(crate) queue_ready: TypedFunc<(i32, i32), ()>,
}

/// Fuel per callback name: (calls, total fuel).
pub type FuelLog = BTreeMap<&'static str, (u64, u64)>;

/// What a VM is made of (`Builder` sets it): the module, the host it behaves like, its
/// configurations, clusters and environment.
pub(crate) struct Setup {
    pub(crate) wasm: PathBuf,
    pub(crate) profile: Profile,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) plugin_config: Vec<u8>,
    pub(crate) vm_config: Vec<u8>,
    pub(crate) clusters: Vec<String>,
    pub(crate) vm_id: String,
    pub(crate) hub: Option<SharedHub>,
    pub(crate) log_level: i32,
    pub(crate) fuel: bool,
    pub(crate) random_seed: Option<u64>,
}

impl Setup {
    pub(crate) fn new(profile: Profile) -> Self {
        Setup {
            wasm: default_wasm(),
            profile,
            env: Vec::new(),
            plugin_config: Vec::new(),
            vm_config: Vec::new(),
            clusters: vec!["collector".to_string()],
            vm_id: "usage_filter".to_string(),
            hub: None,
            log_level: 1,
            fuel: true,
            random_seed: None,
        }
    }
}

/// Why a VM did not start: the plugin refused its configuration, or it trapped.
#[derive(Debug)]
pub struct StartError {
    pub message: String,
    pub logs: Vec<LogLine>,
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; logs: {:?}", self.message, self.logs)
    }
}
impl std::error::Error for StartError {}

pub struct Vm {
    pub(crate) store: Store<HostState>,
    pub(crate) instance: wasmtime::Instance,
    /// Shared so a call sequence can hold them while the VM is borrowed mutably.
    pub(crate) f: Arc<Exports>,
    pub(crate) root_id: u32,
    pub(crate) next_context: u32,
    pub(crate) next_tick_ns: Option<u64>,
    pub(crate) fuel: FuelLog,
    /// The same since the current stream began (`run_stream`'s `Outcome::fuel`).
    pub(crate) stream_fuel: FuelLog,
    pub(crate) trapped: Option<String>,
    pub(crate) auto: Option<ScriptedCollector>,
    pub(crate) metered: bool,
    /// Highest callout token `take_new_callouts` has handed out.
    pub(crate) taken_token: u32,
}

impl Vm {
    pub fn new_hub() -> SharedHub {
        let hub = SharedHub::default();
        hub.borrow_mut().now_ns = EPOCH_NS;
        hub
    }

    pub(crate) fn load(b: Setup) -> Result<Vm> {
        let module = module_for(&b.wasm, b.fuel)?;
        let mut linker: Linker<HostState> = Linker::new(engine(b.fuel));
        crate::imports::add_to_linker(&mut linker)?;
        crate::wasi::add_to_linker(&mut linker, &module)?;
        let hub = b.hub.unwrap_or_else(Vm::new_hub);
        let vm_key = {
            let mut h = hub.borrow_mut();
            h.next_vm += 1;
            h.next_vm
        };
        let state = HostState {
            wasi: WasiState {
                env: b.env,
                rng_state: b.random_seed.unwrap_or(vm_key * 0x1234_5678_9abc),
                ..Default::default()
            },
            hub,
            vm_key,
            vm_id: b.vm_id,
            profile: b.profile,
            log_level: b.log_level,
            logs: Vec::new(),
            metrics: Vec::new(),
            vm_config: b.vm_config,
            plugin_config: b.plugin_config,
            tick_period_ms: 0,
            root_id: 1,
            active: 0,
            streams: Default::default(),
            callouts: Vec::new(),
            pending: Vec::new(),
            history_limit: usize::MAX,
            next_token: 0,
            call_response: None,
            clusters: b.clusters,
            callout_refusal: None,
            done_called: false,
            local_responses: Vec::new(),
            memory: None,
            alloc: None,
            host_calls: HashMap::new(),
            call_trace: Default::default(),
        };
        let mut store = Store::new(engine(b.fuel), state);
        if b.fuel {
            store.set_fuel(FUEL_BUDGET)?;
        }
        let instance = linker.instantiate(&mut store, &module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow!("no exported memory"))?;
        let alloc = instance.get_typed_func::<i32, i32>(&mut store, "proxy_on_memory_allocate")?;
        store.data_mut().memory = Some(memory);
        store.data_mut().alloc = Some(alloc);
        macro_rules! get {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut store, $name)
                    .map_err(|e| anyhow!("{}: {e:?}", $name))?
            };
        }
        // Envoy skips a stream callback the module does not export: so does this host.
        macro_rules! opt {
            ($name:literal) => {
                instance
                    .get_func(&mut store, $name)
                    .map(|f| f.typed(&store))
                    .transpose()
                    .map_err(|e| anyhow!("{}: {e:?}", $name))?
            };
        }
        let f = Exports {
            context_create: get!("proxy_on_context_create"),
            vm_start: get!("proxy_on_vm_start"),
            configure: get!("proxy_on_configure"),
            tick: get!("proxy_on_tick"),
            request_headers: opt!("proxy_on_request_headers"),
            request_body: opt!("proxy_on_request_body"),
            response_headers: opt!("proxy_on_response_headers"),
            response_body: opt!("proxy_on_response_body"),
            log: opt!("proxy_on_log"),
            done: opt!("proxy_on_done"),
            delete: opt!("proxy_on_delete"),
            http_call_response: get!("proxy_on_http_call_response"),
            queue_ready: get!("proxy_on_queue_ready"),
        };
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ())?;
        }
        Ok(Vm {
            store,
            instance,
            f: Arc::new(f),
            root_id: 1,
            next_context: 2,
            next_tick_ns: None,
            fuel: FuelLog::new(),
            stream_fuel: FuelLog::new(),
            trapped: None,
            auto: None,
            metered: b.fuel,
            taken_token: 0,
        })
    }

    /// Calls into the guest with `ctx` as the active context, measuring fuel. A trap
    /// poisons the VM as it does in Envoy.
    pub(crate) fn call<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        f: &TypedFunc<P, R>,
        ctx: u32,
        args: P,
    ) -> Result<R> {
        if let Some(t) = &self.trapped {
            bail!("the VM trapped earlier: {t}");
        }
        {
            let st = self.store.data_mut();
            st.active = ctx;
            st.call_trace.record(name, ctx);
            let now = st.hub.borrow().now_ns;
            st.wasi.realtime_ns = now;
            st.wasi.monotonic_ns = now;
        }
        if self.metered {
            self.store.set_fuel(FUEL_BUDGET)?;
        }
        let r = f.call(&mut self.store, args);
        let used = if self.metered {
            FUEL_BUDGET - self.store.get_fuel()?
        } else {
            0
        };
        for log in [&mut self.fuel, &mut self.stream_fuel] {
            let e = log.entry(name).or_default();
            e.0 += 1;
            e.1 += used;
        }
        match r {
            Ok(v) => Ok(v),
            Err(e) => {
                let logs: Vec<String> = self
                    .store
                    .data()
                    .logs
                    .iter()
                    .rev()
                    .take(3)
                    .map(|l| l.message.clone())
                    .collect();
                self.trapped = Some(format!("{e:?} (last logs: {logs:?})"));
                Err(anyhow!("trap in {name}: {e:?}"))
            }
        }
    }

    /// `call` when the module exports the callback; nothing (as in Envoy) when it does not.
    pub(crate) fn call_if<P: WasmParams, R: WasmResults>(
        &mut self,
        name: &'static str,
        f: Option<&TypedFunc<P, R>>,
        ctx: u32,
        args: P,
    ) -> Result<Option<R>> {
        match f {
            Some(f) => self.call(name, f, ctx, args).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn exports(&self) -> Arc<Exports> {
        self.f.clone()
    }

    /// Calls any export with i32 arguments (bench-only entry points); returns its i32 result
    /// (if any) and the fuel it consumed.
    pub fn call_export(&mut self, name: &str, args: &[i32]) -> Result<(Option<i32>, u64)> {
        let func = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| anyhow!("no export {name}"))?;
        let params: Vec<wasmtime::Val> = args.iter().map(|a| wasmtime::Val::I32(*a)).collect();
        let mut results = vec![wasmtime::Val::I32(0); func.ty(&self.store).results().len()];
        if self.metered {
            self.store.set_fuel(FUEL_BUDGET)?;
        }
        func.call(&mut self.store, &params, &mut results)
            .map_err(|e| anyhow!("{name}: {e:?}"))?;
        let used = if self.metered {
            FUEL_BUDGET - self.store.get_fuel()?
        } else {
            0
        };
        Ok((results.first().and_then(|v| v.i32()), used))
    }

    pub fn trapped(&self) -> Option<&str> {
        self.trapped.as_deref()
    }

    // ---- the clock ----

    pub fn now_ns(&self) -> u64 {
        self.store.data().hub.borrow().now_ns
    }

    pub(crate) fn set_now(&mut self, ns: u64) {
        self.store.data().hub.borrow_mut().now_ns = ns;
    }

    /// Sets the clock the VM reads (a host with a real clock sets it before each call in).
    pub fn set_clock_ns(&mut self, ns: u64) {
        self.set_now(ns);
    }

    /// Moves the clock without firing anything (time passing inside one callback).
    pub fn skip_ms(&mut self, ms: u64) {
        let n = self.now_ns() + ms * 1_000_000;
        self.set_now(n);
    }
}
