//! The canonical text of a UUID, as every wire format and the batch-id header carry it. The
//! ids themselves are made with the event (`event::uuid_v7`, `event::uuid_v4`).

/// Writes the canonical 36-character form. Four bytes at a time, as eight hex digits in one
/// u64 laid out in memory order (a byte-by-byte table walk was ~30% of encoding a batch in V8;
/// the uuid crate's formatter cost ~930 fuel per id; big-endian words cost wasm, which has no
/// byte swap, ~25 instructions each); a test holds it equal to the uuid crate's.
pub fn write_uuid(out: &mut Vec<u8>, id: &[u8; 16]) {
    let word = |i: usize| hex8([id[i], id[i + 1], id[i + 2], id[i + 3]]);
    let (a, b, c, d) = (word(0), word(4), word(8), word(12));
    let mut buf = [b'-'; 36];
    buf[0..8].copy_from_slice(&a);
    buf[9..13].copy_from_slice(&b[..4]);
    buf[14..18].copy_from_slice(&b[4..]);
    buf[19..23].copy_from_slice(&c[..4]);
    buf[24..28].copy_from_slice(&c[4..]);
    buf[28..36].copy_from_slice(&d);
    out.extend_from_slice(&buf);
}

/// The lowercase hex digits of four bytes, in order: each byte spread into its own 16 bits,
/// its high nibble into the lower byte (first in memory), then all eight made ASCII at once.
fn hex8(bytes: [u8; 4]) -> [u8; 8] {
    let x = u64::from(u32::from_le_bytes(bytes));
    let x = (x | x << 16) & 0x0000_FFFF_0000_FFFF;
    let x = (x | x << 8) & 0x00FF_00FF_00FF_00FF;
    let x = ((x >> 4) & 0x000F_000F_000F_000F) | ((x & 0x000F_000F_000F_000F) << 8);
    // digits above 9 get the distance from '9'+1 to 'a'
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    (x + 0x3030_3030_3030_3030 + letters * 0x27).to_le_bytes()
}

pub fn uuid_string(id: &[u8; 16]) -> String {
    let mut out = Vec::with_capacity(36);
    write_uuid(&mut out, id);
    // write_uuid emits only ASCII hex digits and hyphens
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_formatting_matches_the_uuid_crate() {
        let edges = [[0u8; 16], [0xff; 16], [0x9a; 16], [0xa9; 16]];
        let seeded = (0u8..50).map(|seed| -> [u8; 16] {
            std::array::from_fn(|i| seed.wrapping_mul(37).wrapping_add(i as u8 * 11))
        });
        for bytes in edges.into_iter().chain(seeded) {
            let mut ours = Vec::new();
            write_uuid(&mut ours, &bytes);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
            );
        }
    }
}
