//! Every configuration key, once: its full path, the default users are shown and the rule its
//! value follows. The walk reads each key through its row here, so a range or a default is
//! written nowhere else, and a test holds the table in docs/configuration.md to these rows.

use super::types::{Compression, DispatcherMode, Format, KeyMode, LogOutput, PropertyAs};

pub const DEFAULT_KEY_HEADER: &str = "x-subscription-key";
pub const DEFAULT_EVENTS_PATH: &str = "/api/v1/usage/events";
pub const DEFAULT_HTTP_NAME: &str = "default";

/// One row of the table, whatever its kind.
pub trait Key {
    fn path(&self) -> &'static str;
    // `shown` and `rule` are the table's text: only the test that holds docs/configuration.md
    // to these rows reads them.
    /// The default as docs/configuration.md shows it; `None` for a section, which it does not list.
    #[cfg_attr(not(test), allow(dead_code))]
    fn shown(&self) -> Option<String>;
    #[cfg_attr(not(test), allow(dead_code))]
    fn rule(&self) -> String;

    /// The last segment: how the key is spelled inside its section.
    fn name(&self) -> &'static str {
        let path = self.path();
        path.rsplit_once('.').map_or(path, |(_, name)| name)
    }
}

/// `true` or `false`.
pub struct Flag {
    pub path: &'static str,
    pub default: bool,
}

/// A whole number in `min..=max`.
pub struct Int {
    pub path: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

/// One of a fixed set of names, each standing for a value of `T`.
pub struct Choice<T: 'static> {
    pub path: &'static str,
    pub default: T,
    pub options: &'static [(&'static str, T)],
}

/// A string that must not be blank.
pub struct Text {
    pub path: &'static str,
    pub default: &'static str,
}

/// A key whose shape (a list, a map, a URL, a default taken from another key) is checked by
/// hand in the walk; `rule` says what that code accepts.
#[cfg_attr(not(test), allow(dead_code))]
pub struct Other {
    pub path: &'static str,
    pub shown: &'static str,
    pub rule: &'static str,
}

/// A JSON object holding the rows whose path continues below it.
pub struct Section {
    pub path: &'static str,
}

