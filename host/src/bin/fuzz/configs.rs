//! The configuration scenarios: configurations of every kind into one long-lived VM, which a
//! chain of these scenarios shares (`ConfigVm`; the plan makes the chains).

use crate::check::{one_refusal_line, trap, R};
use crate::gen;
use crate::rng::Rng;
use crate::stats::Stats;
use proxy_wasm_host::Vm;

/// The configuration VM lives for a chain of scenarios: it must stay flat.
const CONFIG_VM_LIMIT: usize = 16 << 20;

/// The VM a chain of configuration scenarios shares, made at the chain's first. A chain is
/// short (`plan::CHAIN` scenarios, ~15,000 configurations): a VM reconfigured without end
/// keeps each retired queue worker that holds events no service will take.
#[derive(Default)]
pub struct ConfigVm(Option<Vm>);

/// Configurations of every kind into the chain's VM: accepted ones take effect (a request
/// runs through them), refused ones leave one error line, memory stays flat.
pub fn configs(r: &mut Rng, steps: u64, stats: &mut Stats, slot: &mut ConfigVm) -> R {
    if slot.0.is_none() {
        let mut vm = Vm::envoy()
            .fuel(false)
            .log_level(2)
            .start()
            .map_err(|e| format!("config vm: {e}"))?;
        vm.limit_history(0);
        vm.auto_reply(|_| proxy_wasm_host::Reply::Status(200));
        slot.0 = Some(vm);
    }
    let Some(vm) = slot.0.as_mut() else {
        return Err("config vm".into());
    };
    for _ in 0..steps {
        let bytes = gen::config_bytes(r);
        vm.take_logs();
        let accepted = vm
            .reconfigure_bytes(&bytes)
            .map_err(|e| format!("configuration {:?}: {e:#}", String::from_utf8_lossy(&bytes)))?;
        stats.configs += 1;
        stats.cases += 1;
        if accepted {
            stats.configs_accepted += 1;
            if r.chance(10) {
                trap("request", vm.request().path("/c").key("k").respond(200))?;
                trap("advance", vm.advance_ms(r.size(2000)))?;
            }
        } else {
            one_refusal_line(&vm.take_logs())
                .map_err(|e| format!("{e} for {:?}", String::from_utf8_lossy(&bytes)))?;
        }
        let mem = vm.memory_bytes();
        stats.max_memory = stats.max_memory.max(mem);
        if mem > CONFIG_VM_LIMIT {
            return Err(format!("the configuration VM grew to {mem} bytes"));
        }
    }
    Ok(())
}
