//! One proxy-wasm VM running the filter, by concern: the engine and module cache, the
//! instance and its calls into the guest, how a VM is built and started, the timer, callouts,
//! shared queues, what a host changes at run time, and what it reads.

mod builder;
mod callouts;
mod control;
mod engine;
mod instance;
mod observe;
mod queues;
mod reply;
mod timer;

pub use builder::Builder;
pub use engine::{default_wasm, module, module_for};
pub use instance::{FuelLog, StartError, Vm, EPOCH_NS};
pub use reply::Reply;
