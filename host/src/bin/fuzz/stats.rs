//! What a run counts, per scenario and in total.

#[derive(Default, Clone, Copy)]
pub struct Stats {
    pub cases: u64,
    pub scenarios: u64,
    pub configs: u64,
    pub configs_accepted: u64,
    pub requests: u64,
    pub answers: u64,
    pub queue_messages: u64,
    pub clock: u64,
    pub events_acked: u64,
    /// Scenarios whose `http` was an array of several destinations.
    pub several: u64,
    pub max_memory: usize,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.cases += o.cases;
        self.scenarios += o.scenarios;
        self.configs += o.configs;
        self.configs_accepted += o.configs_accepted;
        self.requests += o.requests;
        self.answers += o.answers;
        self.queue_messages += o.queue_messages;
        self.clock += o.clock;
        self.events_acked += o.events_acked;
        self.several += o.several;
        self.max_memory = self.max_memory.max(o.max_memory);
    }

    /// Every count, in a fixed order (what the run's digest is made of).
    pub fn fields(&self) -> [u64; 11] {
        [
            self.cases,
            self.scenarios,
            self.configs,
            self.configs_accepted,
            self.requests,
            self.answers,
            self.queue_messages,
            self.clock,
            self.events_acked,
            self.several,
            self.max_memory as u64,
        ]
    }
}
