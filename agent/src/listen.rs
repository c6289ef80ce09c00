//! `--listen ADDR`: newline-delimited JSON over TCP, what Caddy's `output net` sends. Each
//! connection is read on its own thread; lines go to the main loop over a bounded channel,
//! so a busy agent slows the sender down (TCP) rather than growing a queue of its own.

use crate::caddy_log::Malformed;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::mpsc::SyncSender;

pub enum Input {
    Line(Vec<u8>),
    Skipped(Malformed),
}

/// Lines in flight between the readers and the main loop.
pub const CHANNEL: usize = 8192;

/// Binds now (so a bad address fails at start) and accepts on a thread.
pub fn start(addr: &str, tx: SyncSender<Input>) -> std::io::Result<std::net::SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let local = l.local_addr()?;
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            let tx = tx.clone();
            std::thread::spawn(move || read_lines(conn, tx));
        }
    });
    Ok(local)
}

fn read_lines(conn: impl Read, tx: SyncSender<Input>) {
    let max = crate::follow::MAX_LINE as u64;
    let mut r = BufReader::with_capacity(256 * 1024, conn);
    loop {
        let mut line = Vec::new();
        match (&mut r).take(max + 1).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let input = if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            Input::Line(line)
        } else if line.len() as u64 > max {
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            if r.read_until(b'\n', &mut rest).is_err() {
                return;
            }
            Input::Skipped(Malformed::TooLong)
        } else {
            // The connection closed mid-line.
            let _ = tx.send(Input::Skipped(Malformed::Partial));
            return;
        };
        if tx.send(input).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn lines_over_tcp() {
        let (tx, rx) = std::sync::mpsc::sync_channel(16);
        let addr = start("127.0.0.1:0", tx).unwrap();
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"{\"a\":1}\r\n\n{\"b\":2}\n{\"c\"").unwrap();
        drop(s);
        let got: Vec<String> = (0..3)
            .map(|_| match rx.recv().unwrap() {
                Input::Line(l) => String::from_utf8(l).unwrap(),
                Input::Skipped(k) => format!("<{}>", k.name()),
            })
            .collect();
        assert_eq!(got, [r#"{"a":1}"#, r#"{"b":2}"#, "<partial>"]);
    }
}
