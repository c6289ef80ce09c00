//! Shared queues across the VMs of one hub: `on_queue_ready` for the queues a VM registered.

use super::instance::Vm;
use crate::state::Profile;
use anyhow::Result;

impl Vm {
    /// Delivers `on_queue_ready` for queues this VM registered that received items
    /// (Envoy posts it to the registrant's thread).
    pub fn poll_queues(&mut self) -> Result<()> {
        if self.store.data().profile != Profile::Envoy {
            return Ok(());
        }
        let ready: Vec<usize> = {
            let key = self.store.data().vm_key;
            let hub = self.store.data().hub.clone();
            let mut hub = hub.borrow_mut();
            hub.queues
                .iter_mut()
                .enumerate()
                .filter(|(_, q)| q.ready && q.owner == Some(key))
                .map(|(i, q)| {
                    q.ready = false;
                    i + 1
                })
                .collect()
        };
        let (f, root) = (self.f.clone(), self.root_id);
        for id in ready {
            self.call(
                "on_queue_ready",
                &f.queue_ready,
                root,
                (root as i32, id as i32),
            )?;
        }
        self.settle()
    }
}
