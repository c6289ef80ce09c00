//! The look at FILE's folder: which files are FILE's (by name), what each holds (by
//! fingerprint), how far each is read, and what was lost when one went away unread.

use super::{Follower, Seen, Source, SCAN_EVERY};
use crate::fingerprint::{self, Fp};
use crate::rolled::{self, Rank};
use crate::state::Mark;
use flate2::read::MultiGzDecoder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

pub(super) fn dev_ino(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

fn fingerprint_of(path: &Path, gz: bool) -> io::Result<Option<Fp>> {
    let f = File::open(path)?;
    if gz {
        fingerprint::of(&mut MultiGzDecoder::new(BufReader::new(f)))
    } else {
        fingerprint::of(&mut &f)
    }
}

impl Follower {
    pub(super) fn excluded(&self, p: &Path) -> bool {
        self.exclude.iter().any(|x| {
            let tmp = crate::state::tmp_path(x);
            (x.file_name() == p.file_name() || tmp.file_name() == p.file_name()) && same_dir(x, p)
        })
    }

    /// Looks at the folder: FILE's files with their fingerprints, oldest first; files gone
    /// with bytes not read are counted lost.
    pub(super) fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut found: Vec<Seen> = Vec::new();
        let mut known = HashMap::new();
        for e in rd.filter_map(|e| e.ok()) {
            let p = e.path();
            let Some(m) = rolled::member_path(&self.path, &p) else {
                continue;
            };
            if self.excluded(&p) {
                continue;
            }
            let Ok(md) = std::fs::metadata(&p) else {
                continue;
            };
            if !md.is_file() {
                continue;
            }
            let (dev, ino) = dev_ino(&md);
            let stamp = (md.len(), md.modified().ok());
            let fp = match (&self.cur, self.known.get(&(dev, ino))) {
                // The open file keeps its fingerprint until a read shows it changed.
                (Some(o), _) if (o.dev, o.ino) == (dev, ino) && !m.gz => Some(o.fp),
                (_, Some(&(size, mtime, fp))) if (size, mtime) == stamp => Some(fp),
                _ => fingerprint_of(&p, m.gz).ok().flatten(),
            };
            let Some(fp) = fp else { continue };
            known.insert((dev, ino), (stamp.0, stamp.1, fp));
            found.push(Seen {
                path: p,
                gz: m.gz,
                rank: m.rank,
                dev,
                ino,
                size: md.len(),
                fp,
            });
        }
        self.known = known;
        found.sort_by(|a, b| a.rank.cmp(&b.rank));
        // One per fingerprint: the open one, else a plain one (a gzip may still be written).
        let cur = self.cur.as_ref().map(|o| (o.dev, o.ino));
        let mut one: Vec<Seen> = Vec::with_capacity(found.len());
        for s in found {
            match one.iter_mut().find(|x| x.fp == s.fp) {
                Some(x) => {
                    let better = Some((s.dev, s.ino)) == cur
                        || (Some((x.dev, x.ino)) != cur && x.gz && !s.gz);
                    if better {
                        let rank = std::mem::replace(&mut x.rank, Rank::Live);
                        *x = Seen { rank, ..s };
                    }
                }
                None => one.push(s),
            }
        }
        if let Some((dev, ino, offset)) = self.saved_inode.take() {
            self.resolve_first_format(&one, dev, ino, offset);
        }
        // Gone since the last look (or since the state was saved) with bytes not read.
        let open_fp = self.cur.as_ref().map(|o| o.fp);
        let gone: Vec<Fp> = self
            .progress
            .keys()
            .filter(|fp| Some(**fp) != open_fp && !one.iter().any(|s| s.fp == **fp))
            .copied()
            .collect();
        for fp in gone {
            if let Some(p) = self.progress.remove(&fp) {
                let unread = p.size.saturating_sub(p.offset);
                if !p.done && unread > 0 {
                    self.lose(
                        "deleted_unread",
                        unread,
                        &p.path,
                        "deleted (or renamed out of the folder) before it was read to its end",
                    );
                }
            }
        }
        for s in &one {
            let p = self.progress.entry(s.fp).or_default();
            p.path = s.path.clone();
            // A gzip's size is its compressed one; the plain size, once known, is kept.
            if !s.gz || p.size == 0 {
                p.size = s.size;
            }
        }
        if let Some(o) = self.cur.as_mut() {
            if let Some(s) = one
                .iter()
                .find(|s| (s.dev, s.ino) == (o.dev, o.ino) && !s.gz)
            {
                o.size_seen = o.size_seen.max(s.size);
                o.path = s.path.clone();
            }
        }
        self.files = one;
    }

    /// The first state format named a file by inode: the position is in the file with that
    /// inode if it is long enough (an inode can be reused), and files older than it are done.
    pub(super) fn resolve_first_format(&mut self, files: &[Seen], dev: u64, ino: u64, offset: u64) {
        let at = files
            .iter()
            .position(|s| !s.gz && (s.dev, s.ino) == (dev, ino) && s.size >= offset);
        let before = at.unwrap_or(files.len().saturating_sub(1));
        for (i, s) in files.iter().enumerate() {
            let p = self.progress.entry(s.fp).or_default();
            if Some(i) == at {
                p.offset = offset;
            } else if i < before && s.rank != Rank::Live && !s.gz {
                p.offset = s.size;
                p.done = true;
            } else if i < before && s.gz {
                p.done = true;
            }
        }
        if at.is_none() {
            self.notes.push(format!(
                "the file of the saved position (inode {ino}) is not there: reading {} from the start",
                self.path.display()
            ));
        }
    }

    pub(super) fn lose(&mut self, reason: &'static str, bytes: u64, path: &Path, why: &str) {
        *self.lost_bytes.entry(reason).or_default() += bytes;
        self.notes.push(format!(
            "lost {bytes} bytes of {}: {why} ({reason})",
            path.display()
        ));
    }

    /// Bytes of `s` not read yet (a gzip not finished counts its compressed size).
    pub(super) fn unread(&self, s: &Seen) -> u64 {
        let p = self.progress.get(&s.fp);
        if s.gz {
            match p {
                Some(p) if p.done => 0,
                _ => s.size,
            }
        } else {
            s.size.saturating_sub(p.map_or(0, |p| p.offset))
        }
    }

    /// The open file's size now, in the list of files (a look may be half a second old).
    pub(super) fn refresh_open_size(&mut self) {
        let Some(o) = &self.cur else { return };
        let Source::Plain(f) = &o.src else { return };
        let Ok(len) = f.metadata().map(|m| m.len()) else {
            return;
        };
        let (dev, ino) = (o.dev, o.ino);
        if let Some(s) = self.files.iter_mut().find(|s| (s.dev, s.ino) == (dev, ino)) {
            s.size = s.size.max(len);
        }
    }

    /// Bytes of FILE's files not read yet, and how many files hold some (see `unread`).
    pub fn backlog(&mut self) -> (u64, u64) {
        self.refresh_open_size();
        let unread: Vec<u64> = self.files.iter().map(|s| self.unread(s)).collect();
        (
            unread.iter().sum(),
            unread.iter().filter(|u| **u > 0).count() as u64,
        )
    }

    /// A look at the folder if the last is older than `SCAN_EVERY`: while reading is paused,
    /// the gauges stay true and a file deleted meanwhile is counted.
    pub fn look(&mut self) {
        if self.last_scan.is_none_or(|t| t.elapsed() >= SCAN_EVERY) {
            self.scan();
        }
    }

    /// What the state file should say, given the start of the oldest entry still only in
    /// memory in each file.
    pub fn marks(&self, oldest_pending: &HashMap<Fp, u64>) -> Vec<Mark> {
        let mut fps: Vec<Fp> = self.files.iter().map(|s| s.fp).collect();
        if let Some(o) = &self.cur {
            if !fps.contains(&o.fp) {
                fps.push(o.fp);
            }
        }
        fps.iter()
            .filter_map(|fp| {
                let p = self.progress.get(fp)?;
                let pending = oldest_pending.get(fp).copied();
                Some(Mark {
                    fp: *fp,
                    offset: pending.map_or(p.offset, |o| o.min(p.offset)),
                    done: p.done && pending.is_none(),
                    path: p.path.clone(),
                    size: p.size,
                })
            })
            .collect()
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .canonicalize()
            .ok()
    };
    canon(a) == canon(b)
}
