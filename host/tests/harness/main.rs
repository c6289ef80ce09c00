//! Tests that drive the compiled `dist/usage_filter.wasm` through our Envoy-like host.
mod common;

mod backlog;
mod callout_start;
mod capture;
mod config;
mod destinations;
mod dispatch;
mod formats;
mod generated;
mod identity;
mod isolate;
mod llm;
mod llm_request;
mod malformed;
mod outage;
mod queue_books;
mod reconfigure;
mod roles;
mod shared_queue;
