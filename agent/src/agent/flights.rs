//! Callouts: started as the filter makes them, answered as the collector answers (or at
//! their deadline, as Envoy's 504), and what each answer means for the books: delivered,
//! refused (written to `--dead-letter`, or lost and counted), or retried by the filter.

use super::Agent;
use crate::answer::{Answer, Outcome};
use crate::callout;
use crate::clock::now_ns;
use crate::dead_letter;
use std::time::{Duration, Instant};

pub struct Flight {
    pub(crate) deadline: Instant,
    pub(crate) ids: Vec<u128>,
    pub(crate) upstream: String,
    /// The plain body, kept only for `--dead-letter`.
    pub(crate) body: Option<Vec<u8>>,
}

impl Agent {
    /// Callouts the filter made since the last look: start them.
    pub(super) fn send_new(&mut self) {
        for c in self.vm.take_new_callouts() {
            let deadline = Instant::now() + Duration::from_millis(c.timeout_ms as u64);
            let ids = callout::ids_in(&c);
            let body = self.dead_letter.as_ref().map(|_| c.plain_body());
            self.in_flight.insert(
                c.token,
                Flight {
                    deadline,
                    ids,
                    upstream: c.upstream.clone(),
                    body,
                },
            );
            self.client.send(c);
        }
        self.counts.callouts_in_flight = self.in_flight.len() as u64;
    }

    /// Answers that came in (waiting up to `wait` for the first when given).
    pub(super) fn feed_answers(&mut self, wait: Option<Duration>) -> Result<(), String> {
        let mut first = match wait {
            Some(w) => self.answers.recv_timeout(w).ok(),
            None => None,
        };
        loop {
            let a = match first.take() {
                Some(a) => a,
                None => match self.answers.try_recv() {
                    Ok(a) => a,
                    Err(_) => break,
                },
            };
            self.answer(a)?;
        }
        self.send_new();
        Ok(())
    }

    pub(super) fn answer(&mut self, a: Answer) -> Result<(), String> {
        let Some(flight) = self.in_flight.remove(&a.token) else {
            return Ok(()); // timed out already
        };
        self.vm.set_clock_ns(now_ns());
        self.answered_since_tick = true;
        let r = match a.outcome {
            Outcome::Answered {
                status,
                headers,
                body,
            } => {
                if (200..300).contains(&status) {
                    for id in &flight.ids {
                        self.books.delivered(*id);
                    }
                } else if dead_letter::given_up(status, flight.ids.len()) {
                    self.refused(&flight, status, &body);
                }
                let h: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                self.vm.reply(a.token, status, &h, &body)
            }
            Outcome::ConnectFailed => self.vm.refuse(a.token),
            Outcome::Reset => self.vm.reset(a.token),
        };
        r.map_err(|e| format!("the filter failed: {e:#}"))
    }

    /// The collector refused a batch: written aside with `--dead-letter`, else lost. Either
    /// way its entries no longer hold the saved position back, and reading goes on.
    pub(super) fn refused(&mut self, flight: &Flight, status: u32, answer: &[u8]) {
        let n = flight.ids.len() as u64;
        let kept = match (&mut self.dead_letter, &flight.body) {
            (Some(d), Some(body)) => match d.write(&flight.upstream, status, answer, body) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("usage-agent: cannot write {}: {e}", d.path.display());
                    false
                }
            },
            _ => false,
        };
        if kept {
            self.counts.batches_dead_lettered += 1;
        } else {
            *self.lost_entries.entry("refused").or_default() += n;
            eprintln!(
                "usage-agent: lost {n} entries: {} refused their batch with {status} \
                 (give --dead-letter FILE to keep refused batches)",
                flight.upstream
            );
        }
        for id in &flight.ids {
            self.books.delivered(*id);
        }
    }

    /// Envoy's 504 for callouts past their timeout.
    pub(super) fn expire(&mut self) -> Result<(), String> {
        let now = Instant::now();
        let late: Vec<u32> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.in_flight.remove(&t);
            self.vm.set_clock_ns(now_ns());
            self.vm
                .time_out(t)
                .map_err(|e| format!("the filter failed: {e:#}"))?;
        }
        self.send_new();
        Ok(())
    }
}
