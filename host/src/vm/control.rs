//! What a host does to a running VM besides traffic: hand it a new configuration, and refuse
//! callouts with a status of the host's choosing.

use super::instance::Vm;
use anyhow::Result;

impl Vm {
    /// The host hands the root context a new plugin configuration (Envoy does on an update of
    /// the filter's configuration when the VM is kept). True when the filter accepted it.
    pub fn reconfigure(&mut self, json: serde_json::Value) -> Result<bool> {
        let config = crate::abi::encode_struct(&json);
        let n = config.len() as i32;
        self.store.data_mut().plugin_config = config;
        let (f, root) = (self.exports(), self.root_id);
        let accepted = self.call("on_configure", &f.configure, root, (root as i32, n))? != 0;
        self.settle()?;
        Ok(accepted)
    }

    /// Like `reconfigure`, with the configuration's bytes exactly as given (any bytes: a
    /// StringValue's text, a Struct's binary encoding, or garbage).
    pub fn reconfigure_bytes(&mut self, config: &[u8]) -> Result<bool> {
        let n = config.len() as i32;
        self.store.data_mut().plugin_config = config.to_vec();
        let (f, root) = (self.exports(), self.root_id);
        let accepted = self.call("on_configure", &f.configure, root, (root as i32, n))? != 0;
        self.settle()?;
        Ok(accepted)
    }

    /// From now on `proxy_http_call` answers `status` without starting anything; None
    /// restores normal service.
    pub fn refuse_callouts_with(&mut self, status: Option<i32>) {
        self.store.data_mut().callout_refusal = status;
    }
}
