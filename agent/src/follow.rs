//! Following FILE and its rolled files: complete lines with their positions, oldest file
//! first, the file being the buffer.
//!
//! - Files are found by name (`rolled`) and known by fingerprint (`fingerprint`): a position
//!   is (fingerprint, offset in the plain content), so it survives rename, gzip and copy.
//! - The next file read is the oldest with bytes not read yet; FILE itself is read last and
//!   kept open at its end. A rolled file is finished when it ends (a partial last line is
//!   skipped and counted).
//! - Rotation: FILE's name now holds another file; the open one is read to its end first.
//! - Copy-truncate: the open FILE no longer starts with its fingerprint (checked after each
//!   read, so bytes of the new content are never taken for the old); the rest is read from
//!   the copy, found by fingerprint. Without a copy the unread bytes are counted lost.
//! - A file deleted before it was read to its end is counted lost (`lost_bytes`), with a note.

use crate::caddy_log::Malformed;
use crate::fingerprint::Fp;
use crate::rolled::Rank;
use crate::state::Saved;
use flate2::read::MultiGzDecoder;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest line read; longer ones are skipped (`Malformed::TooLong`).
pub const MAX_LINE: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;
/// How often the folder is looked at while FILE is read at its end.
const SCAN_EVERY: Duration = Duration::from_millis(500);
/// Shortest time between two looks when there is nothing to read.
const SCAN_IDLE: Duration = Duration::from_millis(50);

/// A place in a file's plain content: what the books and the state hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub fp: Fp,
    pub offset: u64,
}

pub enum Item<'a> {
    /// A complete line without its newline; `start` where it begins.
    Line { start: Position, bytes: &'a [u8] },
    /// Something that is not a line was skipped.
    Skipped { kind: Malformed },
}

/// A file of FILE's in the folder at the last look.
#[derive(Debug, Clone)]
struct Seen {
    path: PathBuf,
    gz: bool,
    rank: Rank,
    dev: u64,
    ino: u64,
    /// On disk (compressed, for a gzip).
    size: u64,
    fp: Fp,
}

/// How far a file (by fingerprint) has been read.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// After the last line handed out.
    offset: u64,
    /// Read to its end after it was rolled.
    done: bool,
    path: PathBuf,
    size: u64,
}

enum Source {
    Plain(File),
    Gz(Box<MultiGzDecoder<BufReader<File>>>),
}

struct Open {
    src: Source,
    fp: Fp,
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Opened as FILE and not known to be rotated away since.
    live: bool,
    /// The largest size seen (what a truncation without a copy loses, at least).
    size_seen: u64,
}

pub struct Follower {
    path: PathBuf,
    dir: PathBuf,
    /// Names in the folder that are never logs (the state file, the dead-letter file).
    exclude: Vec<PathBuf>,
    progress: HashMap<Fp, Progress>,
    /// Files at the last look, oldest first, one per fingerprint.
    files: Vec<Seen>,
    /// The first state format, resolved at the first look.
    saved_inode: Option<(u64, u64, u64)>,
    cur: Option<Open>,
    buf: Vec<u8>,
    /// Consumed bytes at the front of `buf`.
    pos: usize,
    /// Offset in the content of `buf[0]`.
    buf_offset: u64,
    /// Inside a line longer than `MAX_LINE`: drop bytes up to the next newline.
    skipping: bool,
    last_scan: Option<Instant>,
    /// Fingerprints of the files at the last look by (dev, inode), kept while their size and
    /// mtime do not change: a rolled gzip is not decompressed again at every look.
    known: HashMap<(u64, u64), (u64, Option<std::time::SystemTime>, Fp)>,
    /// A gzip that could not be read yet (still being written): not before this.
    gz_retry: HashMap<Fp, Instant>,
    /// What happened that an operator should know (rotations, truncations, losses).
    pub notes: Vec<String>,
    /// Bytes lost by reason, since the start.
    pub lost_bytes: BTreeMap<&'static str, u64>,
}

