//! The compact record an event is held as while it waits for its batch: the numbers, and its
//! strings back to back in one allocation. Encoding into a wire format happens when the
//! batch body is built (off the request path; in `shared_queue` mode in the service), and
//! straight into the body, so an event is never encoded twice nor copied from a JSON of its
//! own.

use crate::event::{Event, Tokens};
use crate::tokens::Usage;
use std::borrow::Cow;

/// Strings every record has, in `text` order.
const PATH: usize = 0;
const KEY: usize = 1;
const METHOD: usize = 2;
const REQUEST_ID: usize = 3;
const AUTHORITY: usize = 4;
const MODEL: usize = 5;
const FIXED: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: [u8; 16],
    pub response_time_ms: u64,
    pub completed_unix_ns: u64,
    pub request_size: u64,
    pub response_size: u64,
    pub status_code: u32,
    /// End of each fixed string in `text`.
    ends: [u32; FIXED],
    /// Bit `i` set: fixed string `i` is present (request id, authority, model are optional).
    present: u8,
    /// The token counts of an LLM response (`llm`): a pointer in every other record.
    usage: Option<Box<Usage>>,
    /// The fixed strings, then per attribute `[name len u32][value len u32] name value`.
    text: Vec<u8>,
}

impl Record {
    pub fn from_event(e: &Event<'_>) -> Record {
        let fixed: [Option<&str>; FIXED] = [
            Some(&e.api_path),
            Some(&e.subscription_key),
            Some(&e.method),
            e.request_id.as_deref(),
            e.authority.as_deref(),
            e.tokens.as_ref().and_then(|t| t.model.as_deref()),
        ];
        let attrs: usize = e
            .attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        let size = fixed.iter().flatten().map(|s| s.len()).sum::<usize>() + attrs;
        let mut text = Vec::with_capacity(size);
        let mut ends = [0u32; FIXED];
        let mut present = 0u8;
        for (i, s) in fixed.iter().enumerate() {
            if let Some(s) = s {
                text.extend_from_slice(s.as_bytes());
                present |= 1 << i;
            }
            ends[i] = text.len() as u32;
        }
        for (k, v) in &e.attributes {
            text.extend_from_slice(&(k.len() as u32).to_le_bytes());
            text.extend_from_slice(&(v.len() as u32).to_le_bytes());
            text.extend_from_slice(k.as_bytes());
            text.extend_from_slice(v.as_bytes());
        }
        Record {
            id: e.id,
            response_time_ms: e.response_time_ms,
            completed_unix_ns: e.completed_unix_ns,
            request_size: e.request_size,
            response_size: e.response_size,
            status_code: e.status_code,
            ends,
            present,
            usage: e.tokens.as_ref().map(|t| Box::new(t.usage)),
            text,
        }
    }

    fn fixed(&self, i: usize) -> Option<&str> {
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        let bytes = self.text.get(start..self.ends[i] as usize)?;
        // SAFETY: the fixed strings are UTF-8 cut on character boundaries: `from_event` copies
        // them from `str`s, and `unpack` refuses a record whose text or ends are not so.
        // (Validating again cost ~10% of encoding a batch.)
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    fn attributes(&self) -> Vec<(&str, Cow<'_, str>)> {
        let mut out = Vec::new();
        let mut rest = self
            .text
            .get(self.ends[FIXED - 1] as usize..)
            .unwrap_or_default();
        while let Some((lens, tail)) = rest.split_first_chunk::<8>() {
            let k = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
            let v = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]) as usize;
            let (Some(name), Some(value)) = (tail.get(..k), tail.get(k..k.saturating_add(v)))
            else {
                break;
            };
            if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                out.push((name, Cow::Borrowed(value)));
            }
            rest = tail.get(k + v..).unwrap_or_default();
        }
        out
    }

    /// The event again, borrowing the record's strings.
    pub fn event(&self) -> Event<'_> {
        let s = |i| Cow::Borrowed(self.fixed(i).unwrap_or(""));
        Event {
            id: self.id,
            api_path: s(PATH),
            subscription_key: s(KEY),
            method: s(METHOD),
            response_time_ms: self.response_time_ms,
            status_code: self.status_code,
            completed_unix_ns: self.completed_unix_ns,
            request_size: self.request_size,
            response_size: self.response_size,
            request_id: self.fixed(REQUEST_ID).map(Cow::Borrowed),
            authority: self.fixed(AUTHORITY).map(Cow::Borrowed),
            attributes: self.attributes(),
            tokens: self.usage.as_ref().map(|u| Tokens {
                model: self.fixed(MODEL).map(Cow::Borrowed),
                usage: **u,
            }),
        }
    }

    /// Bytes this event adds to a batch body, close enough for the byte trigger: its
    /// strings plus the names, numbers, id and timestamp around them.
    pub fn weight(&self) -> usize {
        self.text.len() + 300
    }
}

