//! The `--state` file: for each file of FILE the agent knows, how far it is safe to start
//! again (every entry before that offset is delivered, refused and written aside, or made no
//! event). Files are keyed by fingerprint; the path and size are only for people and for
//! the books (a file listed with unread bytes that is gone at the next start was lost).
//!
//! ```json
//! {"version":2,"files":[{"fingerprint":"3f…","offset":5120,"done":true,"path":"/var/log/caddy/access-2026-12-06T05-07-19.123.log","size":5120}]}
//! ```
//!
//! `done`: read to its end after it was rolled, so its gzip can be skipped unread. The
//! first format (`{"dev":…,"ino":…,"offset":…}`, one position by inode) is still read.

use crate::fingerprint::{self, Fp};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileJson {
    fingerprint: String,
    offset: u64,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    path: String,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct StateJson {
    version: u32,
    files: Vec<FileJson>,
}

#[derive(Debug, Deserialize)]
struct V1 {
    dev: u64,
    ino: u64,
    offset: u64,
}

/// What the state says of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub fp: Fp,
    pub offset: u64,
    pub done: bool,
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Saved {
    Files(Vec<Mark>),
    /// The first format: a position in the file with this inode.
    Inode {
        dev: u64,
        ino: u64,
        offset: u64,
    },
}

pub fn load(path: &Path) -> io::Result<Option<Saved>> {
    let b = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    if let Ok(s) = serde_json::from_slice::<StateJson>(&b) {
        let mut marks = Vec::new();
        for f in s.files {
            let fp = fingerprint::parse_hex(&f.fingerprint)
                .ok_or_else(|| bad(format!("bad fingerprint {:?}", f.fingerprint)))?;
            marks.push(Mark {
                fp,
                offset: f.offset,
                done: f.done,
                path: PathBuf::from(f.path),
                size: f.size,
            });
        }
        return Ok(Some(Saved::Files(marks)));
    }
    match serde_json::from_slice::<V1>(&b) {
        Ok(v) => Ok(Some(Saved::Inode {
            dev: v.dev,
            ino: v.ino,
            offset: v.offset,
        })),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Writes the state atomically: a temporary file, fsync, rename, fsync of the folder.
pub fn save(path: &Path, marks: &[Mark]) -> io::Result<()> {
    let s = StateJson {
        version: 2,
        files: marks
            .iter()
            .map(|m| FileJson {
                fingerprint: fingerprint::hex(m.fp),
                offset: m.offset,
                done: m.done,
                path: m.path.to_string_lossy().into_owned(),
                size: m.size,
            })
            .collect(),
    };
    let tmp = tmp_path(path);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(serde_json::to_string(&s)?.as_bytes())?;
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

pub fn tmp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_and_loaded_and_the_first_format_still_read() {
        let d = std::env::temp_dir().join(format!("usage-agent-state-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join("s.json");
        assert_eq!(load(&p).unwrap(), None);
        let marks = vec![Mark {
            fp: 0xdead_beef_0123_4567,
            offset: 10,
            done: true,
            path: PathBuf::from("/l/access.log.1"),
            size: 10,
        }];
        save(&p, &marks).unwrap();
        assert_eq!(load(&p).unwrap(), Some(Saved::Files(marks)));
        std::fs::write(&p, br#"{"dev":1,"ino":2,"offset":3}"#).unwrap();
        assert_eq!(
            load(&p).unwrap(),
            Some(Saved::Inode {
                dev: 1,
                ino: 2,
                offset: 3
            })
        );
        std::fs::write(&p, b"junk").unwrap();
        assert!(load(&p).is_err());
    }
}
