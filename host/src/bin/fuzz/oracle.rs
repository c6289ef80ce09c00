//! The campaign's oracle: what event each request must become, worked out from the request
//! and the configuration its VM was given (never from the filter's counters), and the
//! collectors' acknowledgements and single refusals held against it.
//!
//! A request is metered when the configuration is `enabled`, lists the `http` sink, the path
//! (before `?` or `#`) starts with none of `exclude_paths`, and the key header is present or
//! `require_key` is false. Its event then has, for each destination: `api_path` that path,
//! `subscription_key` the header's first value after `key_mode`, `method` the first
//! `:method`, `status_code` the `:status` read as the filter documents (up to 4 digits, else
//! 0; an aborted stream 0), `request_size` and `response_size` the body bytes.

use std::collections::HashMap;

/// The fields of an event the oracle predicts.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fields {
    pub path: String,
    pub key: String,
    pub method: String,
    pub status: u64,
    pub request_size: u64,
    pub response_size: u64,
}

/// An event as a collector received it: its id and the fields above.
#[derive(Clone, Debug)]
pub struct Seen {
    pub id: String,
    pub fields: Fields,
}

/// What of a VM's configuration decides whether a request is metered and what its event
/// holds: read from the configuration the scenario generated, with the documented defaults.
#[derive(Clone, Debug)]
pub struct Expect {
    metered: bool,
    require_key: bool,
    key_header: String,
    key_mode: String,
    exclude: Vec<String>,
}

