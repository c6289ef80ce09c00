//! Following a log file: complete lines with their positions, surviving rotation (rename
//! and a new file: the old one is read to its end first) and copy-truncate (the file
//! shrinks under the read position: read again from 0). The read position is saved as
//! (file identity, offset) in a state file written atomically.

use crate::caddy_log::Malformed;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Longest line read; longer ones are skipped (`Malformed::TooLong`).
pub const MAX_LINE: usize = 1 << 20;
const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(m: &std::fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

/// A place in a file: what the state file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    #[serde(flatten)]
    pub file: FileId,
    pub offset: u64,
}

pub enum Item<'a> {
    /// A complete line without its newline; `start` where it begins, `end` after its newline.
    Line {
        start: Position,
        end: Position,
        bytes: &'a [u8],
    },
    /// Something that is not a line was skipped; the read position is now `end`.
    Skipped { kind: Malformed, end: Position },
}

struct Open {
    file: File,
    id: FileId,
}

pub struct Follower {
    path: PathBuf,
    cur: Option<Open>,
    buf: Vec<u8>,
    /// Consumed bytes at the front of `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    buf_offset: u64,
    /// Inside a line longer than `MAX_LINE`: drop bytes up to the next newline.
    skipping: bool,
    /// What happened that an operator should know (rotations, truncations), drained by main.
    pub notes: Vec<String>,
}

fn open_at(path: &Path, offset: u64) -> io::Result<(Open, u64)> {
    let mut file = File::open(path)?;
    let m = file.metadata()?;
    let offset = if m.len() < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(offset))?;
    Ok((
        Open {
            file,
            id: FileId::of(&m),
        },
        offset,
    ))
}

/// A file next to `path` with this identity (where a rotation renamed it to).
fn find_rotated(path: &Path, id: FileId) -> Option<PathBuf> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && FileId::of(&m) == id)
        })
        .map(|e| e.path())
}

impl Follower {
    /// Starts at `saved` (from the state file) when that file can still be found, at the
    /// start of `path` otherwise.
    pub fn new(path: &Path, saved: Option<Position>) -> Follower {
        let mut f = Follower {
            path: path.to_path_buf(),
            cur: None,
            buf: Vec::with_capacity(READ_CHUNK),
            pos: 0,
            buf_offset: 0,
            skipping: false,
            notes: Vec::new(),
        };
        if let Some(s) = saved {
            let here = std::fs::metadata(path).ok().map(|m| FileId::of(&m));
            let found = if here == Some(s.file) {
                Some(path.to_path_buf())
            } else {
                find_rotated(path, s.file)
            };
            match found.map(|p| (open_at(&p, s.offset), p)) {
                Some((Ok((open, offset)), p)) => {
                    if offset != s.offset {
                        f.notes.push(format!(
                            "{} is shorter than the saved offset {}: reading it from the start",
                            p.display(),
                            s.offset
                        ));
                    } else if p != path {
                        f.notes.push(format!(
                            "resuming in the rotated {} at {offset}, then {}",
                            p.display(),
                            path.display()
                        ));
                    }
                    f.cur = Some(open);
                    f.buf_offset = offset;
                }
                _ => f.notes.push(format!(
                    "the file of the saved position is gone: reading {} from the start",
                    path.display()
                )),
            }
        }
        f
    }

