//! usage-filter: a proxy-wasm HTTP filter that turns every proxied API request into a usage
//! event and delivers it as a JSON log line or in batches over HTTP callouts.
//!
//! The pure core (no host calls, tested natively): `config`, `captured`, `event`, `encode`, `routes`, `query`, `property`,
//! `delivery`, `dispatch`, `buffer`, `batch`, `isolate`, `retry`, `callout`, `metrics`, `random`, `swar`. The
//! contexts `stream` and `root` adapt host callbacks to the core through the `host::Host`
//! trait; `abi` (the exports) and `wasm_host` (the imports) exist only on wasm32.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// Nothing outside the crate uses its modules, so they are crate-private and dead code is
// found. Off wasm32 the exports (`abi`) that reach everything are not built, so dead code is
// judged on the wasm32 build alone (`make clippy` denies it there).
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

pub(crate) mod batch;
pub(crate) mod buffer;
pub(crate) mod callout;
pub(crate) mod captured;
pub(crate) mod config;
pub(crate) mod delivery;
pub(crate) mod destination;
pub(crate) mod dispatch;
pub(crate) mod encode;
pub(crate) mod event;
pub(crate) mod headers;
pub(crate) mod host;
pub(crate) mod isolate;
pub(crate) mod metrics;
pub(crate) mod property;
pub(crate) mod query;
pub(crate) mod random;
pub(crate) mod record;
pub(crate) mod retry;
pub(crate) mod root;
pub(crate) mod routes;
pub(crate) mod shared;
pub(crate) mod stream;
mod swar;
pub(crate) mod tokens;

#[cfg(test)]
mod fake_host;

#[cfg(target_arch = "wasm32")]
mod abi;
mod allocator;
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: allocator::Recycling = allocator::Recycling::new();
#[cfg(all(target_arch = "wasm32", feature = "bench"))]
mod bench_exports;
#[cfg(target_arch = "wasm32")]
mod wasm_host;
