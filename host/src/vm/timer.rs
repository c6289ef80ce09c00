//! Time passing for a VM: the filter's timer at its period, and callouts timed out at their
//! deadlines, in time order.

use super::instance::Vm;
use anyhow::Result;

impl Vm {
    /// One `on_tick` now (the timer is not rescheduled).
    pub fn tick(&mut self) -> Result<()> {
        self.poll_queues()?;
        let (f, root) = (self.exports(), self.root_id);
        self.call("on_tick", &f.tick, root, root as i32)?;
        self.settle()
    }

    /// Moves the clock forward, firing the timer at its period and timing out callouts
    /// (Envoy answers them 504) at their deadlines, in time order.
    pub fn advance_ms(&mut self, ms: u64) -> Result<()> {
        let target = self.now_ns() + ms * 1_000_000;
        loop {
            let timeout = self
                .store
                .data()
                .pending
                .iter()
                .map(|c| (c.sent_at_ns + c.timeout_ms as u64 * 1_000_000, c.token))
                .min();
            let tick = self.next_tick_ns;
            let next = match (timeout, tick) {
                (Some((t, _)), Some(k)) => t.min(k),
                (Some((t, _)), None) => t,
                (None, Some(k)) => k,
                (None, None) => break,
            };
            if next > target {
                break;
            }
            self.set_now(next.max(self.now_ns()));
            match timeout {
                Some((t, token)) if t == next => self.time_out(token)?,
                _ => {
                    let period = self.store.data().tick_period_ms as u64 * 1_000_000;
                    self.next_tick_ns = (period > 0).then(|| next + period);
                    self.tick()?;
                }
            }
        }
        self.set_now(target);
        Ok(())
    }
}
