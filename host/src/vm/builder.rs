//! How a VM is made: the module, the host's profile, configurations, clusters and
//! environment, then Envoy's start sequence.

use super::instance::{Setup, StartError, Vm};
use crate::state::{LogLine, Profile, SharedHub};
use anyhow::{bail, Result};
use std::path::PathBuf;

pub struct Builder {
    setup: Setup,
}

impl Builder {
    pub fn new(profile: Profile) -> Self {
        Builder {
            setup: Setup::new(profile),
        }
    }
    pub fn wasm(mut self, p: impl Into<PathBuf>) -> Self {
        self.setup.wasm = p.into();
        self
    }
    /// The configuration as a `google.protobuf.Struct` (YAML in Envoy's config): handed to
    /// the plugin in protobuf's binary encoding, as Envoy 1.40 does.
    pub fn config(mut self, json: serde_json::Value) -> Self {
        self.setup.plugin_config = crate::abi::encode_struct(&json);
        self
    }
    /// The configuration as a `google.protobuf.StringValue`: its text, unchanged.
    pub fn config_str(mut self, s: &str) -> Self {
        self.setup.plugin_config = s.as_bytes().to_vec();
        self
    }
    /// The configuration's bytes exactly as given (any bytes at all).
    pub fn config_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.setup.plugin_config = bytes.into();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.setup.env.push((k.to_string(), v.to_string()));
        self
    }
    pub fn cluster(mut self, name: &str) -> Self {
        self.setup.clusters.push(name.to_string());
        self
    }
    /// Exactly these clusters exist (instead of the default `collector` and `cluster()`s).
    pub fn clusters_only(mut self, names: &[String]) -> Self {
        self.setup.clusters = names.to_vec();
        self
    }
    pub fn vm_id(mut self, id: &str) -> Self {
        self.setup.vm_id = id.to_string();
        self
    }
    /// VMs built on one hub share the clock, shared queues and shared data (one process).
    pub fn hub(mut self, hub: &SharedHub) -> Self {
        self.setup.hub = Some(hub.clone());
        self
    }
    /// Lowest level kept in `logs()` (1 = debug).
    pub fn log_level(mut self, level: i32) -> Self {
        self.setup.log_level = level;
        self
    }

    /// Fuel metering on every call into the guest (default on; `fuel()` then reads 0 per
    /// call when off). A production host (the agent) runs without it.
    pub fn fuel(mut self, on: bool) -> Self {
        self.setup.fuel = on;
        self
    }
    /// The VM configuration handed to `on_vm_start` (Envoy: `vm_config.configuration`).
    pub fn vm_config(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.setup.vm_config = bytes.into();
        self
    }
    /// Initial state of WASI `random_get`'s generator (default: fixed per VM of a hub, so
    /// test runs repeat).
    pub fn random_seed(mut self, seed: u64) -> Self {
        self.setup.random_seed = Some(seed);
        self
    }

    /// Loads the module and runs Envoy's start sequence: `_initialize`, context create for
    /// the root, `on_vm_start`, `on_configure`.
    pub fn start(self) -> std::result::Result<Vm, StartError> {
        let fail = |m: String, logs: Vec<LogLine>| StartError { message: m, logs };
        let mut vm = Vm::load(self.setup).map_err(|e| fail(format!("{e:#}"), vec![]))?;
        let f = vm.f.clone();
        let root = vm.root_id as i32;
        let res: Result<()> = (|| {
            vm.call("on_context_create", &f.context_create, 0, (root, 0))?;
            let n = vm.store.data().vm_config.len() as i32;
            if vm.call("on_vm_start", &f.vm_start, vm.root_id, (root, n))? == 0 {
                bail!("on_vm_start returned false");
            }
            let n = vm.store.data().plugin_config.len() as i32;
            if vm.call("on_configure", &f.configure, vm.root_id, (root, n))? == 0 {
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

impl Vm {
    pub fn envoy() -> Builder {
        Builder::new(Profile::Envoy)
    }

    pub fn with_profile(p: Profile) -> Builder {
        Builder::new(p)
    }
}