impl Follower {
    /// Follows `path`; `saved` from the state file; `exclude`: files in the folder that are
    /// never logs, whatever their names.
    pub fn new(path: &Path, saved: Option<Saved>, exclude: &[PathBuf]) -> Follower {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut f = Follower {
            path: path.to_path_buf(),
            dir,
            exclude: exclude.to_vec(),
            progress: HashMap::new(),
            files: Vec::new(),
            saved_inode: None,
            cur: None,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            buf_offset: 0,
            skipping: false,
            last_scan: None,
            known: HashMap::new(),
            gz_retry: HashMap::new(),
            notes: Vec::new(),
            lost_bytes: BTreeMap::new(),
        };
        match saved {
            Some(Saved::Files(marks)) => {
                for m in marks {
                    f.progress.insert(
                        m.fp,
                        Progress {
                            offset: m.offset,
                            done: m.done,
                            path: m.path,
                            size: m.size,
                        },
                    );
                }
            }
            Some(Saved::Inode { dev, ino, offset }) => f.saved_inode = Some((dev, ino, offset)),
            None => {}
        }
        f.scan();
        f
    }

    fn here(&self, fp: Fp) -> Position {
        Position {
            fp,
            offset: self.buf_offset + self.pos as u64,
        }
    }

    fn reset_buf(&mut self, offset: u64) {
        self.buf.clear();
        self.pos = 0;
        self.buf_offset = offset;
        self.skipping = false;
    }

