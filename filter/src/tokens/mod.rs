//! Token usage read from LLM API responses as they pass, chunk by chunk, with a small fixed
//! state: never the body. No host calls.
//!
//! Two layers. An SSE line splitter forwards only the payload of `data:` lines (a blank line
//! ends an event and resets the JSON layer); a plain JSON response goes to the JSON layer
//! whole. The JSON layer is a key-path tracker: it follows only the objects whose paths can
//! hold usage (`usage`, `usage.*_details`, and the same under a top-level `message` or
//! `response`), skips every other container by counting brackets, and records the numbers
//! and the model it meets on the paths below; the last value wins, so a stream's final
//! `usage` (OpenAI) or last `message_delta` (Anthropic) is what remains.
//!
//! | path (`usage.*` also under `message.` / `response.`; `usageMetadata` is Gemini's) | raw slot |
//! |---|---|
//! | `model`, `modelVersion`                                            | `model` |
//! | `usage.{prompt,input}_tokens`, `inputTokens`, `promptTokenCount`   | `INPUT` |
//! | `usage.{completion,output}_tokens`, `outputTokens`, `candidatesTokenCount` | `OUTPUT` |
//! | `usage.total_tokens`, `totalTokens`, `totalTokenCount`             | `TOTAL` |
//! | `*_tokens_details.cached_tokens`, `cache_read_input_tokens`, `cacheReadInputTokens`, `cachedContentTokenCount` | `CACHED` |
//! | `cache_creation_input_tokens`, `cacheWriteInputTokens`             | `CACHE_WRITE` |
//! | `*_tokens_details.reasoning_tokens`, `thoughtsTokenCount`          | `REASONING` |
//!
//! The raw slots keep each provider's meaning; `Usage::normalized` gives them one (input
//! with the cache parts, output with the reasoning). The provider is told by keys only one
//! of them sends (see `json::provider`), so the state stays fixed.
//!
//! What it does not understand (invalid JSON, `[DONE]`, a fraction, a negative number, an
//! escaped key or model) is ignored: an invalid payload stops the JSON layer until the next
//! SSE event, and values already complete stay.

use crate::swar::find_any;
use json::{Json, Lex};

/// Longest model name kept; a longer one is left out rather than cut.
pub const MODEL_MAX: usize = 96;
/// Longest key compared; the longest known one, `cache_creation_input_tokens`, has 27 bytes.
const KEY_MAX: usize = 28;
/// Objects followed at once: top, `message`/`response`, `usage`, `*_details`.
const DEPTH: usize = 4;

/// Indexes into `Usage::numbers`, and the event field each becomes.
pub const INPUT: usize = 0;
pub const OUTPUT: usize = 1;
pub const TOTAL: usize = 2;
pub const CACHED: usize = 3;
pub const CACHE_WRITE: usize = 4;
pub const REASONING: usize = 5;
pub const FIELDS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
];
/// Not a token count: the cost in nano-units of `llm.currency`, set by pricing.
pub const COST: usize = 6;
/// Event field: bytes past `llm.max_scan_bytes` were not read, and the numbers may be
/// incomplete.
pub const TRUNCATED_FIELD: &str = "tokens_truncated";
/// Event field: the response had a `content-encoding` (gzip, br, …) and was not read.
pub const ENCODED_FIELD: &str = "tokens_encoded";

const TRUNCATED: u16 = 1 << 8;
const ENCODED: u16 = 1 << 9;

/// Which API's shape the numbers were read from: it decides what they mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum Provider {
    #[default]
    Unknown = 0,
    OpenAi = 1,
    Anthropic = 2,
    Gemini = 3,
    Bedrock = 4,
}

impl Provider {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Provider::Unknown => None,
            Provider::OpenAi => Some("openai"),
            Provider::Anthropic => Some("anthropic"),
            Provider::Gemini => Some("gemini"),
            Provider::Bedrock => Some("bedrock"),
        }
    }
    pub fn from_u8(b: u8) -> Provider {
        match b {
            1 => Provider::OpenAi,
            2 => Provider::Anthropic,
            3 => Provider::Gemini,
            4 => Provider::Bedrock,
            _ => Provider::Unknown,
        }
    }
}

