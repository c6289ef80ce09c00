//! One scenario: its kind and length (the first draws of its seed), then the simulated proxy
//! driven by generated cases and checked after each (`sim`), or the configuration VM fed
//! configurations (`configs`).

use crate::check::{self, R};
use crate::configs::{configs, ConfigVm};
use crate::rng::Rng;
use crate::sim::{Kind, Sim};
use crate::stats::Stats;

/// The kind and the number of steps of the scenario of `seed` (before any budget), and the
/// generator positioned after those draws.
pub fn shape(seed: u64) -> (Kind, u64, Rng) {
    let mut r = Rng::new(seed);
    let kind = match r.below(100) {
        0..=44 => Kind::Local,
        45..=69 => Kind::Queue,
        70..=79 => Kind::LogOnly,
        _ => Kind::Configs,
    };
    let steps = r.range(20, 1500);
    (kind, steps, r)
}

/// Runs the scenario of `seed` for at most `budget` steps (cases); a configuration scenario
/// uses the chain's VM, `config_vm`.
pub fn run(seed: u64, budget: u64, stats: &mut Stats, config_vm: &mut ConfigVm) -> R {
    let (kind, steps, mut r) = shape(seed);
    let mut steps = steps.min(budget.max(1));
    if let Some(stop) = std::env::var("FUZZ_STOP_AT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        // Replaying a failure: the same scenario cut after `stop` steps.
        steps = steps.min(stop);
    }
    stats.scenarios += 1;
    if kind == Kind::Configs {
        return configs(&mut r, steps, stats, config_vm);
    }
    check::DAMAGED.with(|d| d.set(false));
    let mut sim = Sim::new(&mut r, kind)?;
    stats.several += u64::from(sim.dests > 0);
    for _ in 0..steps {
        sim.step(&mut r, stats)?;
        stats.cases += 1;
    }
    sim.drain(&mut r)?;
    stats.events_acked += sim.acks.iter().map(|a| a.events).sum::<u64>();
    Ok(())
}

/// One scenario alone, to replay a failure (a configuration scenario on a fresh VM).
pub fn run_one(seed: u64, stats: &mut Stats) -> R {
    run(seed, u64::MAX, stats, &mut ConfigVm::default())
}