/// Records packed for a shared-queue hand-over: the record count as a little-endian u32,
/// then per record its fixed part and its text. The count lets the receiver know how many
/// a damaged message lost.
pub fn pack<'a>(records: impl Iterator<Item = &'a Record> + Clone) -> Vec<u8> {
    let (count, size) = records.clone().fold((0u32, 4), |(n, s), r| {
        let usage = if r.usage.is_some() { USAGE } else { 0 };
        (n + 1, s + HEAD + usage + r.text.len())
    });
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&count.to_le_bytes());
    for r in records {
        out.extend_from_slice(&r.id);
        for n in [
            r.response_time_ms,
            r.completed_unix_ns,
            r.request_size,
            r.response_size,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&r.status_code.to_le_bytes());
        for e in r.ends {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.push(r.present);
        match &r.usage {
            None => out.push(0),
            Some(u) => {
                out.push(1);
                out.push(u.flags);
                for n in u.numbers {
                    out.extend_from_slice(&n.to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&(r.text.len() as u32).to_le_bytes());
        out.extend_from_slice(&r.text);
    }
    out
}

/// id, four u64, status, six ends, present, usage tag, text length.
const HEAD: usize = 16 + 32 + 4 + 4 * FIXED + 1 + 1 + 4;
/// A usage after its tag: flags and four u64.
const USAGE: usize = 1 + 32;

/// What a hand-over message held: the records that decoded, and how many it announced but
/// could not deliver (truncated or inconsistent; a damaged record ends the message).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub records: Vec<Record>,
    pub lost: u64,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
}

/// The next record: `None` when the framing is broken (the rest of the message is lost),
/// `Some(None)` when this record's content is damaged (it alone is lost).
fn read_record(r: &mut Reader<'_>) -> Option<Option<Record>> {
    let id = r.take::<16>()?;
    let (response_time_ms, completed_unix_ns) = (r.u64()?, r.u64()?);
    let (request_size, response_size) = (r.u64()?, r.u64()?);
    let status_code = r.u32()?;
    let mut ends = [0u32; FIXED];
    for e in &mut ends {
        *e = r.u32()?;
    }
    let present = r.take::<1>()?[0];
    let usage = match r.take::<1>()?[0] {
        0 => None,
        _ => {
            let flags = r.take::<1>()?[0];
            let mut numbers = [0u64; 4];
            for n in &mut numbers {
                *n = r.u64()?;
            }
            Some(Box::new(Usage { numbers, flags }))
        }
    };
    let len = r.u32()? as usize;
    let text = r.0.get(..len)?.to_vec();
    r.0 = &r.0[len..];
    // Ends must rise within the text and cut it on character boundaries.
    let fixed_end = ends[FIXED - 1] as usize;
    let cuts_ok = ends.windows(2).all(|w| w[0] <= w[1]) && fixed_end <= len;
    let utf8 = std::str::from_utf8(&text[..fixed_end.min(len)]);
    let sound = match utf8 {
        Ok(t) => cuts_ok && ends.iter().all(|e| t.is_char_boundary(*e as usize)),
        Err(_) => false,
    };
    if !sound {
        return Some(None);
    }
    Some(Some(Record {
        id,
        response_time_ms,
        completed_unix_ns,
        request_size,
        response_size,
        status_code,
        ends,
        present,
        usage,
        text,
    }))
}

/// The inverse of `pack`.
pub fn unpack(bytes: &[u8]) -> Unpacked {
    let mut out = Unpacked::default();
    let mut r = Reader(bytes);
    let Some(announced) = r.u32() else {
        return out;
    };
    let mut read = 0u64;
    while read < u64::from(announced) {
        match read_record(&mut r) {
            Some(Some(rec)) => out.records.push(rec),
            Some(None) => {}
            None => break,
        }
        read += 1;
    }
    out.lost = u64::from(announced) - out.records.len() as u64;
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(key: &str) -> Event<'static> {
        Event {
            id: crate::event::uuid_v7(1_759_413_513_001, &[1; 10]),
            api_path: "/v1/things".into(),
            subscription_key: key.to_string().into(),
            method: "GET".into(),
            response_time_ms: 12,
            status_code: 200,
            completed_unix_ns: 1_759_413_513_001_748_123,
            request_size: 5,
            response_size: 512,
            request_id: Some("rid-1".into()),
            authority: None,
            attributes: vec![("org", "acme".into()), ("team", "ключ".into())],
            tokens: None,
        }
    }

    #[test]
    fn a_record_gives_back_the_event_it_was_made_from() {
        let e = sample("sk_1");
        let r = Record::from_event(&e);
        let back = r.event();
        assert_eq!(format!("{back:?}"), format!("{e:?}"));
        let plain = Event {
            subscription_key: "".into(),
            ..Default::default()
        };
        assert_eq!(
            format!("{:?}", Record::from_event(&plain).event()),
            format!("{plain:?}")
        );
    }

    fn llm_sample() -> Event<'static> {
        let usage = crate::tokens::Usage {
            numbers: [1117, 46, 1163, 1024],
            flags: 0b10_1111,
        };
        Event {
            tokens: Some(Tokens {
                model: Some("gpt-4o-2024-08-06".into()),
                usage,
            }),
            ..sample("sk_1")
        }
    }

    #[test]
    fn tokens_survive_the_record_and_the_hand_over() {
        let e = llm_sample();
        let r = Record::from_event(&e);
        assert_eq!(format!("{:?}", r.event()), format!("{e:?}"));
        let no_model = Event {
            tokens: Some(Tokens {
                model: None,
                usage: e.tokens.as_ref().unwrap().usage,
            }),
            ..sample("b")
        };
        let recs = vec![
            r,
            Record::from_event(&sample("a")),
            Record::from_event(&no_model),
        ];
        let packed = pack(recs.iter());
        assert_eq!(
            packed.len(),
            4 + recs.iter().map(|r| HEAD + r.text.len()).sum::<usize>() + 2 * USAGE
        );
        let back = unpack(&packed);
        assert_eq!((back.records, back.lost), (recs.clone(), 0));
        assert_eq!(format!("{:?}", recs[2].event()), format!("{no_model:?}"));
        // cut inside a usage: that record and the rest are lost, not misread
        let cut = unpack(&packed[..4 + HEAD + 10]);
        assert_eq!((cut.records.len(), cut.lost), (0, 3));
    }

    #[test]
    fn an_llm_record_stays_small() {
        let r = Record::from_event(&llm_sample());
        let heap = r.text.len() + std::mem::size_of::<crate::tokens::Usage>();
        assert!(
            std::mem::size_of::<Record>() + heap < 260,
            "{}",
            std::mem::size_of::<Record>() + heap
        );
    }

    #[test]
    fn a_record_is_smaller_than_its_json() {
        let r = Record::from_event(&sample("sk_live_0123456789abcdef"));
        assert!(std::mem::size_of::<Record>() + r.text.len() < 200);
    }

    #[test]
    fn pack_round_trips_and_counts_what_a_damaged_message_lost() {
        let recs = vec![
            Record::from_event(&sample("a")),
            Record::from_event(&sample("b")),
        ];
        let packed = pack(recs.iter());
        assert_eq!(
            unpack(&packed),
            Unpacked {
                records: recs.clone(),
                lost: 0
            }
        );
        let cut = unpack(&packed[..packed.len() - 1]);
        assert_eq!((cut.records, cut.lost), (recs[..1].to_vec(), 1));
        assert_eq!(unpack(&packed[..4]).lost, 2);
        assert!(unpack(b"garbage").records.is_empty());
        assert_eq!(unpack(&[0xff; 64]).lost, u32::MAX as u64);
        assert_eq!(unpack(b""), Unpacked::default());
        // a record whose ends do not rise is dropped alone; the next one still arrives
        let mut bad = packed.clone();
        let ends_at = 4 + 16 + 32 + 4;
        bad[ends_at..ends_at + 4].copy_from_slice(&1u32.to_le_bytes());
        bad[ends_at + 4..ends_at + 8].copy_from_slice(&0u32.to_le_bytes());
        let got = unpack(&bad);
        assert_eq!((got.records, got.lost), (recs[1..].to_vec(), 1));
        // so is one whose text is not UTF-8, or cut inside a character
        let mut bad = packed.clone();
        let text_at = 4 + HEAD;
        bad[text_at] = 0xff;
        assert_eq!(unpack(&bad).records, recs[1..].to_vec());
        let one = Record::from_event(&sample("ключ"));
        let mut bad = pack([one.clone(), one.clone()].iter());
        let key_end = 4 + 16 + 32 + 4 + 4;
        let inside = one.ends[0] + 1; // one byte into the key's first character
        bad[key_end..key_end + 4].copy_from_slice(&inside.to_le_bytes());
        assert_eq!(unpack(&bad).records, vec![one]);
    }
}