    /// The position after the last complete line handed out.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn position(&self) -> Option<Position> {
        self.cur.as_ref().map(|o| Position {
            file: o.id,
            offset: self.buf_offset + self.pos as u64,
        })
    }

    /// Bytes in the file not read yet.
    pub fn unread_bytes(&self) -> u64 {
        let Some(o) = &self.cur else { return 0 };
        let len = o.file.metadata().map(|m| m.len()).unwrap_or(0);
        let read = self.buf_offset + self.buf.len() as u64;
        let mut behind = len.saturating_sub(read);
        // A rotated-away file being finished: the new one counts too.
        if let Ok(m) = std::fs::metadata(&self.path) {
            if FileId::of(&m) != o.id {
                behind += m.len();
            }
        }
        behind
    }

    fn here(&self, o: &Open) -> Position {
        Position {
            file: o.id,
            offset: self.buf_offset + self.pos as u64,
        }
    }

    /// Hands out up to `max` items from what is in the file now. Returns how many.
    pub fn poll(&mut self, max: usize, f: &mut dyn FnMut(Item)) -> io::Result<usize> {
        let mut n = 0;
        if self.cur.is_none() {
            match open_at(&self.path, 0) {
                Ok((o, _)) => {
                    self.cur = Some(o);
                    self.reset_buf(0);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            }
        }
        while n < max {
            // Complete lines already read.
            if let Some(i) = memchr(b'\n', &self.buf[self.pos..]) {
                let o = self.cur.as_ref().expect("open");
                let start = self.here(o);
                let line_end = self.pos + i;
                self.pos = line_end + 1;
                let end = self.here(o);
                if self.skipping || i > MAX_LINE {
                    self.skipping = false;
                    f(Item::Skipped {
                        kind: Malformed::TooLong,
                        end,
                    });
                } else {
                    let mut bytes = &self.buf[start_index(&start, self.buf_offset)..line_end];
                    if bytes.last() == Some(&b'\r') {
                        bytes = &bytes[..bytes.len() - 1];
                    }
                    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                        // Blank line: no entry, no complaint.
                        continue;
                    }
                    f(Item::Line { start, end, bytes });
                }
                n += 1;
                continue;
            }
            if self.buf.len() - self.pos > MAX_LINE {
                self.skipping = true;
                let drop = self.buf.len();
                self.buf_offset += drop as u64;
                self.buf.clear();
                self.pos = 0;
            }
            // Need more bytes.
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.buf_offset += self.pos as u64;
                self.pos = 0;
            }
            let o = self.cur.as_mut().expect("open");
            let have = self.buf.len();
            self.buf.resize(have + READ_CHUNK, 0);
            let got = o.file.read(&mut self.buf[have..]);
            let got = match got {
                Ok(g) => g,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            };
            self.buf.truncate(have + got);
            if got > 0 {
                continue;
            }
            // At the end of the file: rotated or truncated?
            let Ok(m) = std::fs::metadata(&self.path) else {
                break; // renamed, the new file not there yet
            };
            let id = o.id;
            let read_to = self.buf_offset + self.buf.len() as u64;
            if FileId::of(&m) != id {
                let partial = !self.buf.is_empty() || self.skipping;
                self.notes.push(format!(
                    "{} was rotated: reading the new file from the start",
                    self.path.display()
                ));
                match open_at(&self.path, 0) {
                    Ok((open, _)) => {
                        let old_end = Position {
                            file: id,
                            offset: read_to,
                        };
                        self.cur = Some(open);
                        self.reset_buf(0);
                        if partial {
                            f(Item::Skipped {
                                kind: Malformed::Partial,
                                end: old_end,
                            });
                            n += 1;
                        }
                    }
                    Err(_) => break,
                }
            } else if m.len() < read_to {
                let partial = !self.buf.is_empty() || self.skipping;
                self.notes.push(format!(
                    "{} was truncated (copytruncate): reading it from the start",
                    self.path.display()
                ));
                o.file.seek(SeekFrom::Start(0))?;
                self.reset_buf(0);
                if partial {
                    let end = Position {
                        file: id,
                        offset: 0,
                    };
                    f(Item::Skipped {
                        kind: Malformed::Partial,
                        end,
                    });
                    n += 1;
                }
            } else {
                break;
            }
        }
        Ok(n)
    }

    fn reset_buf(&mut self, offset: u64) {
        self.buf.clear();
        self.pos = 0;
        self.buf_offset = offset;
        self.skipping = false;
    }
}

