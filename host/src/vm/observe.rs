//! What a host or a test reads of a VM: logs, usage events, metrics, memory, fuel, host
//! calls, the callback trace; and whether the plugin finished at shutdown.

use super::instance::{FuelLog, Vm};
use crate::state::{LogLine, MetricKind, SharedHub};
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};

impl Vm {
    /// Envoy tearing the VM down: `on_done` on the root. True when the plugin is done at
    /// once; false when it asked to finish later (then `done_called()` says when it did).
    pub fn shutdown(&mut self) -> Result<bool> {
        let (f, root) = (self.f.clone(), self.root_id);
        let r = self.call_if("on_done", f.done.as_ref(), root, root as i32)? != Some(0);
        self.settle()?;
        Ok(r)
    }

    pub fn done_called(&self) -> bool {
        self.store.data().done_called
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

    /// The callbacks made since the last call (at most `CallTrace::KEEP`), oldest first, as
    /// (callback, context id); removed from the VM.
    pub fn take_call_trace(&mut self) -> Vec<(&'static str, u32)> {
        self.store.data_mut().call_trace.take()
    }
}
