//! The compact record an event is held as while it waits for its batch: the numbers, and its
//! strings back to back in one allocation. Encoding into a wire format happens when the
//! batch body is built (off the request path; in `shared_queue` mode in the service), and
//! straight into the body, so an event is never encoded twice nor copied from a JSON of its
//! own.

use crate::event::{AttrValue, Event, Fields, Tokens};
use crate::tokens::Usage;
use std::borrow::Cow;
use std::cell::OnceCell;
use std::rc::Rc;

pub mod handover;

/// Strings every record has, in `text` order.
const PATH: usize = 0;
const KEY: usize = 1;
const METHOD: usize = 2;
const REQUEST_ID: usize = 3;
const AUTHORITY: usize = 4;
const MODEL: usize = 5;
const ROUTE: usize = 6;
const CURRENCY: usize = 7;
const FIXED: usize = 8;

/// The high bit of an attribute's value length: the value is a JSON literal (a number or
/// boolean read from a property), not text.
const LITERAL: u32 = 1 << 31;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extra {
    usage: Option<Usage>,
    /// The event as one element of a batch body, for destinations that share a format:
    /// written by the first of them to cut a batch holding it, copied by the others.
    element: Option<OnceCell<Vec<u8>>>,
}

/// Boxed: a record is moved from the request into its destination's buffer, from there into
/// a batch, and a batch into the callout's slot; at ~110 bytes each move cost more than the
/// one small allocation that makes them a pointer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record(Box<Data>);

impl std::ops::Deref for Record {
    type Target = Data;
    fn deref(&self) -> &Data {
        &self.0
    }
}

impl std::ops::DerefMut for Record {
    fn deref_mut(&mut self) -> &mut Data {
        &mut self.0
    }
}

/// A record's numbers and strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub id: [u8; 16],
    pub response_time_ms: u64,
    pub completed_unix_ns: u64,
    pub request_size: u64,
    pub response_size: u64,
    pub status_code: u32,
    /// End of each fixed string in `text`.
    ends: [u32; FIXED],
    /// Bit `i` set: fixed string `i` is present (request id, authority, model, route are
    /// optional).
    present: u8,
    /// What most records lack, behind one pointer so they pay only for it: the token counts
    /// of an LLM response (`llm`), and the wire element several destinations share (shared
    /// by their copies of the record, hence counted).
    extra: Option<Rc<Extra>>,
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
            e.api_route.as_deref(),
            e.tokens.as_ref().and_then(|t| t.currency.as_deref()),
        ];
        let attrs: usize = e
            .attributes
            .iter()
            .map(|(k, v)| 8 + k.len() + v.as_str().len())
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
            let (s, flag) = match v {
                AttrValue::Text(s) => (s, 0),
                AttrValue::Literal(s) => (s, LITERAL),
            };
            text.extend_from_slice(&(k.len() as u32).to_le_bytes());
            text.extend_from_slice(&(s.len() as u32 | flag).to_le_bytes());
            text.extend_from_slice(k.as_bytes());
            text.extend_from_slice(s.as_bytes());
        }
        Record(Box::new(Data {
            id: e.id,
            response_time_ms: e.response_time_ms,
            completed_unix_ns: e.completed_unix_ns,
            request_size: e.request_size,
            response_size: e.response_size,
            status_code: e.status_code,
            ends,
            present,
            extra: e.tokens.as_ref().map(|t| {
                Rc::new(Extra {
                    usage: Some(t.usage),
                    element: None,
                })
            }),
            text,
        }))
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

    #[cfg(test)]
    fn attributes(&self) -> Vec<(&str, AttrValue<'_>)> {
        let mut out = Vec::new();
        self.each_attribute(&mut |name, value| {
            out.push((name, value.clone()));
            true
        });
        out
    }

    /// The event again, borrowing the record's strings.
    #[cfg(test)]
    pub fn event(&self) -> Event<'_> {
        Event {
            id: self.id,
            api_path: Cow::Borrowed(self.api_path()),
            subscription_key: Cow::Borrowed(self.subscription_key()),
            method: Cow::Borrowed(self.method()),
            response_time_ms: self.response_time_ms,
            status_code: self.status_code,
            completed_unix_ns: self.completed_unix_ns,
            request_size: self.request_size,
            response_size: self.response_size,
            request_id: self.request_id().map(Cow::Borrowed),
            authority: self.authority().map(Cow::Borrowed),
            api_route: self.api_route().map(Cow::Borrowed),
            attributes: self.attributes(),
            tokens: self.tokens(),
        }
    }

    pub(crate) fn usage(&self) -> Option<&Usage> {
        self.extra.as_ref()?.usage.as_ref()
    }

    /// Where the element shared by the destinations of one format is written once, when
    /// this record has such a place.
    pub fn element(&self) -> Option<&OnceCell<Vec<u8>>> {
        self.extra.as_ref()?.element.as_ref()
    }

    /// This record's extras with an empty place for an element: one allocation that the
    /// copies of the record for each destination sharing a format then share (`set_extra`).
    pub fn with_element(&self) -> Rc<Extra> {
        Rc::new(Extra {
            usage: self.usage().copied(),
            element: Some(OnceCell::new()),
        })
    }

    pub fn set_extra(&mut self, extra: Rc<Extra>) {
        self.extra = Some(extra);
    }

    /// Bytes this event adds to a batch body, close enough for the byte trigger: its
    /// strings plus the names, numbers, id and timestamp around them.
    pub fn weight(&self) -> usize {
        self.text.len() + 300
    }
}

