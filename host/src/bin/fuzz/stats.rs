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
    /// Requests whose event the oracle predicted; events taken as predicted, from damaged
    /// hand-over messages, and unpredicted under a configuration the oracle does not read.
    pub predicted: u64,
    pub matched: u64,
    pub from_damaged: u64,
    pub from_unread: u64,
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
        self.predicted += o.predicted;
        self.matched += o.matched;
        self.from_damaged += o.from_damaged;
        self.from_unread += o.from_unread;
    }

    /// Every count, in a fixed order (what the run's digest is made of).
    pub fn fields(&self) -> [u64; 15] {
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
            self.predicted,
            self.matched,
            self.from_damaged,
            self.from_unread,
        ]
    }
}
