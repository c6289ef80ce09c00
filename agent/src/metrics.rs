//! `--metrics ADDR`: Prometheus text at `/metrics`. The filter's metrics as the VM last
//! published them (`usage_filter.events_captured` → `usage_filter_events_captured`) and the
//! agent's own. The main loop renders the page after each tick; a small thread serves it.

use proxy_wasm_host::MetricKind;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct Agent {
    pub lines_read: u64,
    /// By kind (`Malformed::name`).
    pub malformed: Vec<(&'static str, u64)>,
    /// Entries read whose events are still only in memory (a hard kill repeats them).
    pub lines_behind: u64,
    /// Bytes in the followed file not read yet.
    pub bytes_unread: u64,
    pub callouts_in_flight: u64,
    pub entries_forgotten: u64,
    /// Files of FILE's (rolled or not) with bytes not read yet.
    pub files_pending: u64,
    pub entries_lost: Vec<(&'static str, u64)>,
    pub bytes_lost: Vec<(&'static str, u64)>,
    pub batches_dead_lettered: u64,
    /// Reading waits for the filter to deliver what it holds.
    pub reading_paused: bool,
}

pub fn render(filter: &[(String, MetricKind, i64)], a: &Agent) -> String {
    let mut s = String::new();
    for (name, kind, value) in filter {
        let n: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let t = match kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "untyped",
        };
        let _ = writeln!(s, "# TYPE {n} {t}\n{n} {value}");
    }
    let mut one = |n: &str, t: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {n} {help}\n# TYPE {n} {t}\n{n} {v}");
    };
    one(
        "usage_agent_lines_read_total",
        "counter",
        "Log lines read.",
        a.lines_read,
    );
    one(
        "usage_agent_lines_behind",
        "gauge",
        "Entries read whose events are only in memory (what a hard kill would read again).",
        a.lines_behind,
    );
    one(
        "usage_agent_bytes_unread",
        "gauge",
        "Bytes of the followed log not read yet.",
        a.bytes_unread,
    );
    one(
        "usage_agent_callouts_in_flight",
        "gauge",
        "Callouts waiting for an answer.",
        a.callouts_in_flight,
    );
    one(
        "usage_agent_entries_forgotten_total",
        "counter",
        "Entries no longer tracked for the saved offset (more pending than the filter can hold).",
        a.entries_forgotten,
    );
    one(
        "usage_agent_files_pending",
        "gauge",
        "Files of the followed log (rolled ones included) with bytes not read yet.",
        a.files_pending,
    );
    one(
        "usage_agent_batches_dead_lettered_total",
        "counter",
        "Batches the collector refused, written to --dead-letter.",
        a.batches_dead_lettered,
    );
    one(
        "usage_agent_reading_paused",
        "gauge",
        "1 while reading waits for the filter to deliver what it holds (the file is the buffer).",
        a.reading_paused as u64,
    );
    let mut labelled = |n: &str, help: &str, label: &str, values: &[(&str, u64)]| {
        let _ = writeln!(s, "# HELP {n} {help}\n# TYPE {n} counter");
        for (l, v) in values {
            let _ = writeln!(s, "{n}{{{label}=\"{l}\"}} {v}");
        }
    };
    labelled(
        "usage_agent_lines_malformed_total",
        "Lines skipped, by kind.",
        "kind",
        &a.malformed,
    );
    labelled(
        "usage_agent_entries_lost_total",
        "Entries lost anyway, by reason (refused: a batch the collector refused, without --dead-letter).",
        "reason",
        &a.entries_lost,
    );
    labelled(
        "usage_agent_bytes_lost_total",
        "Bytes of the log lost before they were read, by reason (a gzip counts its compressed size).",
        "reason",
        &a.bytes_lost,
    );
    s
}

/// Serves `page` at `/metrics` (404 elsewhere). Binds now so a bad address fails at start.
pub fn serve(addr: &str, page: Arc<Mutex<String>>) -> std::io::Result<std::net::SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(2)));
            // The whole request head (a client may write it in pieces; answering after the
            // first piece and closing would reset the rest), at most 8 KiB.
            let mut req = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            while req.len() < 8192 && !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&chunk[..n]),
                }
            }
            let first = String::from_utf8_lossy(&req);
            let path = first.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
                ("200 OK", page.lock().map(|p| p.clone()).unwrap_or_default())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text() {
        let a = Agent {
            lines_read: 5,
            malformed: vec![("not_json", 2)],
            ..Default::default()
        };
        let page = render(
            &[(
                "usage_filter.events_captured".into(),
                MetricKind::Counter,
                3,
            )],
            &a,
        );
        assert!(page.contains(
            "# TYPE usage_filter_events_captured counter\nusage_filter_events_captured 3\n"
        ));
        assert!(page.contains("usage_agent_lines_read_total 5\n"));
        assert!(page.contains("usage_agent_lines_malformed_total{kind=\"not_json\"} 2\n"));
        let shared = Arc::new(Mutex::new(page.clone()));
        let addr = serve("127.0.0.1:0", shared).unwrap();
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        // In pieces, as a client may send it.
        c.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        c.write_all(b"host: x\r\n\r\n").unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("HTTP/1.1 200 OK") && got.ends_with(&page));
    }
}
