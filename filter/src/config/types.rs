//! The typed configuration: what `parse` produces and the rest of the filter reads.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    Raw,
    Sha256,
    Redact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Veil,
    Ndjson,
    Json,
    CloudEvents,
    KafkaRest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatcherMode {
    Local,
    SharedQueue,
}

/// Where the log sink writes its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// `proxy_log` at info: Envoy prefixes it and writes it to its own log (stderr).
    HostLog,
    /// Filter state `wasm.usage_event`, printed raw by an Envoy access logger on stdout.
    FilterState,
    Both,
}

pub use crate::property::PropertyAs;

/// A property path as configured, with the bytes the ABI takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The segments joined by NUL.
    pub path: Vec<u8>,
    pub as_: PropertyAs,
}

/// Where an attribute's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header (lowercased name), from the request map: no host call of its own.
    Header(String),
    /// A query-string parameter, from `:path`: no host call.
    Query(String),
    /// A host property: one host call per request, at the end of the request.
    Property(Property),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub field: String,
    pub source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// `http.name`: the destination in logs and (with an array) in metric names.
    pub name: String,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub format: Format,
    /// Extra headers with `${NAME}` already resolved from the VM environment.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub batch_size: usize,
    /// The most events a batch holds while a backlog waits (`Dispatcher::next_batch`);
    /// `batch_size` when not set.
    pub backlog_batch_size: usize,
    pub max_batch_bytes: usize,
    pub flush_interval_ms: u64,
    pub buffer_size: usize,
    pub max_in_flight: usize,
    pub retry: Retry,
    pub compression: Compression,
    /// The attribute whose value keys each `kafka-rest` record; `None`: the subscription key.
    pub kafka_key: Option<String>,
    /// `http.cloudevents.type` and `.source`: the `cloudevents` format's attributes.
    pub cloudevents_type: String,
    pub cloudevents_source: String,
}

/// The most destinations an `http` array may hold: each is a buffer and its own callouts in
/// every VM, and each adds its counters to every metrics scrape.
pub const MAX_DESTINATIONS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    pub mode: DispatcherMode,
    pub vm_id: String,
    pub queue: String,
    /// True in the singleton service VM that drains the shared queue.
    pub service: bool,
}

/// The `llm` section when `llm.enabled`: which responses are read for token usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Llm {
    pub max_scan_bytes: u64,
    /// `llm.prices`: empty, nothing is priced and nothing counted as unpriced.
    pub prices: crate::tokens::price::Prices,
    pub currency: String,
    /// Path prefixes to inspect; empty: every path.
    pub paths: Vec<String>,
    /// `llm.force_stream_usage`: OpenAI chat stream requests get `include_usage` added.
    pub force_stream_usage: bool,
    /// The most of a request body held for that rewrite.
    pub max_request_bytes: u64,
    /// `llm.filter_state`: what was read is published as filter state `wasm.usage.*`.
    pub filter_state: bool,
}

impl Llm {
    /// Whether a request on this path (query stripped) has its response read.
    pub fn inspects(&self, path: &[u8]) -> bool {
        self.paths.is_empty() || self.paths.iter().any(|p| path.starts_with(p.as_bytes()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub enabled: bool,
    pub subscription_key_header: String,
    pub require_key: bool,
    pub key_mode: KeyMode,
    pub exclude_paths: Vec<String>,
    pub attributes: Vec<Attribute>,
    /// When set, the key is this property, read at the end of the request, not the header.
    pub subscription_key_property: Option<Property>,
    /// `path_templates`, compiled: the event's `api_route`.
    pub routes: crate::routes::Routes,
    pub log_sink: bool,
    pub log_output: LogOutput,
    /// The destinations, in configured order; non-empty exactly when `http` is one of the
    /// sinks.
    pub http: Vec<Http>,
    /// `http` was an array: each destination's counters carry its name. A single object keeps
    /// the unnamed metric names.
    pub http_named: bool,
    pub dispatcher: DispatcherConfig,
    /// Present exactly when `llm.enabled`.
    pub llm: Option<Llm>,
}

/// What this VM does with finished events, decided once at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No http sink: events end as log lines, if anywhere.
    LogOnly,
    /// Batches and sends its own events.
    Local,
    /// Hands its events to the singleton service over the shared queue.
    QueueWorker,
    /// The singleton service: drains the shared queue, batches and sends for all workers.
    QueueService,
}

impl Config {
    /// `parse` refuses the combinations this would have to guess at (a service in local mode
    /// or without the http sink, a worker without the http sink), so on a parsed
    /// configuration every field agrees with the answer.
    pub fn role(&self) -> Role {
        match (
            self.http.is_empty(),
            self.dispatcher.mode,
            self.dispatcher.service,
        ) {
            (true, _, _) => Role::LogOnly,
            (false, DispatcherMode::Local, _) => Role::Local,
            (false, DispatcherMode::SharedQueue, false) => Role::QueueWorker,
            (false, DispatcherMode::SharedQueue, true) => Role::QueueService,
        }
    }
}

/// A refused configuration: which key, and which rule it broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid plugin configuration: {}: {}",
            self.key, self.rule
        )
    }
}

pub(super) fn err<T>(key: impl Into<String>, rule: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError {
        key: key.into(),
        rule: rule.into(),
    })
}

/// Fields an attribute may not be named after: they would collide in the event object.
pub const RESERVED_FIELDS: &[&str] = &[
    "id",
    "api_path",
    "subscription_key",
    "method",
    "response_time_ms",
    "status_code",
    "success",
    "timestamp",
    "request_size",
    "response_size",
    "request_id",
    "billable",
    "authority",
    "api_route",
    "time",
    "level",
    "msg",
    "event_type",
];

/// Fields the `llm` section adds, which an attribute may not be named after while it is on.
pub const LLM_FIELDS: &[&str] = &[
    "model",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_input_tokens",
    "cache_write_input_tokens",
    "reasoning_tokens",
    "provider",
    "cost",
    "currency",
    "tokens_truncated",
    "tokens_encoded",
];