    /// Hands out up to `max` items from what is in the files now. Returns how many.
    pub fn poll(&mut self, max: usize, f: &mut dyn FnMut(Item)) -> io::Result<usize> {
        let mut n = 0;
        let mut force = false;
        while n < max {
            if self.cur.is_none() && !self.open_next(force)? {
                break;
            }
            force = false;
            let fp = match &self.cur {
                Some(o) => o.fp,
                None => break,
            };
            // Complete lines already read.
            if let Some(i) = memchr(b'\n', &self.buf[self.pos..]) {
                let start = self.here(fp);
                let line_end = self.pos + i;
                self.pos = line_end + 1;
                let end = self.here(fp);
                self.progress.entry(fp).or_default().offset = end.offset;
                if self.skipping || i > MAX_LINE {
                    self.skipping = false;
                    f(Item::Skipped {
                        kind: Malformed::TooLong,
                    });
                } else {
                    let s = (start.offset - self.buf_offset) as usize;
                    let mut bytes = &self.buf[s..line_end];
                    if bytes.last() == Some(&b'\r') {
                        bytes = &bytes[..bytes.len() - 1];
                    }
                    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                        continue; // a blank line: no entry, no complaint
                    }
                    f(Item::Line { start, bytes });
                }
                n += 1;
                continue;
            }
            if self.buf.len() - self.pos > MAX_LINE {
                self.skipping = true;
                self.buf_offset += self.buf.len() as u64;
                self.buf.clear();
                self.pos = 0;
            }
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.buf_offset += self.pos as u64;
                self.pos = 0;
            }
            let have = self.buf.len();
            self.buf.resize(have + READ_CHUNK, 0);
            let got = match self.cur.as_mut().map(|o| match &mut o.src {
                Source::Plain(f) => f.read(&mut self.buf[have..]),
                Source::Gz(d) => d.read(&mut self.buf[have..]),
            }) {
                Some(Ok(g)) => g,
                Some(Err(e)) => {
                    self.buf.truncate(have);
                    if self
                        .cur
                        .as_ref()
                        .is_some_and(|o| matches!(o.src, Source::Gz(_)))
                    {
                        // A gzip cut short (still being written): again later, from its offset.
                        self.gz_retry
                            .insert(fp, Instant::now() + Duration::from_secs(1));
                        self.cur = None;
                        continue;
                    }
                    return Err(e);
                }
                None => 0,
            };
            self.buf.truncate(have + got);
            if got > 0 {
                if self.rewritten() {
                    self.truncated(have, f, &mut n);
                    force = true;
                }
                continue;
            }
            if self.at_end(f, &mut n) {
                force = true;
                continue;
            }
            break;
        }
        Ok(n)
    }

    /// The open file ended. True when reading moves on (to another file, or again in the
    /// same one), false when FILE is read to its end and there is nothing else to read.
    fn at_end(&mut self, f: &mut dyn FnMut(Item), n: &mut usize) -> bool {
        let Some((fp, live, dev, ino)) = self.cur.as_ref().map(|o| (o.fp, o.live, o.dev, o.ino))
        else {
            return false;
        };
        let read_to = self.buf_offset + self.buf.len() as u64;
        if live {
            match std::fs::metadata(&self.path) {
                Ok(m) if folder::dev_ino(&m) == (dev, ino) => {
                    let size = m.len();
                    if let Some(o) = self.cur.as_mut() {
                        o.size_seen = o.size_seen.max(size);
                    }
                    if size < read_to || self.rewritten() {
                        self.truncated(self.buf.len(), f, n);
                        return true;
                    }
                    // Now and then: an older file with bytes not read (a rolled file that
                    // grew, or one put there) comes first.
                    if self.last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
                        self.scan();
                        let older = self
                            .files
                            .iter()
                            .take_while(|s| s.fp != fp)
                            .any(|s| self.unread(s) > 0);
                        if older && self.pos == self.buf.len() {
                            self.cur = None;
                            return true;
                        }
                    }
                    return false;
                }
                _ => {
                    // Rotated away (or gone): read it once more, then it is finished.
                    if let Some(o) = self.cur.as_mut() {
                        o.live = false;
                    }
                    self.notes.push(format!(
                        "{} was rotated: reading the rotated file to its end, then the new one",
                        self.path.display()
                    ));
                    return true;
                }
            }
        }
        // A rolled file read to its end: a partial last line can never be completed.
        if self.pos < self.buf.len() || self.skipping {
            f(Item::Skipped {
                kind: Malformed::Partial,
            });
            *n += 1;
        }
        let p = self.progress.entry(fp).or_default();
        p.offset = read_to;
        p.done = true;
        self.cur = None;
        self.reset_buf(0);
        true
    }

    /// The open FILE was truncated (its content from `valid` on in `buf` is new): the rest
    /// comes from the copy, found by fingerprint, or is counted lost.
    fn truncated(&mut self, valid: usize, f: &mut dyn FnMut(Item), n: &mut usize) {
        self.buf.truncate(valid);
        let read_to = self.buf_offset + valid as u64;
        let Some(old) = self.cur.take() else { return };
        self.scan();
        let copy = self
            .files
            .iter()
            .find(|s| s.fp == old.fp && (s.dev, s.ino) != (old.dev, old.ino))
            .cloned();
        if let Some(s) = copy {
            if let Ok(Some(mut o)) = self.open_at(&s, read_to) {
                self.notes.push(format!(
                    "{} was truncated (copytruncate): reading the rest from {} at offset {read_to}",
                    self.path.display(),
                    s.path.display()
                ));
                o.live = false;
                self.cur = Some(o);
                return;
            }
        }
        let unread = old.size_seen.saturating_sub(read_to);
        self.notes.push(format!(
            "{} was truncated (copytruncate): reading it again from the start",
            self.path.display()
        ));
        if unread > 0 {
            self.lose(
                "truncated_unread",
                unread,
                &old.path,
                "truncated before it was read, and no copy of it was found",
            );
        }
        if self.pos < self.buf.len() || self.skipping {
            f(Item::Skipped {
                kind: Malformed::Partial,
            });
            *n += 1;
        }
        let p = self.progress.entry(old.fp).or_default();
        p.offset = p.offset.max(read_to).max(old.size_seen);
        p.done = true;
        self.reset_buf(0);
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

mod folder;
mod source;

#[cfg(test)]
mod tests;
