//! How a scripted collector (a test's, the fuzz's) answers each callout.

use crate::state::Callout;

/// How the host answers a callout when a test installs an automatic collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(u32),
    /// Status with headers, e.g. `Retry-After`.
    WithHeaders(u32, Vec<(String, String)>),
    /// Reset after it was sent: `on_http_call_response(token, 0, 0, 0)`.
    Reset,
    /// No answer: Envoy's timeout turns it into a 504 after `timeout_ms`.
    Hang,
}

/// How a test's scripted collector answers each callout.
pub(crate) type ScriptedCollector = Box<dyn FnMut(&Callout) -> Reply>;