fn start_index(start: &Position, buf_offset: u64) -> usize {
    (start.offset - buf_offset) as usize
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The saved position, if the state file holds one.
pub fn load_state(path: &Path) -> io::Result<Option<Position>> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the state file atomically: a temporary file, fsync, rename.
pub fn save_state(path: &Path, pos: &Position) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string(pos)?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("usage-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn append(p: &Path, s: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    /// Lines and skipped kinds, as strings.
    fn drain(f: &mut Follower) -> Vec<String> {
        let mut out = Vec::new();
        f.poll(usize::MAX, &mut |it| match it {
            Item::Line { bytes, .. } => out.push(String::from_utf8_lossy(bytes).into_owned()),
            Item::Skipped { kind, .. } => out.push(format!("<{}>", kind.name())),
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_positions_and_partial_lines() {
        let d = tmpdir("lines");
        let p = d.join("access.log");
        append(&p, "a\nbb\nc");
        let mut f = Follower::new(&p, None);
        let mut got = Vec::new();
        f.poll(10, &mut |it| {
            if let Item::Line { start, end, bytes } = it {
                got.push((start.offset, end.offset, bytes.to_vec()));
            }
        })
        .unwrap();
        assert_eq!(got, vec![(0, 2, b"a".to_vec()), (2, 5, b"bb".to_vec())]);
        assert_eq!(f.position().unwrap().offset, 5);
        append(&p, "c\n\n");
        assert_eq!(drain(&mut f), ["cc"]);
        assert_eq!(f.position().unwrap().offset, 9);
    }

    #[test]
    fn rotation_by_rename_reads_the_old_file_to_its_end_first() {
        let d = tmpdir("rename");
        let p = d.join("access.log");
        append(&p, "1\n2\n");
        let mut f = Follower::new(&p, None);
        assert_eq!(drain(&mut f), ["1", "2"]);
        append(&p, "3\n");
        std::fs::rename(&p, d.join("access.log.1")).unwrap();
        append(&d.join("access.log.1"), "4\n5");
        assert_eq!(drain(&mut f), ["3", "4"]); // the new file is not there yet
        append(&p, "6\n");
        assert_eq!(drain(&mut f), ["<partial>", "6"]);
        append(&p, "7\n");
        assert_eq!(drain(&mut f), ["7"]);
    }

    #[test]
    fn copy_truncate_starts_again_at_zero() {
        let d = tmpdir("truncate");
        let p = d.join("access.log");
        append(&p, "one\ntwo\n");
        let mut f = Follower::new(&p, None);
        assert_eq!(drain(&mut f), ["one", "two"]);
        std::fs::copy(&p, d.join("access.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        append(&p, "x\n");
        assert_eq!(drain(&mut f), ["x"]);
    }

    #[test]
    fn resume_from_state_even_in_the_rotated_file() {
        let d = tmpdir("resume");
        let p = d.join("access.log");
        let st = d.join("state.json");
        append(&p, "a\nb\nc\n");
        let mut f = Follower::new(&p, None);
        let mut first = None;
        f.poll(1, &mut |it| {
            if let Item::Line { end, .. } = it {
                first = Some(end)
            }
        })
        .unwrap();
        save_state(&st, &first.unwrap()).unwrap();
        let saved = load_state(&st).unwrap();
        assert_eq!(saved, first);
        // Same file.
        assert_eq!(drain(&mut Follower::new(&p, saved)), ["b", "c"]);
        // Rotated since.
        std::fs::rename(&p, d.join("access.log.1")).unwrap();
        append(&p, "d\n");
        assert_eq!(drain(&mut Follower::new(&p, saved)), ["b", "c", "d"]);
        // Gone.
        std::fs::remove_file(d.join("access.log.1")).unwrap();
        let mut f = Follower::new(&p, saved);
        assert!(f.notes[0].contains("gone"));
        assert_eq!(drain(&mut f), ["d"]);
        assert_eq!(load_state(&d.join("none.json")).unwrap(), None);
    }

    #[test]
    fn an_overlong_line_is_skipped() {
        let d = tmpdir("long");
        let p = d.join("access.log");
        append(&p, &format!("{}\nok\n", "x".repeat(MAX_LINE + 10)));
        let mut f = Follower::new(&p, None);
        assert_eq!(drain(&mut f), ["<too_long>", "ok"]);
    }
}
