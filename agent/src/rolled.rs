//! Which files in FILE's folder are FILE's rolled files, and their order (oldest first).
//!
//! Names only: what a file holds is known by its fingerprint (`fingerprint`), never by its
//! name or inode. Recognised, for FILE = `<stem><ext>` (`access.log`):
//! - Caddy's (lumberjack/timberjack): `<stem>-<time…><ext>` and `….gz`, where `<time…>`
//!   starts with a digit (`access-2026-12-06T05-07-19.123.log`, `access-…-size.log`);
//! - logrotate's: `FILE.<n>` and `FILE.<n>.gz` (higher is older), `FILE-<date…>` and `….gz`.
//!
//! Timed names sort by their time text (fixed-width, so as strings), numbered ones after
//! them from the highest number down, and FILE itself last.

use std::cmp::Ordering;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rank {
    /// A rolled file named by its time (Caddy, logrotate's dateext).
    Timed(String),
    /// logrotate's `FILE.<n>`.
    Numbered(u64),
    /// FILE itself.
    Live,
}

impl Rank {
    fn class(&self) -> u8 {
        match self {
            Rank::Timed(_) => 0,
            Rank::Numbered(_) => 1,
            Rank::Live => 2,
        }
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Rank::Timed(a), Rank::Timed(b)) => a.cmp(b),
            (Rank::Numbered(a), Rank::Numbered(b)) => b.cmp(a),
            _ => self.class().cmp(&other.class()),
        }
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A name in FILE's folder that is FILE or one of its rolled files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub rank: Rank,
    pub gz: bool,
}

fn timed(s: &str) -> Option<Rank> {
    let first = s.chars().next()?;
    (first.is_ascii_digit() && !s.contains('/')).then(|| Rank::Timed(s.to_string()))
}

/// What `name` is to the followed file named `live` (both plain file names).
pub fn member(live: &str, name: &str) -> Option<Member> {
    if name == live {
        return Some(Member {
            rank: Rank::Live,
            gz: false,
        });
    }
    let (base, gz) = match name.strip_suffix(".gz") {
        Some(b) => (b, true),
        None => (name, false),
    };
    // logrotate: FILE.<n>, FILE-<date>
    if let Some(rest) = base.strip_prefix(live) {
        if let Some(n) = rest.strip_prefix('.') {
            if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                let n = n.parse().ok()?;
                return Some(Member {
                    rank: Rank::Numbered(n),
                    gz,
                });
            }
        }
        if let Some(t) = rest.strip_prefix('-') {
            return timed(t).map(|rank| Member { rank, gz });
        }
        return None;
    }
    // Caddy: <stem>-<time><ext>
    let (stem, ext) = match live.rfind('.') {
        Some(i) if i > 0 => live.split_at(i),
        _ => (live, ""),
    };
    let t = base
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(ext)?;
    timed(t).map(|rank| Member { rank, gz })
}

/// `member` for a path in the folder of `live` (a path).
pub fn member_path(live: &Path, p: &Path) -> Option<Member> {
    let l = live.file_name()?.to_str()?;
    let n = p.file_name()?.to_str()?;
    member(l, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caddy_and_logrotate_names_and_nothing_else() {
        let m = |n: &str| member("access.log", n);
        assert_eq!(m("access.log").unwrap().rank, Rank::Live);
        for n in [
            "access-2026-12-06T05-07-19.123.log",
            "access-2026-12-06T05-07-19.123-size.log",
            "access.log-20261206",
        ] {
            assert!(matches!(m(n).unwrap().rank, Rank::Timed(_)), "{n}");
            assert!(!m(n).unwrap().gz);
            assert!(m(&format!("{n}.gz")).unwrap().gz, "{n}.gz");
        }
        assert_eq!(m("access.log.1").unwrap().rank, Rank::Numbered(1));
        assert_eq!(m("access.log.12.gz").unwrap().rank, Rank::Numbered(12));
        for n in [
            "agent-state.json",
            "access.log.tmp",
            "access.log.1.tmp",
            "access.log.",
            "access-x.log",
            "access-2026.txt",
            "other-2026-12-06T05-07-19.123.log",
            "access.log.gz",
            "error.log",
        ] {
            assert_eq!(m(n), None, "{n}");
        }
    }

    #[test]
    fn oldest_first_then_the_live_file() {
        let mut names = vec![
            "access.log",
            "access.log.1",
            "access-2026-12-06T05-07-19.123.log.gz",
            "access.log.3.gz",
            "access-2026-12-05T23-59-59.999.log",
            "access.log.2",
        ];
        names.sort_by_key(|n| member("access.log", n).unwrap().rank);
        assert_eq!(
            names,
            [
                "access-2026-12-05T23-59-59.999.log",
                "access-2026-12-06T05-07-19.123.log.gz",
                "access.log.3.gz",
                "access.log.2",
                "access.log.1",
                "access.log",
            ]
        );
    }
}
