//! usage-filter: a proxy-wasm HTTP filter that turns every proxied API request into a usage
//! event and delivers it as a JSON log line or in batches over HTTP callouts.
//!
//! The pure core (no host calls, tested natively): `config`, `event`, `encode`, `buffer`,
//! `batch`, `retry`, `dispatch`, `metrics`, `random`. The shell that talks to the host
//! (wasm32 only): `hostcall`, `capture` (the stream context), `root` (the root context).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod batch;
pub mod buffer;
pub mod config;
pub mod dispatch;
pub mod encode;
pub mod event;
pub mod metrics;
pub mod random;
pub mod retry;

#[cfg(all(target_arch = "wasm32", feature = "bench"))]
mod bench_exports;
#[cfg(target_arch = "wasm32")]
mod capture;
#[cfg(target_arch = "wasm32")]
mod hostcall;
#[cfg(target_arch = "wasm32")]
mod root;

#[cfg(target_arch = "wasm32")]
proxy_wasm::main! {{
    // Also installs the SDK's panic hook, which logs a panic's message before the trap.
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::<root::Root>::default()
    });
}}