pub const ENABLED: Flag = Flag {
    path: "enabled",
    default: false,
};
pub const SUBSCRIPTION_KEY_HEADER: Text = Text {
    path: "subscription_key_header",
    default: DEFAULT_KEY_HEADER,
};
pub const REQUIRE_KEY: Flag = Flag {
    path: "require_key",
    default: true,
};
pub const KEY_MODE: Choice<KeyMode> = Choice {
    path: "key_mode",
    default: KeyMode::Raw,
    options: &[
        ("raw", KeyMode::Raw),
        ("sha256", KeyMode::Sha256),
        ("redact", KeyMode::Redact),
    ],
};
pub const EXCLUDE_PATHS: Other = Other {
    path: "exclude_paths",
    shown: "[]",
    rule: "array of path prefixes, each starting with '/'",
};
pub const ATTRIBUTES: Other = Other {
    path: "attributes",
    shown: "{}",
    rule: "object of {\"<field>\": {\"header\": NAME} | {\"query\": NAME} | {\"property\": [segment, ...], \"as\": string|double|int|bool}}; <field> not an event field",
};
pub const SINKS: Other = Other {
    path: "sinks",
    shown: "[\"log\"]",
    rule: "non-empty array of \"log\" and/or \"http\", each at most once",
};
pub const LOG_OUTPUT: Choice<LogOutput> = Choice {
    path: "log_output",
    default: LogOutput::HostLog,
    options: &[
        ("host_log", LogOutput::HostLog),
        ("filter_state", LogOutput::FilterState),
        ("both", LogOutput::Both),
    ],
};
pub const HTTP: Section = Section { path: "http" };
/// Also unique among the destinations of an `http` array.
pub const HTTP_NAME: Other = Other {
    path: "http.name",
    shown: DEFAULT_HTTP_NAME,
    rule: "1 to 32 characters of [a-z0-9_], unique among the destinations of an http array",
};
pub const HTTP_CLUSTER: Other = Other {
    path: "http.cluster",
    shown: "—",
    rule: "non-empty string; required when \"http\" is a sink, unless http.url gives it",
};
pub const HTTP_AUTHORITY: Other = Other {
    path: "http.authority",
    shown: "= cluster",
    rule: "non-empty string (from http.url when given)",
};
pub const HTTP_PATH: Other = Other {
    path: "http.path",
    shown: DEFAULT_EVENTS_PATH,
    rule: "string starting with '/'; not together with http.url",
};
pub const HTTP_URL: Other = Other {
    path: "http.url",
    shown: "—",
    rule: "http://host[:port]/path (or https://), port 1..=65535; sets authority, path and, if unset, cluster",
};
pub const HTTP_FORMAT: Choice<Format> = Choice {
    path: "http.format",
    default: Format::Veil,
    options: &[
        ("veil", Format::Veil),
        ("ndjson", Format::Ndjson),
        ("json", Format::Json),
        ("cloudevents", Format::CloudEvents),
        ("kafka-rest", Format::KafkaRest),
    ],
};
pub const HTTP_HEADERS: Other = Other {
    path: "http.headers",
    shown: "{}",
    rule: "object of header name to string; \"${NAME}\" is read from the VM's environment",
};
pub const HTTP_TIMEOUT_MS: Int = Int {
    path: "http.timeout_ms",
    default: 5000,
    min: 1,
    max: 600_000,
};
/// Also at most http.buffer_size.
pub const HTTP_BATCH_SIZE: Int = Int {
    path: "http.batch_size",
    default: 100,
    min: 1,
    max: 100_000,
};
/// Read as a whole number in `HTTP_BATCH_SIZE`'s range, defaulting to the `batch_size` read;
/// also at least that and at most http.buffer_size (config/http.rs).
pub const HTTP_BACKLOG_BATCH_SIZE: Other = Other {
    path: "http.backlog_batch_size",
    shown: "= batch_size",
    rule: "whole number 1..=100000, >= http.batch_size and <= http.buffer_size; above http.batch_size only when http.buffer_size can hold more than http.max_in_flight × http.batch_size waiting events",
};
pub const HTTP_MAX_BATCH_BYTES: Int = Int {
    path: "http.max_batch_bytes",
    default: 1_048_576,
    min: 1024,
    max: 64 * 1024 * 1024,
};
pub const HTTP_FLUSH_INTERVAL_MS: Int = Int {
    path: "http.flush_interval_ms",
    default: 1000,
    min: 1,
    max: 3_600_000,
};
pub const HTTP_BUFFER_SIZE: Int = Int {
    path: "http.buffer_size",
    default: 10_000,
    min: 1,
    max: 10_000_000,
};
pub const HTTP_MAX_IN_FLIGHT: Int = Int {
    path: "http.max_in_flight",
    default: 2,
    min: 1,
    max: 1000,
};
pub const HTTP_RETRY: Section = Section { path: "http.retry" };
pub const RETRY_MAX_ATTEMPTS: Int = Int {
    path: "http.retry.max_attempts",
    default: 3,
    min: 1,
    max: 100,
};
pub const RETRY_INITIAL_BACKOFF_MS: Int = Int {
    path: "http.retry.initial_backoff_ms",
    default: 200,
    min: 1,
    max: 3_600_000,
};
/// Also at least http.retry.initial_backoff_ms.
pub const RETRY_MAX_BACKOFF_MS: Int = Int {
    path: "http.retry.max_backoff_ms",
    default: 10_000,
    min: 1,
    max: 3_600_000,
};
pub const HTTP_COMPRESSION: Choice<Compression> = Choice {
    path: "http.compression",
    default: Compression::None,
    options: &[("none", Compression::None), ("gzip", Compression::Gzip)],
};
pub const HTTP_CLOUDEVENTS: Section = Section {
    path: "http.cloudevents",
};
pub const CLOUDEVENTS_TYPE: Text = Text {
    path: "http.cloudevents.type",
    default: "api.usage",
};
pub const CLOUDEVENTS_SOURCE: Text = Text {
    path: "http.cloudevents.source",
    default: "usage-filter",
};
pub const DISPATCHER: Section = Section { path: "dispatcher" };
/// "shared_queue" also needs "http" in sinks (see `check_role`).
pub const DISPATCHER_MODE: Choice<DispatcherMode> = Choice {
    path: "dispatcher.mode",
    default: DispatcherMode::Local,
    options: &[
        ("local", DispatcherMode::Local),
        ("shared_queue", DispatcherMode::SharedQueue),
    ],
};
pub const DISPATCHER_VM_ID: Text = Text {
    path: "dispatcher.vm_id",
    default: "usage_service",
};
pub const DISPATCHER_QUEUE: Text = Text {
    path: "dispatcher.queue",
    default: "usage_events",
};
/// True also needs dispatcher.mode "shared_queue" and "http" in sinks (see `check_role`).
pub const DISPATCHER_SERVICE: Flag = Flag {
    path: "dispatcher.service",
    default: false,
};

