//! Reading: entries from the followed files (or `--listen`) through the filter, one HTTP
//! stream each, until the next tick is due or the filter holds enough (reading pauses).

use super::{Agent, BYTE_LOSSES};
use crate::caddy_log::{self, Malformed};
use crate::follow::{Item, Position};
use crate::ids::{event_id, id_bytes};
use crate::listen;
use crate::tuning::BATCH;
use proxy_wasm_host::stream::SIZES_CHUNK;
use proxy_wasm_host::{Body, Response, Stream, Timing};
use std::sync::mpsc::TryRecvError;
use std::time::Instant;

impl Agent {
    /// Entries until the next tick is due or nothing more is there.
    pub(super) fn read_group(&mut self) -> Result<usize, String> {
        let mut total = 0;
        let mut err = None;
        if let Some(mut f) = self.follower.take() {
            loop {
                let held = self.held_at_tick + self.made_since_tick;
                self.paused = held >= self.pause_at;
                if self.paused {
                    f.look();
                    for n in f.notes.drain(..) {
                        eprintln!("usage-agent: {n}");
                    }
                    break;
                }
                let room = ((self.pause_at - held) as usize).min(BATCH);
                let got = f.poll(room, &mut |item| {
                    if err.is_some() {
                        return;
                    }
                    let r = match item {
                        Item::Line { start, bytes, .. } => {
                            let rand = id_bytes(start.fp, start.offset, bytes);
                            self.entry(bytes, rand, Some(start))
                        }
                        Item::Skipped { kind, .. } => {
                            self.skipped(kind);
                            Ok(())
                        }
                    };
                    if let Err(e) = r {
                        err = Some(e);
                    }
                });
                for n in f.notes.drain(..) {
                    eprintln!("usage-agent: {n}");
                }
                match got {
                    Ok(n) => total += n,
                    Err(e) => {
                        eprintln!("usage-agent: reading the log: {e}");
                        break;
                    }
                }
                if err.is_some() || got.map_or(true, |n| n < room) || self.group_due() {
                    break;
                }
            }
            (self.counts.bytes_unread, self.counts.files_pending) = f.backlog();
            self.counts.bytes_lost = BYTE_LOSSES
                .iter()
                .map(|r| (*r, f.lost_bytes.get(r).copied().unwrap_or(0)))
                .collect();
            self.follower = Some(f);
        }
        if let Some(e) = err {
            return Err(e);
        }
        if let Some(rx) = self.listen.take() {
            let r = (|| -> Result<(), String> {
                loop {
                    match rx.try_recv() {
                        Ok(listen::Input::Line(line)) => {
                            self.listen_seq += 1;
                            let rand = id_bytes(self.salt, self.listen_seq, &line);
                            self.entry(&line, rand, None)?;
                        }
                        Ok(listen::Input::Skipped(kind)) => self.skipped(kind),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                    total += 1;
                    if total % BATCH == 0 && self.group_due() {
                        break;
                    }
                }
                Ok(())
            })();
            self.listen = Some(rx);
            r?;
        }
        Ok(total)
    }

    /// One log entry through the filter.
    pub(super) fn entry(
        &mut self,
        line: &[u8],
        rand: [u8; 10],
        start: Option<Position>,
    ) -> Result<(), String> {
        self.counts.lines_read += 1;
        let e = match caddy_log::parse(line) {
            Ok(e) => e,
            Err(kind) => {
                self.malformed_line(kind, line);
                return Ok(());
            }
        };
        if !self.group_open {
            self.group_open = true;
            self.group_start = Instant::now();
        }
        // The entry as it happened: its headers exactly, its body sizes (not the bodies), its
        // times, and the stream's random bytes from the entry; status 0 is a downstream reset.
        let response = (e.status != 0)
            .then(|| Response::new(e.status, e.response_headers, Body::Size(e.size)));
        let out = self
            .vm
            .run_stream(Stream {
                request_headers: e.headers,
                request_body: Body::Size(e.bytes_read),
                response,
                timing: Timing::Replay {
                    start_ns: e.start_ns,
                    end_ns: e.end_ns,
                },
                random_bytes: rand.to_vec(),
                chunk: SIZES_CHUNK,
            })
            .map_err(|err| format!("the filter failed: {err:#}"))?;
        let event = (out.random_scripted == 10).then(|| event_id(e.end_ns, &rand));
        self.saw_per_stream |= event.is_some();
        if event.is_some() || !self.saw_per_stream {
            self.made_since_tick += 1;
        }
        self.books.read(start, event);
        Ok(())
    }

    pub(super) fn skipped(&mut self, kind: Malformed) {
        self.malformed_line(kind, b"");
    }

    /// Counted, and logged the first time of each kind.
    pub(super) fn malformed_line(&mut self, kind: Malformed, line: &[u8]) {
        let n = self.malformed.entry(kind).or_default();
        *n += 1;
        if *n == 1 {
            let shown: String = String::from_utf8_lossy(&line[..line.len().min(120)]).into();
            eprintln!(
                "usage-agent: skipping a malformed line ({}): {shown:?} (each kind is logged once, \
                 all are counted in usage_agent_lines_malformed_total)",
                kind.name()
            );
        }
    }
}
