//! The JSON layer of the token scanner: a key-path tracker with fixed state that follows
//! only the objects whose paths can hold usage.

use super::{
    Provider, Usage, CACHED, CACHE_WRITE, DEPTH, INPUT, KEY_MAX, MODEL_MAX, OUTPUT, REASONING,
    TOTAL,
};
use crate::swar::find_any;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Node {
    #[default]
    Top,
    /// `message` (Anthropic's `message_start`) or `response` (OpenAI Responses events).
    Wrapped,
    Usage,
    Details,
}

/// What the value of the key just read means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Slot {
    #[default]
    Nothing,
    Model,
    Number(u8),
    Child(Node),
}

fn slot(node: Node, key: &[u8]) -> Slot {
    let n = |i: usize| Slot::Number(i as u8);
    match (node, key) {
        (Node::Top | Node::Wrapped, b"model") | (Node::Top, b"modelVersion") => Slot::Model,
        (Node::Top | Node::Wrapped, b"usage") | (Node::Top, b"usageMetadata") => {
            Slot::Child(Node::Usage)
        }
        (Node::Top, b"message" | b"response") => Slot::Child(Node::Wrapped),
        // OpenAI, Anthropic; Bedrock; Gemini
        (Node::Usage, b"prompt_tokens" | b"input_tokens") => n(INPUT),
        (Node::Usage, b"inputTokens" | b"promptTokenCount") => n(INPUT),
        (Node::Usage, b"completion_tokens" | b"output_tokens") => n(OUTPUT),
        (Node::Usage, b"outputTokens" | b"candidatesTokenCount") => n(OUTPUT),
        (Node::Usage, b"total_tokens" | b"totalTokens" | b"totalTokenCount") => n(TOTAL),
        (Node::Usage, b"cache_read_input_tokens" | b"cacheReadInputTokens") => n(CACHED),
        (Node::Usage, b"cachedContentTokenCount") => n(CACHED),
        (Node::Usage, b"cache_creation_input_tokens" | b"cacheWriteInputTokens") => n(CACHE_WRITE),
        (Node::Usage, b"thoughtsTokenCount") => n(REASONING),
        (
            Node::Usage,
            b"prompt_tokens_details"
            | b"input_tokens_details"
            | b"completion_tokens_details"
            | b"output_tokens_details",
        ) => Slot::Child(Node::Details),
        (Node::Details, b"cached_tokens") => n(CACHED),
        (Node::Details, b"reasoning_tokens") => n(REASONING),
        _ => Slot::Nothing,
    }
}

