//! usage-filter: a proxy-wasm HTTP filter that turns every proxied API request into a usage
//! event and delivers it as a JSON log line or in batches over HTTP callouts.
//!
//! The pure core (no host calls, tested natively): `config`, `captured`, `event`, `encode`,
//! `delivery`, `dispatch`, `buffer`, `batch`, `retry`, `callout`, `metrics`, `random`, `swar`. The
//! contexts `stream` and `root` adapt host callbacks to the core through the `host::Host`
//! trait; `abi` (the exports) and `wasm_host` (the imports) exist only on wasm32.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod batch;
pub mod buffer;
pub mod callout;
pub mod captured;
pub mod config;
pub mod delivery;
pub mod dispatch;
pub mod encode;
pub mod event;
pub mod headers;
pub mod host;
pub mod metrics;
pub mod random;
pub mod record;
pub mod retry;
pub mod root;
pub mod shared;
pub mod stream;
mod swar;
pub mod tokens;

#[cfg(test)]
mod fake_host;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(all(target_arch = "wasm32", feature = "bench"))]
mod bench_exports;
#[cfg(target_arch = "wasm32")]
mod wasm_host;
