//! The run's cases, a function of `FUZZ_SEED` and `FUZZ_CASES` only: scenario k's seed is
//! draw k of splitmix64 from `FUZZ_SEED`, scenarios follow each other until `FUZZ_CASES`
//! steps are planned (the last one cut short), and configuration scenarios are chained in
//! groups of `CHAIN` that share one VM. Threads only take work items off this list, so
//! `FUZZ_THREADS` changes how fast the cases run, never which.

use crate::rng::Rng;
use crate::scenario;
use crate::sim::Kind;
use crate::stats::Stats;

/// Configuration scenarios per shared configuration VM.
pub const CHAIN: usize = 20;

/// One scenario of the run.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    /// Its place in the run, from 0.
    pub index: u64,
    pub seed: u64,
    /// The most steps it may take (its own length, or what is left of `FUZZ_CASES`).
    pub budget: u64,
}

/// The work items, in order: a scenario alone, or a chain of configuration scenarios that
/// run in order on one VM.
pub fn plan(seed: u64, cases: u64) -> Vec<Vec<Planned>> {
    let mut items: Vec<Vec<Planned>> = Vec::new();
    let mut chain: Option<usize> = None;
    let (mut planned, mut index) = (0u64, 0u64);
    while planned < cases {
        let s = Rng::nth(seed, index);
        let (kind, steps, _) = scenario::shape(s);
        let budget = steps.min(cases - planned);
        let p = Planned {
            index,
            seed: s,
            budget,
        };
        if kind == Kind::Configs {
            match chain {
                Some(i) if items[i].len() < CHAIN => items[i].push(p),
                _ => {
                    chain = Some(items.len());
                    items.push(vec![p]);
                }
            }
        } else {
            items.push(vec![p]);
        }
        planned += budget;
        index += 1;
    }
    items
}

/// FNV-1a over every scenario run, in plan order: its index, seed, budget and counts. Equal
/// digests: the same cases ran, with the same outcomes.
pub fn digest(runs: &[(Planned, Stats)]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        for b in x.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for (p, stats) in runs {
        eat(p.index);
        eat(p.seed);
        eat(p.budget);
        for f in stats.fields() {
            eat(f);
        }
    }
    h
}
