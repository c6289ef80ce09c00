//! Event identity: the same log entry gives the same event id after a restart, so
//! receivers drop a replay by id. The filter builds an event id as a UUID v7 from the
//! `on_log` clock and 10 random bytes; with the VM configuration `{"event_ids":"per_stream"}`
//! it draws those 10 bytes with one `random_get` in that stream, which the agent answers
//! from the entry's identity.

use crate::clock::now_ns;

pub fn os_random_u64() -> u64 {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    u64::from_le_bytes(b) ^ now_ns()
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random part of an entry's event id, from what identifies the entry: for a file,
/// its identity, the entry's offset and its bytes (a copy-truncated file reuses offsets).
pub fn id_bytes(k1: u64, k2: u64, line: &[u8]) -> [u8; 10] {
    let mut a = mix(k1 ^ 0x243F_6A88_85A3_08D3);
    let mut b = mix(k2 ^ 0x1319_8A2E_0370_7344);
    for c in line.chunks(8) {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        a = mix(a ^ w);
        b = mix(b ^ w.rotate_left(29) ^ a);
    }
    a = mix(a ^ line.len() as u64);
    b = mix(b ^ a);
    let mut out = [0u8; 10];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    out
}

/// The event id the filter makes from these bytes in an `on_log` at `end_ns`.
pub fn event_id(end_ns: u64, bytes: &[u8; 10]) -> u128 {
    uuid::Builder::from_unix_timestamp_millis(end_ns / 1_000_000, bytes)
        .into_uuid()
        .as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_entry_gets_the_same_id_and_others_do_not() {
        let a = id_bytes(1, 100, b"{\"x\":1}");
        assert_eq!(a, id_bytes(1, 100, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(1, 101, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(2, 100, b"{\"x\":1}"));
        assert_ne!(a, id_bytes(1, 100, b"{\"x\":2}"));
        let id = uuid::Uuid::from_u128(event_id(1_700_000_000_123_456_789, &a));
        assert_eq!(id.get_version_num(), 7);
        let (secs, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos), (1_700_000_000, 123_000_000));
    }
}
