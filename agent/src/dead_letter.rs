//! `--dead-letter FILE`: a batch the collector refused (a 4xx other than 408 and 429, which
//! sending again would not change) is kept here instead of lost, one JSON line per batch:
//! `{"time","destination","status","answer","body"}`, the answer cut to its first 1 KB and
//! the body as sent (gunzipped). The file is opened for appending and synced per batch.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const ANSWER_KEPT: usize = 1024;

pub struct DeadLetter {
    pub path: PathBuf,
    file: File,
}

/// A refusal the filter gives up on: the collector will not take these `events` however often
/// they are sent. 400, 413 and 422 of a batch of several events are not one: the filter splits
/// the batch and sends the halves again (a bad event costs only itself), so only a single event
/// refused so is given up on; any other 4xx but 408 and 429 drops the whole batch.
pub fn given_up(status: u32, events: usize) -> bool {
    let splits = matches!(status, 400 | 413 | 422);
    (400..500).contains(&status) && status != 408 && status != 429 && (!splits || events <= 1)
}

impl DeadLetter {
    pub fn open(path: &Path) -> io::Result<DeadLetter> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(DeadLetter {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn write(
        &mut self,
        destination: &str,
        status: u32,
        answer: &[u8],
        body: &[u8],
    ) -> io::Result<()> {
        let line = serde_json::json!({
            "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            "destination": destination,
            "status": status,
            "answer": String::from_utf8_lossy(&answer[..answer.len().min(ANSWER_KEPT)]),
            "body": String::from_utf8_lossy(body),
        });
        let mut text = serde_json::to_vec(&line)?;
        text.push(b'\n');
        self.file.write_all(&text)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_json_line_per_refused_batch() {
        assert!(given_up(400, 1) && given_up(413, 1) && given_up(422, 1));
        assert!(given_up(401, 100) && given_up(403, 100) && given_up(404, 2));
        // Split by the filter and sent again: not given up on yet.
        assert!(!given_up(400, 2) && !given_up(413, 100) && !given_up(422, 7));
        assert!(!given_up(408, 1) && !given_up(429, 1) && !given_up(503, 1) && !given_up(200, 1));
        let p = std::env::temp_dir().join(format!("usage-agent-dl-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut d = DeadLetter::open(&p).unwrap();
        d.write("collector", 400, &[b'x'; 3000], br#"{"events":[]}"#)
            .unwrap();
        d.write("collector", 422, b"bad", b"[]").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["destination"], "collector");
        assert_eq!(lines[0]["status"], 400);
        assert_eq!(lines[0]["answer"].as_str().unwrap().len(), 1024);
        assert_eq!(lines[0]["body"], r#"{"events":[]}"#);
        assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));
    }

    /// `given_up` restates what the filter does with a refusal; this holds it to the filter
    /// itself (the built .wasm in our host, as the agent runs it): for every 4xx and 5xx, a
    /// batch of one event and one of three are answered that status once, then 200 to every
    /// callout; the filter gave up when not every event was delivered.
    #[test]
    fn given_up_is_what_the_filter_gives_up() {
        use proxy_wasm_host::{metrics, Vm};
        for status in (400..=431).chain([451, 500, 502, 503, 504]) {
            for n in [1usize, 3] {
                let mut vm = Vm::envoy()
                    .config(serde_json::json!({"enabled": true, "sinks": ["http"],
                        "http": {"cluster": "collector", "batch_size": n}}))
                    .start()
                    .unwrap_or_else(|e| panic!("start: {e}"));
                for i in 0..n {
                    vm.request()
                        .path(&format!("/r/{i}"))
                        .key("k")
                        .respond(200)
                        .unwrap();
                }
                let mut first = true;
                for _ in 0..600 {
                    vm.advance_ms(100).unwrap();
                    for c in vm.pending() {
                        let s = if std::mem::take(&mut first) {
                            status
                        } else {
                            200
                        };
                        vm.reply(c.token, s, &[], b"{}").unwrap();
                    }
                    if vm.metric(metrics::BUFFER_EVENTS) == 0 && vm.pending().is_empty() && !first {
                        break;
                    }
                }
                let delivered = vm.metric(metrics::EVENTS_DELIVERED) as usize;
                assert_eq!(
                    given_up(status, n),
                    delivered < n,
                    "status {status}, {n} event(s): the filter delivered {delivered}"
                );
            }
        }
    }
}
