//! One proxy-wasm VM running the filter: loading, the root context's lifecycle, the clock and
//! timer, callouts, shared queues, and fuel accounting for every call into the guest.

use crate::abi::Headers;
use crate::request::Request;
use crate::state::*;
use crate::wasi::WasiState;
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use wasmtime::{Config, Engine, Linker, Module, Store, TypedFunc, WasmParams, WasmResults};

/// Fuel given to each call; what is left afterwards tells what the call consumed.
const FUEL_BUDGET: u64 = u64::MAX / 4;

/// Start of the simulated clock: 2023-11-14T22:13:20Z.
pub const EPOCH_NS: u64 = 1_700_000_000_000_000_000;

/// One engine with fuel metering (tests, benches) and one without (the agent).
fn engine(fuel: bool) -> &'static Engine {
    static ENGINES: [OnceLock<Engine>; 2] = [OnceLock::new(), OnceLock::new()];
    ENGINES[fuel as usize].get_or_init(|| {
        let mut c = Config::new();
        c.consume_fuel(fuel);
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

/// How the host answers a callout when a test installs an automatic collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(u32),
    /// Status with headers, e.g. `Retry-After`.
    WithHeaders(u32, Vec<(String, String)>),
    /// Reset after it was sent: `on_http_call_response(token, 0, 0, 0)`.
    Reset,
    /// No answer: Envoy's timeout turns it into a 504 after `timeout_ms`.
    Hang,
}

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

pub struct Builder {
    wasm: PathBuf,
    profile: Profile,
    env: Vec<(String, String)>,
    plugin_config: Vec<u8>,
    vm_config: Vec<u8>,
    clusters: Vec<String>,
    vm_id: String,
    hub: Option<SharedHub>,
    log_level: i32,
    fuel: bool,
    random_seed: Option<u64>,
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

impl Builder {
    pub fn new(profile: Profile) -> Self {
        Builder {
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
    pub fn wasm(mut self, p: impl Into<PathBuf>) -> Self {
        self.wasm = p.into();
        self
    }
    /// The configuration as a `google.protobuf.Struct` (YAML in Envoy's config): handed to
    /// the plugin in protobuf's binary encoding, as Envoy 1.40 does.
    pub fn config(mut self, json: serde_json::Value) -> Self {
        self.plugin_config = crate::abi::encode_struct(&json);
        self
    }
    /// The configuration as a `google.protobuf.StringValue`: its text, unchanged.
    pub fn config_str(mut self, s: &str) -> Self {
        self.plugin_config = s.as_bytes().to_vec();
        self
    }
    /// The configuration's bytes exactly as given (any bytes at all).
    pub fn config_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.plugin_config = bytes.into();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn cluster(mut self, name: &str) -> Self {
        self.clusters.push(name.to_string());
        self
    }
    /// Exactly these clusters exist (instead of the default `collector` and `cluster()`s).
    pub fn clusters_only(mut self, names: &[String]) -> Self {
        self.clusters = names.to_vec();
        self
    }
    pub fn vm_id(mut self, id: &str) -> Self {
        self.vm_id = id.to_string();
        self
    }
    /// VMs built on one hub share the clock, shared queues and shared data (one process).
    pub fn hub(mut self, hub: &SharedHub) -> Self {
        self.hub = Some(hub.clone());
        self
    }
    /// Lowest level kept in `logs()` (1 = debug).
    pub fn log_level(mut self, level: i32) -> Self {
        self.log_level = level;
        self
    }

    /// Fuel metering on every call into the guest (default on; `fuel()` then reads 0 per
    /// call when off). A production host (the agent) runs without it.
    pub fn fuel(mut self, on: bool) -> Self {
        self.fuel = on;
        self
    }
    /// The VM configuration handed to `on_vm_start` (Envoy: `vm_config.configuration`).
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.vm_config = bytes.into();
        self
    }
    /// Initial state of WASI `random_get`'s generator (default: fixed per VM of a hub, so
    /// test runs repeat).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.random_seed = Some(seed);
        self
    }

    /// Loads the module and runs Envoy's start sequence: `_initialize`, context create for
    /// the root, `on_vm_start`, `on_configure`.
    pub fn start(self) -> std::result::Result<Vm, StartError> {
        let fail = |m: String, logs: Vec<LogLine>| StartError { message: m, logs };
        let mut vm = Vm::load(self).map_err(|e| fail(format!("{e:#}"), vec![]))?;
        let f = vm.f.clone();
        let root = vm.root_id as i32;
        let res: Result<()> = (|| {
            vm.call("on_context_create", f.context_create, 0, (root, 0))?;
            let n = vm.store.data().vm_config.len() as i32;
            if vm.call("on_vm_start", f.vm_start, vm.root_id, (root, n))? == 0 {
                bail!("on_vm_start returned false");
            }
            let n = vm.store.data().plugin_config.len() as i32;
            if vm.call("on_configure", f.configure, vm.root_id, (root, n))? == 0 {
                bail!("on_configure returned false: the plugin refused its configuration");
            }
            Ok(())
        })();
        if let Err(e) = res {
            let logs = vm.store.data().logs.clone();
            return Err(fail(format!("{e:#}"), logs));
        }
        let period = vm.store.data().tick_period_ms as u64;
        if period > 0 {
            vm.next_tick_ns = Some(vm.now_ns() + period * 1_000_000);
        }
        Ok(vm)
    }
}

/// How a test's scripted collector answers each callout.
type ScriptedCollector = Box<dyn FnMut(&Callout) -> Reply>;

pub struct Vm {
    pub(crate) store: Store<HostState>,
    instance: wasmtime::Instance,
    f: Exports,
    pub(crate) root_id: u32,
    pub(crate) next_context: u32,
    next_tick_ns: Option<u64>,
    fuel: FuelLog,
    trapped: Option<String>,
    auto: Option<ScriptedCollector>,
    metered: bool,
    /// Highest callout token `take_new_callouts` has handed out.
    taken_token: u32,
}

impl Vm {
    pub fn envoy() -> Builder {
        Builder::new(Profile::Envoy)
    }

    pub fn with_profile(p: Profile) -> Builder {
        Builder::new(p)
    }

    pub fn new_hub() -> SharedHub {
        let hub = SharedHub::default();
        hub.borrow_mut().now_ns = EPOCH_NS;
        hub
    }

    fn load(b: Builder) -> Result<Vm> {
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
            streams: HashMap::new(),
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
            f,
            root_id: 1,
            next_context: 2,
            next_tick_ns: None,
            fuel: FuelLog::new(),
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
        f: TypedFunc<P, R>,
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
        let e = self.fuel.entry(name).or_default();
        e.0 += 1;
        e.1 += used;
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
        f: Option<TypedFunc<P, R>>,
        ctx: u32,
        args: P,
    ) -> Result<Option<R>> {
        match f {
            Some(f) => self.call(name, f, ctx, args).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn exports(&self) -> Exports {
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

    // ---- time ----

    pub fn now_ns(&self) -> u64 {
        self.store.data().hub.borrow().now_ns
    }

    fn set_now(&mut self, ns: u64) {
        self.store.data().hub.borrow_mut().now_ns = ns;
    }

    /// Sets the clock the VM reads (a host with a real clock sets it before each call in).
    pub fn set_clock_ns(&mut self, ns: u64) {
        self.set_now(ns);
    }

    /// One `on_tick` now (the timer is not rescheduled).
    pub fn tick(&mut self) -> Result<()> {
        self.poll_queues()?;
        let (f, root) = (self.f.clone(), self.root_id);
        self.call("on_tick", f.tick, root, root as i32)?;
        self.settle()
    }

    /// Moves the clock forward, firing the timer at its period and timing out callouts
    /// (Envoy answers them 504) at their deadlines, in time order.
    pub fn advance_ms(&mut self, ms: u64) -> Result<()> {
        let target = self.now_ns() + ms * 1_000_000;
        loop {
            let timeout = self
                .store
                .data()
                .pending
                .iter()
                .map(|c| (c.sent_at_ns + c.timeout_ms as u64 * 1_000_000, c.token))
                .min();
            let tick = self.next_tick_ns;
            let next = match (timeout, tick) {
                (Some((t, _)), Some(k)) => t.min(k),
                (Some((t, _)), None) => t,
                (None, Some(k)) => k,
                (None, None) => break,
            };
            if next > target {
                break;
            }
            self.set_now(next.max(self.now_ns()));
            match timeout {
                Some((t, token)) if t == next => self.time_out(token)?,
                _ => {
                    let period = self.store.data().tick_period_ms as u64 * 1_000_000;
                    self.next_tick_ns = (period > 0).then(|| next + period);
                    self.tick()?;
                }
            }
        }
        self.set_now(target);
        Ok(())
    }

    /// Moves the clock without firing anything (time passing inside one callback).
    pub fn skip_ms(&mut self, ms: u64) {
        let n = self.now_ns() + ms * 1_000_000;
        self.set_now(n);
    }

    // ---- callouts ----

    /// Every callout made (finished ones up to the history limit), in the order made.
    pub fn callouts(&self) -> Vec<Callout> {
        let st = self.store.data();
        let mut all: Vec<Callout> = st
            .callouts
            .iter()
            .chain(st.pending.iter())
            .cloned()
            .collect();
        all.sort_by_key(|c| c.token);
        all
    }

    pub fn pending(&self) -> Vec<Callout> {
        self.store.data().pending.clone()
    }

    /// Callouts made since the last call, each handed out once (a host that sends them).
    pub fn take_new_callouts(&mut self) -> Vec<Callout> {
        let after = self.taken_token;
        let new: Vec<Callout> = self
            .store
            .data()
            .pending
            .iter()
            .filter(|c| c.token > after)
            .cloned()
            .collect();
        if let Some(last) = new.iter().map(|c| c.token).max() {
            self.taken_token = last;
        }
        new
    }

    /// Keeps at most `n` finished callouts (long runs would otherwise hold every body).
    pub fn limit_history(&mut self, n: usize) {
        self.store.data_mut().history_limit = n;
    }

    fn finish_callout(
        &mut self,
        token: u32,
        state: CalloutState,
        headers: Headers,
        body: Vec<u8>,
    ) -> Result<()> {
        let ctx = {
            let st = self.store.data_mut();
            let Some(i) = st.pending.iter().position(|c| c.token == token) else {
                bail!("no pending callout {token}");
            };
            let mut c = st.pending.remove(i);
            c.state = state.clone();
            let ctx = c.context_id;
            if st.history_limit > 0 {
                if st.callouts.len() >= st.history_limit {
                    st.callouts.remove(0);
                }
                st.callouts.push(c);
            }
            ctx
        };
        let (nh, nb) = if state == CalloutState::Failed {
            (0, 0)
        } else {
            (headers.len(), body.len())
        };
        self.store.data_mut().call_response = Some(CallResponse { headers, body });
        let f = self.f.clone();
        let r = self.call(
            "on_http_call_response",
            f.http_call_response,
            ctx,
            (ctx as i32, token as i32, nh as i32, nb as i32, 0),
        );
        self.store.data_mut().call_response = None;
        r
    }

    /// The collector answers a callout.
    pub fn reply(
        &mut self,
        token: u32,
        status: u32,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<()> {
        let owned = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.answer(token, status, owned, body.to_vec())?;
        self.settle()
    }

    /// Delivers a collector's answer as Envoy does: `:status`, the headers (lowercased),
    /// `content-length`, and the body.
    fn answer(
        &mut self,
        token: u32,
        status: u32,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<()> {
        let mut h: Headers = vec![(":status".into(), status.to_string().into_bytes())];
        h.extend(
            headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.into_bytes())),
        );
        h.push(("content-length".into(), body.len().to_string().into_bytes()));
        self.finish_callout(token, CalloutState::Answered(status), h, body)
    }

    /// The connection was reset after the request was sent: no headers at all.
    pub fn reset(&mut self, token: u32) -> Result<()> {
        self.finish_callout(token, CalloutState::Failed, vec![], vec![])?;
        self.settle()
    }

    /// The collector could not be reached: Envoy answers 503 itself.
    pub fn refuse(&mut self, token: u32) -> Result<()> {
        let body = b"upstream connect error or disconnect/reset before headers. reset reason: connection failure";
        self.reply(token, 503, &[("content-type", "text/plain")], body)
    }

    /// Envoy gave up waiting after the callout's `timeout_ms`: a 504 of its own.
    pub fn time_out(&mut self, token: u32) -> Result<()> {
        let body = b"upstream request timeout".to_vec();
        let h: Headers = vec![
            (":status".into(), b"504".to_vec()),
            ("content-length".into(), body.len().to_string().into_bytes()),
            ("content-type".into(), b"text/plain".to_vec()),
        ];
        self.finish_callout(token, CalloutState::TimedOut, h, body)?;
        self.settle()
    }

    /// Answers every new callout with `f` from now on (a scripted collector).
    pub fn auto_reply(&mut self, f: impl FnMut(&Callout) -> Reply + 'static) {
        self.auto = Some(Box::new(f));
    }

    pub fn manual_reply(&mut self) {
        self.auto = None;
    }

    /// Lets the scripted collector answer what is pending.
    pub(crate) fn settle(&mut self) -> Result<()> {
        let Some(mut auto) = self.auto.take() else {
            return Ok(());
        };
        let mut answered = std::collections::HashSet::new();
        let r = (|| -> Result<()> {
            loop {
                let next = self
                    .pending()
                    .into_iter()
                    .find(|c| !answered.contains(&c.token));
                let Some(c) = next else { return Ok(()) };
                answered.insert(c.token);
                match auto(&c) {
                    Reply::Status(s) => self.reply_inner(c.token, s, vec![])?,
                    Reply::WithHeaders(s, h) => self.reply_inner(c.token, s, h)?,
                    Reply::Reset => {
                        self.finish_callout(c.token, CalloutState::Failed, vec![], vec![])?
                    }
                    Reply::Hang => {}
                }
            }
        })();
        self.auto = Some(auto);
        r
    }

    fn reply_inner(
        &mut self,
        token: u32,
        status: u32,
        headers: Vec<(String, String)>,
    ) -> Result<()> {
        let body = if (200..300).contains(&status) {
            br#"{"success":true}"#.to_vec()
        } else {
            b"error".to_vec()
        };
        self.answer(token, status, headers, body)
    }

    // ---- shared queues ----

    /// Delivers `on_queue_ready` for queues this VM registered that received items
    /// (Envoy posts it to the registrant's thread).
    pub fn poll_queues(&mut self) -> Result<()> {
        if self.store.data().profile != Profile::Envoy {
            return Ok(());
        }
        let ready: Vec<usize> = {
            let key = self.store.data().vm_key;
            let hub = self.store.data().hub.clone();
            let mut hub = hub.borrow_mut();
            hub.queues
                .iter_mut()
                .enumerate()
                .filter(|(_, q)| q.ready && q.owner == Some(key))
                .map(|(i, q)| {
                    q.ready = false;
                    i + 1
                })
                .collect()
        };
        let (f, root) = (self.f.clone(), self.root_id);
        for id in ready {
            self.call(
                "on_queue_ready",
                f.queue_ready.clone(),
                root,
                (root as i32, id as i32),
            )?;
        }
        self.settle()
    }

    // ---- shutdown ----

    /// Envoy tearing the VM down: `on_done` on the root. True when the plugin is done at
    /// once; false when it asked to finish later (then `done_called()` says when it did).
    pub fn shutdown(&mut self) -> Result<bool> {
        let (f, root) = (self.f.clone(), self.root_id);
        let r = self.call_if("on_done", f.done, root, root as i32)? != Some(0);
        self.settle()?;
        Ok(r)
    }

    pub fn done_called(&self) -> bool {
        self.store.data().done_called
    }

    // ---- requests ----

    pub fn request(&mut self) -> Request<'_> {
        Request::new(self)
    }

    // ---- observation ----

    pub fn logs(&self) -> &[LogLine] {
        &self.store.data().logs
    }

    pub fn clear_logs(&mut self) {
        self.store.data_mut().logs.clear();
    }

    /// The log lines kept since the last call, removed from the VM (a long-running host).
    pub fn take_logs(&mut self) -> Vec<LogLine> {
        std::mem::take(&mut self.store.data_mut().logs)
    }

    /// Usage events written by the log sink through the host log.
    pub fn events(&self) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l.message).ok())
            .filter(|v| v["msg"] == "usage_event")
            .collect()
    }

    pub fn metrics(&self) -> BTreeMap<String, i64> {
        self.store
            .data()
            .metrics
            .iter()
            .map(|m| (m.name.clone(), m.value))
            .collect()
    }

    pub fn metric_kind(&self, name: &str) -> Option<MetricKind> {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.kind)
    }

    /// A metric's value; 0 when it was never defined.
    pub fn metric(&self, name: &str) -> i64 {
        self.store
            .data()
            .metrics
            .iter()
            .find(|m| m.name == name)
            .map_or(0, |m| m.value)
    }

    /// Size of the guest's linear memory in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }

    pub fn fuel(&self) -> &FuelLog {
        &self.fuel
    }

    pub fn reset_fuel(&mut self) {
        self.fuel.clear();
    }

    pub fn host_calls(&self) -> &HashMap<&'static str, u64> {
        &self.store.data().host_calls
    }

    pub fn tick_period_ms(&self) -> u32 {
        self.store.data().tick_period_ms
    }

    pub fn hub(&self) -> SharedHub {
        self.store.data().hub.clone()
    }
}
