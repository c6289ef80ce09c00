//! A proxy-wasm ABI v0.2.1 host on wasmtime that behaves like Envoy 1.40: it loads the
//! compiled filter, drives it through Envoy's callback order, and lets a test script the
//! clock, the upstream, the collector and the host's limits.
//!
//! ```ignore
//! let mut vm = Vm::envoy().config(json!({"enabled": true})).start()?;
//! vm.request().path("/v1/x?y=1").key("k").respond(200)?;
//! assert_eq!(vm.events()[0]["api_path"], "/v1/x");
//! assert_eq!(vm.metric(metrics::EVENTS_CAPTURED), 1);
//! ```

pub mod abi;
pub mod control;
pub mod imports;
pub mod metrics;
pub mod request;
pub mod state;
pub mod trace;
pub mod vm;
pub mod wasi;

pub use request::{Outcome, Request};
pub use state::{Callout, CalloutState, LogLine, MetricKind, Profile};
pub use vm::{Builder, Reply, StartError, Vm};
