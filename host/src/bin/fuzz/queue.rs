//! Shared-queue scenarios: a hand-over message damaged on the way between workers and the
//! service, or one nobody sent; the books then allow for what it claimed.

use crate::check::{self, trap, R};
use crate::rng::Rng;
use crate::sim::Sim;

impl Sim {
    pub(crate) fn queue_index(&self) -> Option<usize> {
        let hub = self.vms[0].hub();
        let hub = hub.borrow();
        hub.queues.iter().position(|q| q.name == self.queue_name)
    }

    /// A hand-over message damaged on the way, or one nobody sent.
    pub(crate) fn queue(&mut self, r: &mut Rng) -> R {
        let n = self.vms.len();
        // A few requests on a worker, so that a genuine hand-over is on its way.
        for _ in 0..r.range(1, 6) {
            let w = r.below(n as u64 - 1) as usize;
            let key = format!("k{}", r.below(10));
            let path = format!("/q/{}", r.string_upto(30));
            trap(
                "request",
                self.vms[w].request().path(&path).key(&key).respond(200),
            )?;
        }
        let books_before = self.settled_now();
        for w in 0..n - 1 {
            trap("worker tick", self.vms[w].tick())?;
        }
        let Some(q) = self.queue_index() else {
            return Err("the service registered no queue".into());
        };
        let hub = self.vms[0].hub();
        let what = r.below(4);
        let genuine = {
            let mut hub = hub.borrow_mut();
            let queue = &mut hub.queues[q];
            match what {
                0 => {
                    // Truncated after its count: the loss is known and must be counted.
                    if let Some(mut m) = queue.items.pop_back() {
                        let cut = r.range(4.min(m.len() as u64), m.len() as u64) as usize;
                        m.truncate(cut);
                        queue.items.push_back(m);
                        true
                    } else {
                        false
                    }
                }
                1 => {
                    if let Some(mut m) = queue.items.pop_back() {
                        for _ in 0..r.range(1, 4) {
                            if m.is_empty() {
                                break;
                            }
                            let i = r.below(m.len() as u64) as usize;
                            m[i] ^= 1 << r.below(8);
                        }
                        if r.chance(30) {
                            let cut = r.below(m.len() as u64 + 1) as usize;
                            m.truncate(cut);
                        }
                        queue.items.push_back(m);
                    }
                    false
                }
                _ => {
                    let mut m = r.bytes_upto(600);
                    if r.chance(50) && m.len() >= 4 {
                        m[..4].copy_from_slice(&(r.size(5000) as u32).to_le_bytes());
                    }
                    queue.items.push_back(m);
                    false
                }
            }
        };
        hub.borrow_mut().queues[q].ready = true;
        self.log
            .push(format!("queue message {what}, genuine {genuine}"));
        trap("service tick", self.vms[n - 1].tick())?;
        if !genuine {
            check::DAMAGED.with(|d| d.set(true));
            let books_after = self.books()?;
            // What the damaged message claimed reached every destination alike (the check
            // after this step holds each destination's books to the same phantom).
            let d0 = |b: &(i64, Vec<i64>)| b.1.first().copied().unwrap_or(0) - b.0;
            self.phantom += d0(&books_after) - d0(&books_before);
        }
        Ok(())
    }
}