pub const SUBSCRIPTION_KEY_PROPERTY: Other = Other {
    path: "subscription_key_property",
    shown: "—",
    rule: "non-empty array of non-empty strings: a property path, read in place of subscription_key_header",
};
/// How `subscription_key_property` is read; "bool" is not a key.
pub const SUBSCRIPTION_KEY_PROPERTY_AS: Choice<PropertyAs> = Choice {
    path: "subscription_key_property_as",
    default: PropertyAs::String,
    options: &[
        ("string", PropertyAs::String),
        ("double", PropertyAs::Double),
        ("int", PropertyAs::Int),
    ],
};
/// How an attribute's `{"property": …}` is read (`attributes.<name>.as`).
pub const PROPERTY_AS: Choice<PropertyAs> = Choice {
    path: "attributes.<name>.as",
    default: PropertyAs::String,
    options: &[
        ("string", PropertyAs::String),
        ("double", PropertyAs::Double),
        ("int", PropertyAs::Int),
        ("bool", PropertyAs::Bool),
    ],
};
pub const PATH_TEMPLATES: Other = Other {
    path: "path_templates",
    shown: "[]",
    rule: "array of at most 1000 route templates, each starting with '/'; {name} a whole segment, {*name} only last",
};
pub const HTTP_KAFKA_KEY: Other = Other {
    path: "http.kafka_key",
    shown: "subscription_key",
    rule: "\"subscription_key\" or the name of one of the attributes",
};

pub const LLM: Section = Section { path: "llm" };
pub const LLM_ENABLED: Flag = Flag {
    path: "llm.enabled",
    default: false,
};
pub const LLM_MAX_SCAN_BYTES: Int = Int {
    path: "llm.max_scan_bytes",
    default: 65_536,
    min: 1,
    max: 64 * 1024 * 1024,
};
pub const LLM_PATHS: Other = Other {
    path: "llm.paths",
    shown: "all",
    rule: "non-empty array of path prefixes, each starting with '/' (leave it out for every path)",
};

pub const LLM_PRICES: Other = Other {
    path: "llm.prices",
    shown: "{}",
    rule: "object: model name (a trailing '*' matches by prefix) -> {\"input\", \"output\" required; \"cached_input\", \"cache_write_input\" optional}, each a price per million tokens >= 0 with at most 9 decimals",
};
pub const LLM_CURRENCY: Text = Text {
    path: "llm.currency",
    default: "USD",
};
pub const LLM_FORCE_STREAM_USAGE: Flag = Flag {
    path: "llm.force_stream_usage",
    default: false,
};
pub const LLM_MAX_REQUEST_BYTES: Int = Int {
    path: "llm.max_request_bytes",
    default: 1_048_576,
    min: 1,
    max: 64 * 1024 * 1024,
};
pub const LLM_FILTER_STATE: Flag = Flag {
    path: "llm.filter_state",
    default: false,
};

