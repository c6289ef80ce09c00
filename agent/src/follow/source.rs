//! Opening a file of FILE's at an offset of its plain content (a gzip is read as it is), and
//! checking that the open FILE still holds what it held (copy-truncate).

use super::{Follower, Open, Seen, Source, SCAN_IDLE};
use crate::fingerprint::{self, Fp};
use crate::rolled::Rank;
use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// The fingerprint of an open plain file, read without moving its position.
pub(super) fn fingerprint_at(f: &File) -> Option<Fp> {
    fingerprint::of(&mut At { file: f, at: 0 }).ok().flatten()
}

/// Reads a file from a position of its own (`pread`), leaving the file's position alone.
struct At<'a> {
    file: &'a File,
    at: u64,
}

impl Read for At<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Follower {
    /// Opens the oldest file with bytes not read, at its offset. False when there is none.
    pub(super) fn open_next(&mut self, force: bool) -> io::Result<bool> {
        let due = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= SCAN_IDLE || force);
        if due {
            self.scan();
        }
        let now = Instant::now();
        let next = self
            .files
            .iter()
            .find(|s| self.unread(s) > 0 && self.gz_retry.get(&s.fp).is_none_or(|t| *t <= now));
        let Some(s) = next.cloned() else {
            return Ok(false);
        };
        let offset = self.progress.get(&s.fp).map_or(0, |p| p.offset);
        match self.open_at(&s, offset) {
            Ok(Some(o)) => {
                if offset > 0 || s.rank != Rank::Live {
                    let more = self.backlog().1.saturating_sub(1);
                    self.notes.push(format!(
                        "reading {} from offset {offset} ({more} more file(s) after it)",
                        s.path.display()
                    ));
                }
                self.cur = Some(o);
                self.reset_buf(offset);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `s` opened at `offset` of its content; None for a gzip that cannot be read that far yet.
    pub(super) fn open_at(&mut self, s: &Seen, offset: u64) -> io::Result<Option<Open>> {
        let mut file = File::open(&s.path)?;
        let src = if s.gz {
            let mut d = MultiGzDecoder::new(BufReader::new(file));
            let skipped = io::copy(&mut (&mut d).take(offset), &mut io::sink());
            match skipped {
                Ok(n) if n == offset => Source::Gz(Box::new(d)),
                Ok(_) => {
                    // Shorter than what was read of it: nothing more in it.
                    self.progress.entry(s.fp).or_default().done = true;
                    return Ok(None);
                }
                Err(_) => {
                    self.gz_retry
                        .insert(s.fp, Instant::now() + Duration::from_secs(1));
                    return Ok(None);
                }
            }
        } else {
            // The name may hold another file since the look: it must still be this one.
            if fingerprint_at(&file) != Some(s.fp) {
                return Ok(None);
            }
            file.seek(SeekFrom::Start(offset))?;
            Source::Plain(file)
        };
        let live = s.rank == Rank::Live;
        Ok(Some(Open {
            src,
            fp: s.fp,
            path: s.path.clone(),
            dev: s.dev,
            ino: s.ino,
            live,
            size_seen: if s.gz { 0 } else { s.size },
        }))
    }

    /// The open FILE no longer starts with its fingerprint (copy-truncate).
    pub(super) fn rewritten(&self) -> bool {
        match &self.cur {
            Some(Open {
                src: Source::Plain(file),
                live: true,
                fp,
                ..
            }) => fingerprint_at(file) != Some(*fp),
            _ => false,
        }
    }
}