/// What a response said about its tokens: six counts and a cost, each present or not, two
/// flags and the provider. The scanner holds the provider's own numbers; `normalized` gives
/// the event's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub numbers: [u64; 7],
    /// Bit `i` (0..7): `numbers[i]` is present; then `TRUNCATED`, `ENCODED`.
    pub flags: u16,
    pub provider: Provider,
}

impl Usage {
    pub fn get(&self, i: usize) -> Option<u64> {
        (self.flags & (1 << i) != 0).then(|| self.numbers[i])
    }
    pub fn set(&mut self, i: usize, n: u64) {
        self.numbers[i] = n;
        self.flags |= 1 << i;
    }
    pub fn truncated(&self) -> bool {
        self.flags & TRUNCATED != 0
    }
    pub fn encoded(&self) -> bool {
        self.flags & ENCODED != 0
    }
    pub fn is_empty(&self) -> bool {
        self.flags == 0
    }
    /// Any token count at all (what a price applies to).
    pub fn has_tokens(&self) -> bool {
        self.flags & ((1 << FIELDS.len()) - 1) != 0
    }

    /// The provider's numbers given one meaning: `input_tokens` counts cached and
    /// cache-write tokens, `output_tokens` counts reasoning, `total_tokens` is their sum.
    /// Anthropic and Bedrock report input without the cache parts, Gemini output without
    /// the thoughts; OpenAI's numbers already mean this.
    pub fn normalized(self) -> Usage {
        let mut u = self;
        let part = |i| self.get(i).unwrap_or(0);
        match self.provider {
            Provider::Anthropic | Provider::Bedrock => {
                if let Some(n) = self.get(INPUT) {
                    u.set(
                        INPUT,
                        n.saturating_add(part(CACHED))
                            .saturating_add(part(CACHE_WRITE)),
                    );
                }
            }
            Provider::Gemini => {
                if self.get(OUTPUT).is_some() || self.get(REASONING).is_some() {
                    u.set(OUTPUT, part(OUTPUT).saturating_add(part(REASONING)));
                }
            }
            Provider::OpenAi | Provider::Unknown => {}
        }
        if let (Some(i), Some(o)) = (u.get(INPUT), u.get(OUTPUT)) {
            u.set(TOTAL, i.saturating_add(o));
        }
        u
    }
}

/// How the body is framed, from its `content-type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Framing {
    #[default]
    Json,
    Sse,
}

/// `application/json` or `text/event-stream` (parameters and case ignored); else None.
pub fn framing(content_type: &[u8]) -> Option<Framing> {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    let media = media.trim_ascii();
    if media.eq_ignore_ascii_case(b"application/json") {
        Some(Framing::Json)
    } else if media.eq_ignore_ascii_case(b"text/event-stream") {
        Some(Framing::Sse)
    } else {
        None
    }
}

/// No `content-encoding`, or `identity`: the bytes are the text.
pub fn is_identity(content_encoding: Option<&[u8]>) -> bool {
    content_encoding.is_none_or(|e| {
        let e = e.trim_ascii();
        e.is_empty() || e.eq_ignore_ascii_case(b"identity")
    })
}

/// Where the SSE splitter is within a line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Line {
    /// At the start of a line, with this many bytes of `data:` matched.
    #[default]
    Start,
    Prefix(u8),
    /// Just after `data:`: one space may follow.
    Space,
    Data,
    /// Another field (`event:`, `id:`, a `:` comment): ignored to the end of the line.
    Ignore,
}

const DATA: &[u8; 5] = b"data:";

/// One response's scan: the framing, the budget, what was found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scanner {
    framing: Framing,
    json: Json,
    line: Line,
    /// The last byte was a CR: a LF right after it ends no second line.
    cr: bool,
    /// Bytes the budget still allows.
    left: u64,
    /// Reading: a JSON or SSE response with identity encoding, not truncated.
    active: bool,
}

impl Scanner {
    /// A response that will be inspected; the framing is decided by `start`.
    pub fn new(max_scan_bytes: u64) -> Self {
        Scanner {
            left: max_scan_bytes,
            ..Default::default()
        }
    }

