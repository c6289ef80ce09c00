//! A proxy-wasm ABI v0.2.1 host on wasmtime that behaves like Envoy 1.40: it loads the
//! compiled filter and drives it through Envoy's callback order. Two ways in:
//!
//! - the run-time API, for a host that replays real traffic (the usage-agent): `Vm::run_stream`
//!   with a `Stream` (headers, bodies or their sizes, times, random bytes, the response), plus
//!   the clock (`set_clock_ns`, `tick`), callouts (`take_new_callouts`, `reply`, `reset`,
//!   `refuse`) and what the VM logged and counted;
//! - the scenario API, for tests: `vm.request()` builds a `Stream` with Envoy's defaults, and a
//!   test scripts the clock, the upstream, the collector and the host's limits.
//!
//! ```ignore
//! let mut vm = Vm::envoy().config(json!({"enabled": true})).start()?;
//! vm.request().path("/v1/x?y=1").key("k").respond(200)?;
//! assert_eq!(vm.events()[0]["api_path"], "/v1/x");
//! assert_eq!(vm.metric(metrics::EVENTS_CAPTURED), 1);
//! ```

pub mod abi;
pub mod imports;
pub mod metrics;
pub mod request;
pub mod state;
pub mod stream;
pub mod trace;
pub mod vm;
pub mod wasi;

pub use request::Request;
pub use state::{Callout, CalloutState, LogLine, MetricKind, Profile};
pub use stream::{Body, Outcome, Response, Stream, Timing};
pub use vm::{Builder, Reply, StartError, Vm};