/// The provider a key betrays, wherever the scanner follows it: only OpenAI sends `object`
/// and `*_tokens` named `prompt`/`completion` or with `_details`; only Anthropic sends
/// `stop_reason`, a `message` wrapper or its cache counters; the camel-case names are
/// Gemini's (`usageMetadata`) and Bedrock's.
fn provider(node: Node, key: &[u8]) -> Provider {
    match (node, key) {
        (Node::Top | Node::Wrapped, b"object") | (Node::Top, b"response") => Provider::OpenAi,
        (Node::Usage, b"prompt_tokens" | b"completion_tokens") => Provider::OpenAi,
        (Node::Usage, k) if k.ends_with(b"_tokens_details") => Provider::OpenAi,
        (Node::Top | Node::Wrapped, b"stop_reason") | (Node::Top, b"message") => {
            Provider::Anthropic
        }
        (Node::Usage, b"cache_read_input_tokens" | b"cache_creation_input_tokens") => {
            Provider::Anthropic
        }
        (Node::Top, b"usageMetadata" | b"modelVersion") => Provider::Gemini,
        (Node::Usage, b"inputTokens" | b"outputTokens") => Provider::Bedrock,
        _ => Provider::Unknown,
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Lex {
    /// Before the top-level value.
    #[default]
    Start,
    /// After `{`: a key or `}`.
    ObjOpen,
    /// After `,` in an object: a key.
    KeyNext,
    Key,
    Colon,
    Value,
    Str,
    Num,
    /// `true`, `false`, `null`.
    Lit,
    /// After a member's value: `,` or `}`.
    After,
    /// Inside a container no path of ours goes through.
    Skip,
    /// The top-level object closed.
    Done,
    /// Not JSON this understands: nothing more until the next reset.
    Dead,
}

/// The JSON layer. Every field is fixed-size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Json {
    pub(super) lex: Lex,
    stack: [Node; DEPTH],
    depth: u8,
    esc: bool,
    /// Skip: inside a string, and how many brackets are open.
    skip_str: bool,
    skip_depth: u32,
    key: [u8; KEY_MAX],
    /// `KEY_MAX + 1`: too long or escaped, so none of ours.
    key_len: u8,
    slot: Slot,
    num: u64,
    num_ok: bool,
    /// The model string being read; copied to `model` when it closes.
    cap: [u8; MODEL_MAX],
    cap_len: u8,
    cap_ok: bool,
    pub(super) usage: Usage,
    pub(super) model: [u8; MODEL_MAX],
    pub(super) model_len: u8,
}

impl Default for Json {
    fn default() -> Self {
        Json {
            lex: Lex::Start,
            stack: [Node::Top; DEPTH],
            depth: 0,
            esc: false,
            skip_str: false,
            skip_depth: 0,
            key: [0; KEY_MAX],
            key_len: 0,
            slot: Slot::Nothing,
            num: 0,
            num_ok: false,
            cap: [0; MODEL_MAX],
            cap_len: 0,
            cap_ok: false,
            usage: Usage::default(),
            model: [0; MODEL_MAX],
            model_len: 0,
        }
    }
}

impl Json {
    /// A new top-level value may follow (the next SSE event); what was found stays.
    pub(super) fn reset(&mut self) {
        self.lex = Lex::Start;
        self.depth = 0;
    }

    fn node(&self) -> Node {
        self.stack[(self.depth as usize).saturating_sub(1) % DEPTH]
    }

    fn open(&mut self, node: Node) {
        self.stack[self.depth as usize % DEPTH] = node;
        self.depth += 1;
        self.lex = Lex::ObjOpen;
    }

    fn close(&mut self) {
        self.depth = self.depth.saturating_sub(1);
        self.lex = if self.depth == 0 {
            Lex::Done
        } else {
            Lex::After
        };
    }

    fn skip(&mut self) {
        self.lex = Lex::Skip;
        self.skip_depth = 1;
        self.skip_str = false;
        self.esc = false;
    }

    /// Reading a model name: every byte of the string is kept.
    fn capturing(&self) -> bool {
        self.slot == Slot::Model && self.cap_ok
    }

    pub(super) fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            // The states that cover most bytes move by whole runs, 8 bytes at a time.
            let run = &bytes[i..];
            let skip = match self.lex {
                Lex::Dead => return,
                Lex::Str if !self.esc => {
                    let p = find_any(run, [b'"', b'\\']);
                    if self.capturing() {
                        self.cap_bytes(&run[..p.unwrap_or(run.len())]);
                    }
                    p
                }
                Lex::Skip if self.skip_str && !self.esc => find_any(run, [b'"', b'\\']),
                Lex::Skip if !self.skip_str => find_any(run, [b'"', b'{', b'}', b'[', b']']),
                Lex::Key if !self.esc => {
                    let p = find_any(run, [b'"', b'\\']);
                    self.key_bytes(&run[..p.unwrap_or(run.len())]);
                    p
                }
                _ => Some(0),
            };
            match skip {
                Some(p) => i += p,
                None => return,
            }
            if self.byte(bytes[i]) {
                i += 1;
            }
        }
    }

    /// More of the model name being read; too long, and it is left out.
    fn cap_bytes(&mut self, part: &[u8]) {
        let at = self.cap_len as usize;
        match self.cap.get_mut(at..at + part.len()) {
            Some(dst) => {
                dst.copy_from_slice(part);
                self.cap_len += part.len() as u8;
            }
            None => self.cap_ok = false,
        }
    }

    /// More of the key being read.
    fn key_bytes(&mut self, part: &[u8]) {
        let at = self.key_len as usize;
        match self.key.get_mut(at..at + part.len()) {
            Some(dst) => {
                dst.copy_from_slice(part);
                self.key_len += part.len() as u8;
            }
            None => self.key_len = KEY_MAX as u8 + 1,
        }
    }

    /// One byte; false when the byte must be read again in the new state.
    fn byte(&mut self, b: u8) -> bool {
        let ws = matches!(b, b' ' | b'\t' | b'\n' | b'\r');
        match self.lex {
            Lex::Start | Lex::Done => match b {
                _ if ws => {}
                b'{' => {
                    self.depth = 0;
                    self.open(Node::Top);
                }
                _ => self.lex = Lex::Dead,
            },
            Lex::ObjOpen | Lex::KeyNext => match b {
                _ if ws => {}
                b'"' => {
                    self.lex = Lex::Key;
                    self.key_len = 0;
                    self.esc = false;
                }
                b'}' if self.lex == Lex::ObjOpen => self.close(),
                _ => self.lex = Lex::Dead,
            },
            Lex::Key => {
                if self.esc {
                    self.esc = false;
                } else if b == b'\\' {
                    self.esc = true;
                    self.key_len = KEY_MAX as u8 + 1;
                } else if b == b'"' {
                    self.lex = Lex::Colon;
                } else {
                    self.key_bytes(&[b]);
                }
            }
            Lex::Colon => match b {
                _ if ws => {}
                b':' => {
                    self.slot = match self.key.get(..self.key_len as usize) {
                        Some(k) => {
                            let p = provider(self.node(), k);
                            if p != Provider::Unknown {
                                self.usage.provider = p;
                            }
                            slot(self.node(), k)
                        }
                        None => Slot::Nothing,
                    };
                    self.lex = Lex::Value;
                }
                _ => self.lex = Lex::Dead,
            },
            Lex::Value => match b {
                _ if ws => {}
                b'{' => match self.slot {
                    Slot::Child(n) if (self.depth as usize) < DEPTH => self.open(n),
                    _ => self.skip(),
                },
                b'[' => self.skip(),
                b'"' => {
                    self.lex = Lex::Str;
                    self.esc = false;
                    self.cap_len = 0;
                    self.cap_ok = self.slot == Slot::Model;
                }
                b'0'..=b'9' => {
                    self.lex = Lex::Num;
                    self.num = u64::from(b - b'0');
                    self.num_ok = matches!(self.slot, Slot::Number(_));
                }
                b'-' => {
                    self.lex = Lex::Num;
                    self.num_ok = false;
                }
                b't' | b'f' | b'n' => self.lex = Lex::Lit,
                _ => self.lex = Lex::Dead,
            },
            Lex::Str => {
                if self.esc {
                    self.esc = false;
                    self.cap_ok = false;
                } else if b == b'\\' {
                    self.esc = true;
                } else if b == b'"' {
                    if self.slot == Slot::Model && self.cap_ok && self.cap_len > 0 {
                        self.model = self.cap;
                        self.model_len = self.cap_len;
                    }
                    self.lex = Lex::After;
                } else if self.capturing() {
                    self.cap_bytes(&[b]);
                }
            }
            Lex::Num => match b {
                b'0'..=b'9' => {
                    match self
                        .num
                        .checked_mul(10)
                        .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    {
                        Some(n) => self.num = n,
                        None => self.num_ok = false,
                    }
                }
                b'.' | b'e' | b'E' | b'+' | b'-' => self.num_ok = false,
                _ => {
                    if let (Slot::Number(i), true) = (self.slot, self.num_ok) {
                        self.usage.set(i as usize, self.num);
                    }
                    self.lex = Lex::After;
                    return false;
                }
            },
            Lex::Lit => {
                if !b.is_ascii_lowercase() {
                    self.lex = Lex::After;
                    return false;
                }
            }
            Lex::After => match b {
                _ if ws => {}
                b',' => self.lex = Lex::KeyNext,
                b'}' => self.close(),
                _ => self.lex = Lex::Dead,
            },
            Lex::Skip => {
                if self.skip_str {
                    if self.esc {
                        self.esc = false;
                    } else if b == b'\\' {
                        self.esc = true;
                    } else if b == b'"' {
                        self.skip_str = false;
                    }
                } else {
                    match b {
                        b'"' => self.skip_str = true,
                        b'{' | b'[' => self.skip_depth = self.skip_depth.saturating_add(1),
                        b'}' | b']' => {
                            self.skip_depth -= 1;
                            if self.skip_depth == 0 {
                                self.lex = Lex::After;
                            }
                        }
                        _ => {}
                    }
                }
            }
            Lex::Dead => {}
        }
        true
    }
}
