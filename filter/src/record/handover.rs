//! Records packed for a shared-queue hand-over, and unpacked in the service: the bytes a
//! worker enqueues, read back without trusting them.

use super::{Extra, Record, FIXED};
use crate::tokens::{Provider, Usage};

/// Records packed for a shared-queue hand-over: the record count as a little-endian u32,
/// then per record its fixed part and its text. The count lets the receiver know how many
/// a damaged message lost.
pub fn pack<'a>(records: impl Iterator<Item = &'a Record> + Clone) -> Vec<u8> {
    let (count, size) = records.clone().fold((0u32, 4), |(n, s), r| {
        let usage = if r.usage().is_some() { USAGE } else { 0 };
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
        match r.usage() {
            None => out.push(0),
            Some(u) => {
                out.push(1);
                out.extend_from_slice(&u.flags.to_le_bytes());
                out.push(u.provider as u8);
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

/// id, four u64, status, the fixed strings' ends, present, usage tag, text length.
const HEAD: usize = 16 + 32 + 4 + 4 * FIXED + 1 + 1 + 4;
/// A usage after its tag: flags (u16), provider and seven u64.
const USAGE: usize = 2 + 1 + 56;

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
            let flags = u16::from_le_bytes(r.take::<2>()?);
            let provider = Provider::from_u8(r.take::<1>()?[0]);
            let mut numbers = [0u64; 7];
            for n in &mut numbers {
                *n = r.u64()?;
            }
            Some(Usage {
                numbers,
                flags,
                provider,
            })
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
    Some(Some(Record(Box::new(super::Data {
        id,
        response_time_ms,
        completed_unix_ns,
        request_size,
        response_size,
        status_code,
        ends,
        present,
        extra: usage.map(|usage| {
            std::rc::Rc::new(Extra {
                usage: Some(usage),
                element: None,
            })
        }),
        text,
    }))))
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
mod tests {
    use super::*;
    use crate::event::{Event, Tokens};
    use crate::record::tests::{llm_sample, sample};

    #[test]
    fn tokens_survive_the_record_and_the_hand_over() {
        let e = llm_sample();
        let r = Record::from_event(&e);
        assert_eq!(format!("{:?}", r.event()), format!("{e:?}"));
        let no_model = Event {
            tokens: Some(Tokens {
                model: None,
                usage: e.tokens.as_ref().unwrap().usage,
                currency: None,
                unpriced: false,
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
