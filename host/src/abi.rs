//! proxy-wasm ABI v0.2.1 constants and the byte encodings the host and guest exchange.

/// Status codes (github.com/proxy-wasm/spec, `abi-versions/v0.2.1`).
pub mod status {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const BAD_ARGUMENT: i32 = 2;
    pub const SERIALIZATION_FAILURE: i32 = 3;
    pub const INVALID_MEMORY_ACCESS: i32 = 6;
    pub const EMPTY: i32 = 7;
    pub const CAS_MISMATCH: i32 = 8;
    pub const INTERNAL_FAILURE: i32 = 10;
    pub const UNIMPLEMENTED: i32 = 12;
}

pub mod map_type {
    pub const REQUEST_HEADERS: i32 = 0;
    pub const REQUEST_TRAILERS: i32 = 1;
    pub const RESPONSE_HEADERS: i32 = 2;
    pub const RESPONSE_TRAILERS: i32 = 3;
    pub const CALL_RESPONSE_HEADERS: i32 = 6;
    pub const CALL_RESPONSE_TRAILERS: i32 = 7;
}

pub mod buffer_type {
    pub const REQUEST_BODY: i32 = 0;
    pub const RESPONSE_BODY: i32 = 1;
    pub const CALL_RESPONSE_BODY: i32 = 4;
    pub const VM_CONFIGURATION: i32 = 6;
    pub const PLUGIN_CONFIGURATION: i32 = 7;
}

pub type Headers = Vec<(String, Vec<u8>)>;

/// Header map bytes: u32 count, count x (u32 key_len, u32 value_len), then each key and
/// value followed by a NUL; all little-endian.
pub fn encode_map(map: &Headers) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(map.len() as u32).to_le_bytes());
    for (k, v) in map {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in map {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

/// The inverse of `encode_map`; None when the bytes do not describe a map.
pub fn decode_map(bytes: &[u8]) -> Option<Headers> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let n = u32_at(0)?;
    let mut sizes = Vec::with_capacity(n.min(1024));
    for i in 0..n {
        sizes.push((u32_at(4 + i * 8)?, u32_at(8 + i * 8)?));
    }
    let mut at = 4 + n * 8;
    let mut out = Vec::with_capacity(sizes.len());
    for (kl, vl) in sizes {
        let k = bytes.get(at..at + kl)?;
        at += kl + 1;
        let v = bytes.get(at..at + vl)?;
        at += vl + 1;
        out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
    }
    Some(out)
}

/// Property path bytes -> segments. Segments are NUL-separated; the SDK leaves no trailing
/// NUL, other guests do: accept both.
pub fn property_path(bytes: &[u8]) -> Vec<String> {
    let trimmed = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    trimmed
        .split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// A JSON object as Envoy 1.40 hands a `google.protobuf.Struct` plugin configuration to
/// the guest: protobuf's binary encoding, every number a double.
pub fn encode_struct(v: &serde_json::Value) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    fn len_field(out: &mut Vec<u8>, field: u64, body: &[u8]) {
        varint(out, (field << 3) | 2);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }
    fn value(v: &serde_json::Value) -> Vec<u8> {
        use serde_json::Value::*;
        let mut out = Vec::new();
        match v {
            Null => out.extend_from_slice(&[0x08, 0x00]),
            Bool(b) => out.extend_from_slice(&[0x20, *b as u8]),
            Number(n) => {
                out.push(0x11);
                out.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_le_bytes());
            }
            String(s) => len_field(&mut out, 3, s.as_bytes()),
            Object(_) => len_field(&mut out, 5, &structure(v)),
            Array(items) => {
                let mut list = Vec::new();
                for i in items {
                    len_field(&mut list, 1, &value(i));
                }
                len_field(&mut out, 6, &list);
            }
        }
        out
    }
    fn structure(v: &serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        if let serde_json::Value::Object(m) = v {
            for (k, val) in m {
                let mut entry = Vec::new();
                len_field(&mut entry, 1, k.as_bytes());
                len_field(&mut entry, 2, &value(val));
                len_field(&mut out, 1, &entry);
            }
        }
        out
    }
    structure(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let m: Headers = vec![
            (":path".into(), b"/x".to_vec()),
            ("k".into(), vec![0xff, 0]),
        ];
        assert_eq!(decode_map(&encode_map(&m)).unwrap(), m);
        assert_eq!(encode_map(&vec![]), vec![0, 0, 0, 0]);
        assert!(decode_map(&[5, 0, 0, 0]).is_none());
    }

    #[test]
    fn struct_encoding_matches_envoys_bytes() {
        // captured from Envoy 1.40 for `enabled: true`
        let b = encode_struct(&serde_json::json!({"enabled": true}));
        assert_eq!(
            b,
            [
                0x0a, 0x0d, 0x0a, 0x07, b'e', b'n', b'a', b'b', b'l', b'e', b'd', 0x12, 0x02, 0x20,
                0x01
            ]
        );
    }

    #[test]
    fn property_paths() {
        assert_eq!(property_path(b"response\0code"), vec!["response", "code"]);
        assert_eq!(
            property_path(b"request\0duration\0"),
            vec!["request", "duration"]
        );
    }
}