impl Fields for Record {
    fn id(&self) -> &[u8; 16] {
        &self.id
    }
    fn api_path(&self) -> &str {
        self.fixed(PATH).unwrap_or_default()
    }
    fn subscription_key(&self) -> &str {
        self.fixed(KEY).unwrap_or_default()
    }
    fn method(&self) -> &str {
        self.fixed(METHOD).unwrap_or_default()
    }
    fn response_time_ms(&self) -> u64 {
        self.response_time_ms
    }
    fn status_code(&self) -> u32 {
        self.status_code
    }
    fn completed_unix_ns(&self) -> u64 {
        self.completed_unix_ns
    }
    fn request_size(&self) -> u64 {
        self.request_size
    }
    fn response_size(&self) -> u64 {
        self.response_size
    }
    fn request_id(&self) -> Option<&str> {
        self.fixed(REQUEST_ID)
    }
    fn authority(&self) -> Option<&str> {
        self.fixed(AUTHORITY)
    }
    fn api_route(&self) -> Option<&str> {
        self.fixed(ROUTE)
    }
    fn tokens(&self) -> Option<Tokens<'_>> {
        self.usage().map(|u| Tokens {
            model: self.fixed(MODEL).map(Cow::Borrowed),
            usage: *u,
            currency: self.fixed(CURRENCY).map(Cow::Borrowed),
            unpriced: false,
        })
    }

    fn each_attribute<'s>(&'s self, f: &mut dyn FnMut(&'s str, &AttrValue<'s>) -> bool) {
        let mut rest = self
            .text
            .get(self.ends[FIXED - 1] as usize..)
            .unwrap_or_default();
        while let Some((lens, tail)) = rest.split_first_chunk::<8>() {
            let k = u32::from_le_bytes([lens[0], lens[1], lens[2], lens[3]]) as usize;
            let v = u32::from_le_bytes([lens[4], lens[5], lens[6], lens[7]]);
            let literal = v & LITERAL != 0;
            let v = (v & !LITERAL) as usize;
            let (Some(name), Some(value)) = (tail.get(..k), tail.get(k..k.saturating_add(v)))
            else {
                break;
            };
            if let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) {
                let value = Cow::Borrowed(value);
                // A literal is written into JSON as it is: one from a hand-over message that
                // is not a number or boolean is written as text instead.
                let literal = literal && is_literal(&value);
                let value = match literal {
                    true => AttrValue::Literal(value),
                    false => AttrValue::Text(value),
                };
                if !f(name, &value) {
                    return;
                }
            }
            rest = tail.get(k + v..).unwrap_or_default();
        }
    }
}

/// What a property read as a number or boolean gives: `true`, `false`, or number characters.
fn is_literal(s: &str) -> bool {
    s == "true"
        || s == "false"
        || (!s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E')))
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
            api_route: None,
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

    #[test]
    fn a_route_and_literal_attributes_come_back_as_they_went_in() {
        let e = Event {
            api_route: Some("/v1/things/{id}".into()),
            attributes: vec![
                ("org", "acme".into()),
                ("seats", AttrValue::Literal("42".into())),
                ("admin", AttrValue::Literal("true".into())),
                ("plan", "42".into()),
            ],
            ..sample("sk_1")
        };
        let back = Record::from_event(&e);
        assert_eq!(format!("{:?}", back.event()), format!("{e:?}"));
        let packed = handover::pack([&back].into_iter());
        let un = handover::unpack(&packed);
        assert_eq!(format!("{:?}", un.records[0].event()), format!("{e:?}"));
    }

    #[test]
    fn only_numbers_and_booleans_are_literals() {
        for ok in ["42", "-1.5e+3", "true", "false"] {
            assert!(is_literal(ok), "{ok}");
        }
        for bad in ["", "\"x\"", "1,2", "nul", "{}"] {
            assert!(!is_literal(bad), "{bad}");
        }
    }

    pub(crate) fn llm_sample() -> Event<'static> {
        let usage = crate::tokens::Usage {
            numbers: [1117, 46, 1163, 1024, 0, 12, 3_250_000],
            flags: 0b10_0100_1111,
            provider: crate::tokens::Provider::OpenAi,
        };
        Event {
            tokens: Some(Tokens {
                model: Some("gpt-4o-2024-08-06".into()),
                usage,
                currency: Some("USD".into()),
                unpriced: false,
            }),
            ..sample("sk_1")
        }
    }

    #[test]
    fn an_llm_record_stays_small() {
        let r = Record::from_event(&llm_sample());
        let heap = r.text.len() + std::mem::size_of::<crate::tokens::Usage>();
        assert!(
            std::mem::size_of::<Record>() + heap < 300,
            "{}",
            std::mem::size_of::<Record>() + heap
        );
    }

    #[test]
    fn a_record_is_smaller_than_its_json() {
        let r = Record::from_event(&sample("sk_live_0123456789abcdef"));
        assert!(std::mem::size_of::<Record>() + r.text.len() < 200);
    }
}