impl Expect {
    /// `None`: a configuration the oracle does not read (a dispatcher, a key from a property).
    pub fn of(cfg: &serde_json::Value) -> Option<Expect> {
        if cfg.get("dispatcher").is_some() || cfg.get("subscription_key_property").is_some() {
            return None;
        }
        let http = cfg["sinks"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == "http"));
        Some(Expect {
            metered: cfg["enabled"].as_bool().unwrap_or(false) && http,
            require_key: cfg["require_key"].as_bool().unwrap_or(true),
            key_header: cfg["subscription_key_header"]
                .as_str()
                .unwrap_or("x-subscription-key")
                .to_ascii_lowercase(),
            key_mode: cfg["key_mode"].as_str().unwrap_or("raw").to_string(),
            exclude: cfg["exclude_paths"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The event a request becomes, if any. `status`: the `:status` bytes (None: aborted).
    pub fn event(
        &self,
        headers: &[(String, Vec<u8>)],
        status: Option<&[u8]>,
        request_size: u64,
        response_size: u64,
    ) -> Option<Fields> {
        if !self.metered {
            return None;
        }
        let first = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let full = first(":path").map(Vec::as_slice).unwrap_or_default();
        let bare = match full.iter().position(|&b| b == b'?' || b == b'#') {
            Some(i) => &full[..i],
            None => full,
        };
        if self.exclude.iter().any(|p| bare.starts_with(p.as_bytes())) {
            return None;
        }
        let key = first(&self.key_header);
        if key.is_none() && self.require_key {
            return None;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let key = text(key.map(Vec::as_slice).unwrap_or_default());
        let key = match self.key_mode.as_str() {
            "sha256" => sha256_hex(key.as_bytes()),
            "redact" => key.chars().take(4).chain(['…']).collect(),
            _ => key,
        };
        Some(Fields {
            path: text(bare),
            key,
            method: text(first(":method").map(Vec::as_slice).unwrap_or_default()),
            status: status.map_or(0, status_of),
            request_size,
            response_size,
        })
    }
}

/// `:status` as the filter documents it: 1 to 4 ASCII digits (spaces around), else 0.
fn status_of(b: &[u8]) -> u64 {
    let s = b.trim_ascii();
    if s.is_empty() || s.len() > 4 || !s.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    s.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0'))
}

/// Per destination, the events the requests must have become and no collector has taken yet.
#[derive(Default)]
pub struct Oracle {
    /// Events that must arrive once (acknowledged, or refused alone), or be declared lost.
    strict: Vec<HashMap<Fields, u32>>,
    /// Events of requests whose hand-over message was damaged: they may arrive or not.
    optional: Vec<HashMap<Fields, u32>>,
    /// Requests made under a configuration the oracle does not read: that many events per
    /// destination may arrive unpredicted.
    unread: Vec<u64>,
    /// Requests whose event was predicted (per scenario).
    pub predicted: u64,
    /// Events collectors took: as predicted, from a damaged message, unpredicted under a
    /// configuration not read.
    pub matched: u64,
    pub from_damaged: u64,
    pub from_unread: u64,
}

impl Oracle {
    pub fn new(dests: usize) -> Oracle {
        Oracle {
            strict: vec![HashMap::new(); dests],
            optional: vec![HashMap::new(); dests],
            unread: vec![0; dests],
            ..Default::default()
        }
    }

    /// A request was made: its event (for every destination), under a configuration the
    /// oracle reads (`Some(expect)`) or not.
    pub fn request(&mut self, expect: Option<Option<Fields>>, optional: bool) {
        match expect {
            None => self.unread.iter_mut().for_each(|n| *n += 1),
            Some(None) => {}
            Some(Some(f)) => {
                self.predicted += 1;
                let books = if optional {
                    &mut self.optional
                } else {
                    &mut self.strict
                };
                for b in books.iter_mut() {
                    *b.entry(f.clone()).or_default() += 1;
                }
            }
        }
    }

    /// Predicted events `f` of requests whose hand-over message was then damaged: they may
    /// never arrive.
    pub fn make_optional(&mut self, f: &Fields) {
        for (s, o) in self.strict.iter_mut().zip(self.optional.iter_mut()) {
            if take(s, f) {
                *o.entry(f.clone()).or_default() += 1;
            }
        }
    }

    /// Destination `d`'s collector took `e` (acknowledged it, or refused it alone): it must be
    /// a predicted event not taken before. `damaged`: its id came in a damaged hand-over
    /// message, so its fields may be anything: it may stand for one of that message's events,
    /// never for another request's (a flipped bit can make it look like a later one).
    pub fn took(&mut self, d: usize, e: &Seen, damaged: bool) -> Result<(), String> {
        if damaged {
            take(&mut self.optional[d], &e.fields);
            self.from_damaged += 1;
            return Ok(());
        }
        if take(&mut self.strict[d], &e.fields) {
            self.matched += 1;
            return Ok(());
        }
        if self.unread[d] > 0 {
            self.unread[d] -= 1;
            self.from_unread += 1;
            return Ok(());
        }
        let near: Vec<&Fields> = self.strict[d]
            .keys()
            .filter(|f| f.path == e.fields.path || f.key == e.fields.key)
            .take(3)
            .collect();
        Err(format!(
            "destination {d}: event {} matches no request still owed an event: {:?}; predicted with its path or key: {near:?}",
            e.id, e.fields
        ))
    }

    /// At the end: how many events predicted for destination `d` no collector took, and a
    /// few of them.
    pub fn missing(&self, d: usize) -> (u64, Vec<&Fields>) {
        let n = self.strict[d].values().map(|n| u64::from(*n)).sum();
        (n, self.strict[d].keys().take(3).collect())
    }

    /// Whether some request's configuration was not read.
    pub fn any_unread(&self) -> bool {
        self.unread.iter().any(|n| *n > 0)
    }
}

fn take(m: &mut HashMap<Fields, u32>, f: &Fields) -> bool {
    match m.get_mut(f) {
        Some(n) if *n > 1 => *n -= 1,
        Some(_) => {
            m.remove(f);
        }
        None => return false,
    }
    true
}

/// The event ids a hand-over message brings, read as the service frames it (record count,
/// then per record its 16-byte id, fixed part, usage and text), as far as its framing holds:
/// the only events whose values a damaged message may have changed.
pub fn message_ids(m: &[u8]) -> Vec<String> {
    message_records(m).into_iter().map(|(id, _)| id).collect()
}

/// Each record of a hand-over message as far as its framing holds: its id and fields (the
/// text's first three strings are the path, the key and the method).
pub fn message_records(m: &[u8]) -> Vec<(String, Fields)> {
    let mut out = Vec::new();
    let u32_at = |i: usize| {
        m.get(i..i + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let u64_at = |i: usize| {
        m.get(i..i + 8)
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    // id, four u64, status, eight ends, present: then the usage tag.
    const FIXED: usize = 16 + 32 + 4 + 32 + 1;
    let mut at = 4;
    while let Some(id) = m.get(at..at + 16) {
        let Some(tag) = m.get(at + FIXED) else { break };
        let usage = if *tag == 0 { 0 } else { 2 + 1 + 56 };
        let Some(len) = u32_at(at + FIXED + 1 + usage) else {
            break;
        };
        let start = at + FIXED + 1 + usage + 4;
        let Some(text) = m.get(start..start + len) else {
            break;
        };
        let ends: Vec<usize> = (0..3)
            .map(|i| u32_at(at + 52 + 4 * i).unwrap_or(0).min(len))
            .collect();
        let cut = |a: usize, b: usize| String::from_utf8_lossy(&text[a.min(b)..b]).into_owned();
        out.push((
            uuid_text(id),
            Fields {
                path: cut(0, ends[0]),
                key: cut(ends[0], ends[1]),
                method: cut(ends[1], ends[2]),
                status: u32_at(at + 48).unwrap_or(0) as u64,
                request_size: u64_at(at + 32),
                response_size: u64_at(at + 40),
            },
        ));
        at = start + len;
    }
    out
}

/// 16 bytes as a UUID's text, lowercase hex 8-4-4-4-12.
fn uuid_text(b: &[u8]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// SHA-256 (FIPS 180-4) as lowercase hex: `key_mode: sha256`, computed here, not by the filter.
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in msg.chunks(64) {
        let mut w = [0u32; 64];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                block[4 * i],
                block[4 * i + 1],
                block[4 * i + 2],
                block[4 * i + 3],
            ]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let mut v = h;
        for i in 0..64 {
            let s1 = v[4].rotate_right(6) ^ v[4].rotate_right(11) ^ v[4].rotate_right(25);
            let ch = (v[4] & v[5]) ^ (!v[4] & v[6]);
            let t1 = v[7]
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = v[0].rotate_right(2) ^ v[0].rotate_right(13) ^ v[0].rotate_right(22);
            let maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
            let t2 = s0.wrapping_add(maj);
            v = [
                t1.wrapping_add(t2),
                v[0],
                v[1],
                v[2],
                v[3].wrapping_add(t1),
                v[4],
                v[5],
                v[6],
            ];
        }
        for (a, b) in h.iter_mut().zip(v) {
            *a = a.wrapping_add(b);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}
