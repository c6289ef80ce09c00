//! The order of the host's calls into the guest: each callback's name and the context it ran
//! as, as they happened (the fuel log only counts them per name).

use std::collections::VecDeque;

/// The most recent `CallTrace::KEEP` callbacks, oldest first.
#[derive(Debug, Default)]
pub struct CallTrace {
    calls: VecDeque<(&'static str, u32)>,
}

impl CallTrace {
    /// Bound on what is kept, so a long run does not grow it without end.
    pub const KEEP: usize = 1024;

    pub fn record(&mut self, callback: &'static str, context_id: u32) {
        if self.calls.len() == Self::KEEP {
            self.calls.pop_front();
        }
        self.calls.push_back((callback, context_id));
    }

    /// What was recorded, oldest first; the trace is left empty.
    pub fn take(&mut self) -> Vec<(&'static str, u32)> {
        std::mem::take(&mut self.calls).into()
    }
}
