//! A file is known by what it holds: the SHA-256 of its first line (with its newline), or of
//! its first `FP_LEN` bytes when the first line is longer. Rename, gzip and copy keep it; a
//! reused inode, the state file or a truncated-and-rewritten log do not. As Vector's
//! `checksum` fingerprint, a file whose first line is not complete yet has none and waits:
//! there is nothing to read in it anyway (only complete lines are entries).
//!
//! Two files with the same first line would be one file to the agent. Caddy's first line
//! carries a timestamp to the microsecond and the client's address and port.

use sha2::{Digest, Sha256};
use std::io::{self, Read};

pub const FP_LEN: usize = 1024;

/// 64 bits of the hash: the key of a file in the state and in event ids.
pub type Fp = u64;

/// The fingerprint of the content that `r` reads from its start; `None` while the first line
/// is shorter than `FP_LEN` and not complete.
pub fn of(r: &mut dyn Read) -> io::Result<Option<Fp>> {
    let mut head = [0u8; FP_LEN];
    let mut n = 0;
    while n < FP_LEN {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => {
                n += k;
                if head[n - k..n].contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(of_bytes(&head[..n]))
}

/// The fingerprint of content starting with `head` (`None` when it cannot be known yet).
pub fn of_bytes(head: &[u8]) -> Option<Fp> {
    let end = match head.iter().position(|&b| b == b'\n') {
        Some(i) if i < FP_LEN => i + 1,
        _ if head.len() >= FP_LEN => FP_LEN,
        _ => return None,
    };
    let d = Sha256::digest(&head[..end]);
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    Some(u64::from_be_bytes(b))
}

pub fn hex(fp: Fp) -> String {
    format!("{fp:016x}")
}

pub fn parse_hex(s: &str) -> Option<Fp> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_decides_and_an_incomplete_one_waits() {
        let a = of_bytes(b"{\"ts\":1}\nmore").unwrap();
        assert_eq!(Some(a), of_bytes(b"{\"ts\":1}\nother lines\n"));
        assert_ne!(Some(a), of_bytes(b"{\"ts\":2}\nmore"));
        assert_eq!(of_bytes(b"{\"ts\":1"), None);
        assert_eq!(of_bytes(b""), None);
        // A first line longer than FP_LEN: its first FP_LEN bytes.
        let long = vec![b'x'; FP_LEN + 10];
        assert_eq!(of_bytes(&long), of_bytes(&long[..FP_LEN]));
        assert!(of_bytes(&long).is_some());
        assert_eq!(of_bytes(&long[..FP_LEN - 1]), None);
        // Read in pieces, from a reader.
        let mut r: &[u8] = b"line one\nline two\n";
        assert_eq!(of(&mut r).unwrap(), of_bytes(b"line one\n"));
        assert_eq!(parse_hex(&hex(a)), Some(a));
        assert_eq!(parse_hex("xyz"), None);
    }
}