/// The table. Within a section, this order is the order an "unknown key" refusal lists the
/// known keys in.
pub const ALL: &[&dyn Key] = &[
    &ENABLED,
    &SUBSCRIPTION_KEY_HEADER,
    &REQUIRE_KEY,
    &KEY_MODE,
    &EXCLUDE_PATHS,
    &ATTRIBUTES,
    &SINKS,
    &LOG_OUTPUT,
    &HTTP,
    &HTTP_CLUSTER,
    &HTTP_AUTHORITY,
    &HTTP_PATH,
    &HTTP_URL,
    &HTTP_FORMAT,
    &HTTP_HEADERS,
    &HTTP_TIMEOUT_MS,
    &HTTP_BATCH_SIZE,
    &HTTP_BACKLOG_BATCH_SIZE,
    &HTTP_MAX_BATCH_BYTES,
    &HTTP_FLUSH_INTERVAL_MS,
    &HTTP_BUFFER_SIZE,
    &HTTP_MAX_IN_FLIGHT,
    &HTTP_RETRY,
    &RETRY_MAX_ATTEMPTS,
    &RETRY_INITIAL_BACKOFF_MS,
    &RETRY_MAX_BACKOFF_MS,
    &HTTP_COMPRESSION,
    &DISPATCHER,
    &DISPATCHER_MODE,
    &DISPATCHER_VM_ID,
    &DISPATCHER_QUEUE,
    &DISPATCHER_SERVICE,
    &LLM,
    &LLM_ENABLED,
    &LLM_MAX_SCAN_BYTES,
    &LLM_PATHS,
    &LLM_PRICES,
    &LLM_CURRENCY,
    &LLM_FORCE_STREAM_USAGE,
    &LLM_MAX_REQUEST_BYTES,
    &LLM_FILTER_STATE,
    &SUBSCRIPTION_KEY_PROPERTY,
    &SUBSCRIPTION_KEY_PROPERTY_AS,
    &PATH_TEMPLATES,
    &HTTP_KAFKA_KEY,
    &HTTP_NAME,
    &HTTP_CLOUDEVENTS,
    &CLOUDEVENTS_TYPE,
    &CLOUDEVENTS_SOURCE,
];

/// The names a section (`""` for the root) accepts.
pub fn children(section: &str) -> Vec<&'static str> {
    ALL.iter()
        .filter(|k| k.path().rsplit_once('.').map_or("", |(parent, _)| parent) == section)
        .map(|k| k.name())
        .collect()
}

impl Key for Flag {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        Some(self.default.to_string())
    }
    fn rule(&self) -> String {
        "true or false".into()
    }
}

impl Key for Int {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        Some(self.default.to_string())
    }
    fn rule(&self) -> String {
        format!("whole number {}..={}", self.min, self.max)
    }
}

impl<T: Copy + PartialEq> Key for Choice<T> {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        self.options
            .iter()
            .find(|(_, v)| *v == self.default)
            .map(|(n, _)| n.to_string())
    }
    fn rule(&self) -> String {
        format!("one of {}", self.names())
    }
}

impl<T> Choice<T> {
    /// `a, b, c`: how refusals list the options.
    pub fn names(&self) -> String {
        let names: Vec<&str> = self.options.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    }
}

impl Key for Text {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        Some(self.default.to_string())
    }
    fn rule(&self) -> String {
        "non-empty string".into()
    }
}

impl Key for Other {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        Some(self.shown.to_string())
    }
    fn rule(&self) -> String {
        self.rule.to_string()
    }
}

impl Key for Section {
    fn path(&self) -> &'static str {
        self.path
    }
    fn shown(&self) -> Option<String> {
        None
    }
    fn rule(&self) -> String {
        format!("object of the {}.* keys", self.path)
    }
}

#[cfg(test)]
mod tests;