    /// The response headers: false when this response is not one to read (the caller then
    /// drops the scan: no fields). An encoded JSON or SSE response is not read but says so.
    pub fn start(&mut self, content_type: Option<&[u8]>, content_encoding: Option<&[u8]>) -> bool {
        let Some(framing) = content_type.and_then(framing) else {
            return false;
        };
        self.framing = framing;
        if is_identity(content_encoding) {
            self.active = true;
        } else {
            self.json.usage.flags |= ENCODED;
        }
        true
    }

    /// Nothing more can change what was found: a JSON body's top-level object closed, or it
    /// is not JSON.
    pub fn finished(&self) -> bool {
        self.framing == Framing::Json && matches!(self.json.lex, Lex::Done | Lex::Dead)
    }

    /// How many bytes of a body chunk of `n` to read: 0 when none are wanted. A chunk the
    /// budget cannot cover ends the scan, flagged truncated unless it had finished.
    pub fn want(&mut self, n: usize) -> usize {
        if !self.active || n == 0 {
            return 0;
        }
        if self.finished() {
            self.active = false;
            return 0;
        }
        if self.left == 0 {
            self.stop_truncated();
            return 0;
        }
        n.min(usize::try_from(self.left).unwrap_or(usize::MAX))
    }

    /// The bytes read of a chunk of `n` (`want(n)` of them, or fewer if the host gave less).
    pub fn fed(&mut self, n: usize, bytes: &[u8]) {
        self.feed(bytes);
        self.left = self.left.saturating_sub(bytes.len() as u64);
        if bytes.len() < n && !self.finished() {
            self.stop_truncated();
        }
    }

    fn stop_truncated(&mut self) {
        self.active = false;
        self.json.usage.flags |= TRUNCATED;
    }

    /// Scans the next bytes of the body, whatever the chunking.
    pub fn feed(&mut self, bytes: &[u8]) {
        match self.framing {
            Framing::Json => self.json.feed(bytes),
            Framing::Sse => self.feed_sse(bytes),
        }
    }

    fn feed_sse(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.cr && b == b'\n' {
                self.cr = false;
                i += 1;
                continue;
            }
            self.cr = false;
            if b == b'\n' || b == b'\r' {
                self.cr = b == b'\r';
                if self.line == Line::Start {
                    // a blank line: the event ends
                    self.json.reset();
                } else if matches!(self.line, Line::Space | Line::Data) {
                    // data lines of one event join with a newline (whitespace to JSON)
                    self.json.feed(b"\n");
                }
                self.line = Line::Start;
                i += 1;
                continue;
            }
            match self.line {
                Line::Start | Line::Prefix(_) => {
                    let n = match self.line {
                        Line::Prefix(n) => n as usize,
                        _ => 0,
                    };
                    self.line = if b != DATA[n] {
                        Line::Ignore
                    } else if n + 1 == DATA.len() {
                        Line::Space
                    } else {
                        Line::Prefix(n as u8 + 1)
                    };
                    i += 1;
                }
                Line::Space => {
                    self.line = Line::Data;
                    if b == b' ' {
                        i += 1;
                    }
                }
                Line::Data => {
                    let run = &bytes[i..];
                    let end = find_any(run, [b'\n', b'\r']).unwrap_or(run.len());
                    self.json.feed(&run[..end]);
                    i += end;
                }
                Line::Ignore => {
                    let run = &bytes[i..];
                    i += find_any(run, [b'\n', b'\r']).unwrap_or(run.len());
                }
            }
        }
    }

    /// What was read, in the provider's own meaning (the tests compare it).
    #[cfg(test)]
    pub fn raw_usage(&self) -> Usage {
        self.json.usage
    }

    /// What was read, in the event's meaning (`Usage::normalized`).
    pub fn usage(&self) -> Usage {
        self.json.usage.normalized()
    }

    pub fn model(&self) -> Option<&[u8]> {
        match self.json.model_len {
            0 => None,
            n => self.json.model.get(..n as usize),
        }
    }
}

#[cfg(test)]
mod corpus;
mod json;
pub mod path;
pub mod price;
pub mod request;
#[cfg(test)]
mod tests;
