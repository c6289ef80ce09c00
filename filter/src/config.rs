//! Plugin configuration: parsed from the JSON Envoy hands the plugin, validated key by key.
//!
//! serde_json parses; the walk below checks each key so that every refusal names the full
//! key path (`http.retry.max_attempts`) and the rule it broke. serde's derive with
//! `deny_unknown_fields` would name neither the nesting nor the range.

use serde_json::{Map, Value};
use std::fmt;

pub const DEFAULT_KEY_HEADER: &str = "x-subscription-key";
pub const DEFAULT_EVENTS_PATH: &str = "/api/v1/usage/events";

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub field: String,
    pub header: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub format: Format,
    /// Extra headers with `${NAME}` already resolved from the VM environment.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub batch_size: usize,
    pub max_batch_bytes: usize,
    pub flush_interval_ms: u64,
    pub buffer_size: usize,
    pub max_in_flight: usize,
    pub retry: Retry,
    pub compression: Compression,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatcher {
    pub mode: DispatcherMode,
    pub vm_id: String,
    pub queue: String,
    /// True in the singleton service VM that drains the shared queue.
    pub service: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub enabled: bool,
    pub subscription_key_header: String,
    pub require_key: bool,
    pub key_mode: KeyMode,
    pub exclude_paths: Vec<String>,
    pub attributes: Vec<Attribute>,
    pub log_sink: bool,
    pub log_output: LogOutput,
    /// Present exactly when `http` is one of the sinks.
    pub http: Option<Http>,
    pub dispatcher: Dispatcher,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: false,
            subscription_key_header: DEFAULT_KEY_HEADER.to_string(),
            require_key: true,
            key_mode: KeyMode::Raw,
            exclude_paths: Vec::new(),
            attributes: Vec::new(),
            log_sink: true,
            log_output: LogOutput::HostLog,
            http: None,
            dispatcher: Dispatcher {
                mode: DispatcherMode::Local,
                vm_id: "usage_service".to_string(),
                queue: "usage_events".to_string(),
                service: false,
            },
        }
    }
}

/// What this VM does with finished events, decided once at configure time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    LogOnly,
    Local,
    QueueWorker,
    QueueService,
}

impl Config {
    pub fn role(&self) -> Role {
        match (&self.http, self.dispatcher.mode, self.dispatcher.service) {
            (None, _, _) => Role::LogOnly,
            (Some(_), DispatcherMode::Local, _) => Role::Local,
            (Some(_), DispatcherMode::SharedQueue, true) => Role::QueueService,
            (Some(_), DispatcherMode::SharedQueue, false) => Role::QueueWorker,
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

fn err<T>(key: impl Into<String>, rule: impl Into<String>) -> Result<T, ConfigError> {
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
    "time",
    "level",
    "msg",
    "event_type",
];

/// One JSON object's keys, read one at a time; whatever is left at the end is unknown.
struct Obj<'a> {
    prefix: String,
    map: Map<String, Value>,
    known: &'a [&'a str],
}

impl<'a> Obj<'a> {
    fn new(prefix: &str, value: Value, known: &'a [&'a str]) -> Result<Self, ConfigError> {
        match value {
            Value::Object(map) => Ok(Obj {
                prefix: prefix.to_string(),
                map,
                known,
            }),
            other => err(
                if prefix.is_empty() { "(root)" } else { prefix },
                format!("must be a JSON object, got {}", kind(&other)),
            ),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    fn bool(&mut self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => err(
                self.key(name),
                format!("must be a boolean, got {}", kind(&other)),
            ),
        }
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => err(
                self.key(name),
                format!("must be a string, got {}", kind(&other)),
            ),
        }
    }

    fn nonempty(&mut self, name: &str, default: &str) -> Result<String, ConfigError> {
        match self.string(name)? {
            None => Ok(default.to_string()),
            Some(s) if s.trim().is_empty() => err(self.key(name), "must not be empty"),
            Some(s) => Ok(s),
        }
    }

    /// Integers may arrive as `100.0`: Envoy turns a `google.protobuf.Struct` into JSON
    /// through doubles.
    fn int(&mut self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        let key = self.key(name);
        let v = match self.take(name) {
            None => return Ok(default),
            Some(v) => v,
        };
        let n = match &v {
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    Some(u)
                } else if let Some(f) = n.as_f64() {
                    if f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64 {
                        Some(f as u64)
                    } else if f < 0.0 {
                        return err(key, format!("must be between {min} and {max}, got {n}"));
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            _ => None,
        };
        match n {
            None => err(key, format!("must be a whole number, got {}", kind(&v))),
            Some(n) if n < min || n > max => {
                err(key, format!("must be between {min} and {max}, got {n}"))
            }
            Some(n) => Ok(n),
        }
    }

    fn choice<T: Copy>(
        &mut self,
        name: &str,
        default: T,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        match self.string(name)? {
            None => Ok(default),
            Some(s) => match options.iter().find(|(n, _)| *n == s) {
                Some((_, t)) => Ok(*t),
                None => err(
                    self.key(name),
                    format!(
                        "must be one of {}, got \"{}\"",
                        options
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                        s
                    ),
                ),
            },
        }
    }

    fn object(&mut self, name: &str) -> Result<Option<Value>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(other) => err(
                self.key(name),
                format!("must be a JSON object, got {}", kind(&other)),
            ),
        }
    }

    fn finish(self) -> Result<(), ConfigError> {
        let mut left: Vec<&String> = self.map.keys().collect();
        left.sort();
        match left.first() {
            None => Ok(()),
            Some(k) => err(
                self.key(k),
                format!("unknown key (known keys: {})", self.known.join(", ")),
            ),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses and validates the plugin configuration. `env` reads the VM's environment
/// (`ENABLE_EVENT_STREAMING`, `${NAME}` header values). An empty configuration means all
/// defaults.
pub fn parse(raw: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // Envoy 1.40 hands a `google.protobuf.Struct` configuration over in protobuf's binary
    // encoding; a StringValue arrives as its JSON text. A JSON object starts with `{`;
    // anything else is tried as a Struct, and else reported as JSON.
    let raw_json;
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    let raw = match (first, pb::decode_struct(raw)) {
        (Some(b'{') | None, _) | (_, None) => raw,
        (_, Some(v)) => {
            raw_json = v.to_string().into_bytes();
            &raw_json[..]
        }
    };
    let text = std::str::from_utf8(raw).map_err(|_| ConfigError {
        key: "(root)".into(),
        rule: format!(
            "must be UTF-8 JSON (got {} bytes starting {:02x?})",
            raw.len(),
            &raw[..raw.len().min(16)]
        ),
    })?;
    let value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str::<Value>(text).map_err(|e| ConfigError {
            key: "(root)".into(),
            rule: format!("must be valid JSON ({e})"),
        })?
    };
    const ROOT_KEYS: &[&str] = &[
        "enabled",
        "subscription_key_header",
        "require_key",
        "key_mode",
        "exclude_paths",
        "attributes",
        "sinks",
        "log_output",
        "http",
        "dispatcher",
    ];
    let mut o = Obj::new("", value, ROOT_KEYS)?;
    let mut c = Config::default();

    let env_on = env("ENABLE_EVENT_STREAMING")
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "true" || v == "1"
        })
        .unwrap_or(false);
    c.enabled = o.bool("enabled", false)? || env_on;

    c.subscription_key_header = o
        .nonempty("subscription_key_header", DEFAULT_KEY_HEADER)?
        .to_ascii_lowercase();
    c.require_key = o.bool("require_key", true)?;
    c.key_mode = o.choice(
        "key_mode",
        KeyMode::Raw,
        &[
            ("raw", KeyMode::Raw),
            ("sha256", KeyMode::Sha256),
            ("redact", KeyMode::Redact),
        ],
    )?;
    c.log_output = o.choice(
        "log_output",
        LogOutput::HostLog,
        &[
            ("host_log", LogOutput::HostLog),
            ("filter_state", LogOutput::FilterState),
            ("both", LogOutput::Both),
        ],
    )?;

    if let Some(v) = o.take("exclude_paths") {
        let Value::Array(items) = v else {
            return err(
                "exclude_paths",
                format!("must be an array of path prefixes, got {}", kind(&v)),
            );
        };
        for (i, item) in items.into_iter().enumerate() {
            match item {
                Value::String(s) if s.starts_with('/') => c.exclude_paths.push(s),
                Value::String(s) => {
                    return err(
                        format!("exclude_paths[{i}]"),
                        format!("must start with '/', got \"{s}\""),
                    )
                }
                other => {
                    return err(
                        format!("exclude_paths[{i}]"),
                        format!("must be a string, got {}", kind(&other)),
                    )
                }
            }
        }
    }

    if let Some(v) = o.object("attributes")? {
        let Value::Object(map) = v else {
            return err("attributes", "must be a JSON object");
        };
        for (field, spec) in map {
            let key = format!("attributes.{field}");
            if field.is_empty() {
                return err(key, "attribute name must not be empty");
            }
            if RESERVED_FIELDS.contains(&field.as_str()) {
                return err(key, "attribute name collides with an event field");
            }
            let mut a = Obj::new(&key, spec, &["header"])?;
            let header = match a.string("header")? {
                Some(h) if !h.trim().is_empty() => h.to_ascii_lowercase(),
                _ => {
                    return err(
                        format!("{key}.header"),
                        "is required and must be a header name",
                    )
                }
            };
            a.finish()?;
            c.attributes.push(Attribute { field, header });
        }
    }

    let mut want_log = true;
    let mut want_http = false;
    if let Some(v) = o.take("sinks") {
        let Value::Array(items) = v else {
            return err(
                "sinks",
                format!(
                    "must be an array of \"log\" and/or \"http\", got {}",
                    kind(&v)
                ),
            );
        };
        if items.is_empty() {
            return err("sinks", "must name at least one sink (\"log\", \"http\")");
        }
        want_log = false;
        for (i, item) in items.into_iter().enumerate() {
            match item.as_str() {
                Some("log") if !want_log => want_log = true,
                Some("http") if !want_http => want_http = true,
                Some("log") | Some("http") => return err(format!("sinks[{i}]"), "is listed twice"),
                _ => return err(format!("sinks[{i}]"), "must be \"log\" or \"http\""),
            }
        }
    }
    c.log_sink = want_log;

    let http_value = o.object("http")?;
    if want_http {
        c.http = Some(parse_http(
            http_value.unwrap_or(Value::Object(Map::new())),
            env,
        )?);
    } else if http_value.is_some() {
        // Validate anyway so a typo is caught before someone adds "http" to sinks.
        parse_http(http_value.unwrap_or(Value::Null), env)?;
    }

    if let Some(v) = o.object("dispatcher")? {
        let mut d = Obj::new("dispatcher", v, &["mode", "vm_id", "queue", "service"])?;
        c.dispatcher.mode = d.choice(
            "mode",
            DispatcherMode::Local,
            &[
                ("local", DispatcherMode::Local),
                ("shared_queue", DispatcherMode::SharedQueue),
            ],
        )?;
        c.dispatcher.vm_id = d.nonempty("vm_id", "usage_service")?;
        c.dispatcher.queue = d.nonempty("queue", "usage_events")?;
        c.dispatcher.service = d.bool("service", false)?;
        d.finish()?;
        if c.dispatcher.mode == DispatcherMode::SharedQueue && c.http.is_none() {
            return err(
                "dispatcher.mode",
                "\"shared_queue\" needs \"http\" in sinks",
            );
        }
    }
    o.finish()?;
    Ok(c)
}

fn parse_http(value: Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Http, ConfigError> {
    const HTTP_KEYS: &[&str] = &[
        "cluster",
        "authority",
        "path",
        "url",
        "format",
        "headers",
        "timeout_ms",
        "batch_size",
        "max_batch_bytes",
        "flush_interval_ms",
        "buffer_size",
        "max_in_flight",
        "retry",
        "compression",
    ];
    let mut h = Obj::new("http", value, HTTP_KEYS)?;
    let url = h.string("url")?;
    let mut cluster = h.string("cluster")?;
    let mut authority = h.string("authority")?;
    let mut path = h.string("path")?;
    if let Some(url) = url {
        if path.is_some() {
            return err(
                "http.url",
                "cannot be combined with http.path (the URL carries the path)",
            );
        }
        let (auth, p) = split_url(&url).ok_or(ConfigError {
            key: "http.url".into(),
            rule: format!("must look like http://host:port/path, got \"{url}\""),
        })?;
        if authority.is_none() {
            authority = Some(auth.clone());
        }
        if cluster.is_none() {
            cluster = Some(auth);
        }
        path = Some(p);
    }
    let cluster = match cluster {
        Some(c) if !c.trim().is_empty() => c,
        Some(_) => return err("http.cluster", "must not be empty"),
        None => {
            return err(
                "http.cluster",
                "is required when \"http\" is a sink (or give http.url)",
            )
        }
    };
    let authority = match authority {
        Some(a) if a.trim().is_empty() => return err("http.authority", "must not be empty"),
        Some(a) => a,
        None => cluster.clone(),
    };
    let path = path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_string());
    if !path.starts_with('/') {
        return err("http.path", format!("must start with '/', got \"{path}\""));
    }
    let format = h.choice(
        "format",
        Format::Veil,
        &[
            ("veil", Format::Veil),
            ("ndjson", Format::Ndjson),
            ("json", Format::Json),
            ("cloudevents", Format::CloudEvents),
            ("kafka-rest", Format::KafkaRest),
        ],
    )?;
    let mut headers = Vec::new();
    if let Some(Value::Object(map)) = h.object("headers")? {
        for (name, v) in map {
            let key = format!("http.headers.{name}");
            let lower = name.to_ascii_lowercase();
            if lower.is_empty() || lower.starts_with(':') {
                return err(key, "must be a regular header name (no pseudo-headers)");
            }
            if matches!(
                lower.as_str(),
                "content-type" | "content-encoding" | "x-usage-batch-id"
            ) {
                return err(key, "is set by the filter and cannot be overridden");
            }
            let Value::String(s) = v else {
                return err(key, format!("must be a string, got {}", kind(&v)));
            };
            let value = match s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
                Some(var) => match env(var) {
                    Some(val) => val,
                    None => {
                        return err(
                            key,
                            format!("environment variable {var} is not set in the VM"),
                        )
                    }
                },
                None => s,
            };
            headers.push((lower, value));
        }
    }
    let timeout_ms = h.int("timeout_ms", 5000, 1, 600_000)?;
    let batch_size = h.int("batch_size", 100, 1, 100_000)? as usize;
    let max_batch_bytes = h.int("max_batch_bytes", 1_048_576, 1024, 64 * 1024 * 1024)? as usize;
    let flush_interval_ms = h.int("flush_interval_ms", 1000, 1, 3_600_000)?;
    let buffer_size = h.int("buffer_size", 10_000, 1, 10_000_000)? as usize;
    let max_in_flight = h.int("max_in_flight", 2, 1, 1000)? as usize;
    let retry = match h.object("retry")? {
        None => Retry {
            max_attempts: 3,
            initial_backoff_ms: 200,
            max_backoff_ms: 10_000,
        },
        Some(v) => {
            let mut r = Obj::new(
                "http.retry",
                v,
                &["max_attempts", "initial_backoff_ms", "max_backoff_ms"],
            )?;
            let max_attempts = r.int("max_attempts", 3, 1, 100)? as u32;
            let initial_backoff_ms = r.int("initial_backoff_ms", 200, 1, 3_600_000)?;
            let max_backoff_ms = r.int("max_backoff_ms", 10_000, 1, 3_600_000)?;
            r.finish()?;
            if max_backoff_ms < initial_backoff_ms {
                return err(
                    "http.retry.max_backoff_ms",
                    format!("must be >= http.retry.initial_backoff_ms ({initial_backoff_ms})"),
                );
            }
            Retry {
                max_attempts,
                initial_backoff_ms,
                max_backoff_ms,
            }
        }
    };
    let compression = h.choice(
        "compression",
        Compression::None,
        &[("none", Compression::None), ("gzip", Compression::Gzip)],
    )?;
    if batch_size > buffer_size {
        return err(
            "http.batch_size",
            format!("must not exceed http.buffer_size ({buffer_size})"),
        );
    }
    h.finish()?;
    Ok(Http {
        cluster,
        authority,
        path,
        format,
        headers,
        timeout_ms,
        batch_size,
        max_batch_bytes,
        flush_interval_ms,
        buffer_size,
        max_in_flight,
        retry,
        compression,
    })
}

/// Protobuf's binary encoding of `google.protobuf.Struct`, decoded into JSON. Hand-written
/// because the whole grammar is three messages, and a protobuf crate would cost more
/// `.wasm` than the rest of the configuration code.
mod pb {
    use serde_json::{Map, Number, Value};

    struct Reader<'a> {
        b: &'a [u8],
    }

    impl<'a> Reader<'a> {
        fn varint(&mut self) -> Option<u64> {
            let mut v = 0u64;
            for i in 0..10 {
                let (&byte, rest) = self.b.split_first()?;
                self.b = rest;
                v |= ((byte & 0x7f) as u64) << (7 * i);
                if byte & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        }
        fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
            if n > self.b.len() {
                return None;
            }
            let (head, rest) = self.b.split_at(n);
            self.b = rest;
            Some(head)
        }
        /// The next field: (number, wire type, payload for length-delimited/fixed, varint).
        fn field(&mut self) -> Option<(u64, Field<'a>)> {
            let key = self.varint()?;
            let f = match key & 7 {
                0 => Field::Varint(self.varint()?),
                1 => Field::Fixed64(self.bytes(8)?),
                2 => {
                    let n = usize::try_from(self.varint()?).ok()?;
                    Field::Len(self.bytes(n)?)
                }
                5 => Field::Fixed32,
                _ => return None,
            };
            if matches!(f, Field::Fixed32) {
                self.bytes(4)?;
            }
            Some((key >> 3, f))
        }
    }

    enum Field<'a> {
        Varint(u64),
        Fixed64(&'a [u8]),
        Len(&'a [u8]),
        Fixed32,
    }

    pub fn decode_struct(b: &[u8]) -> Option<Value> {
        decode_struct_depth(b, 0)
    }

    fn decode_struct_depth(b: &[u8], depth: u32) -> Option<Value> {
        if depth > 32 {
            return None;
        }
        let mut r = Reader { b };
        let mut map = Map::new();
        while !r.b.is_empty() {
            // strict: a Struct has only field 1, so anything else is not a Struct
            let (1, Field::Len(entry)) = r.field()? else {
                return None;
            };
            let mut e = Reader { b: entry };
            let (mut key, mut value) = (String::new(), Value::Null);
            while !e.b.is_empty() {
                match e.field()? {
                    (1, Field::Len(k)) => key = String::from_utf8(k.to_vec()).ok()?,
                    (2, Field::Len(v)) => value = decode_value(v, depth + 1)?,
                    _ => return None,
                }
            }
            map.insert(key, value);
        }
        Some(Value::Object(map))
    }

    fn decode_value(b: &[u8], depth: u32) -> Option<Value> {
        let mut r = Reader { b };
        let mut out = Value::Null;
        while !r.b.is_empty() {
            out = match r.field()? {
                (1, Field::Varint(_)) => Value::Null,
                (2, Field::Fixed64(x)) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(x);
                    let f = f64::from_le_bytes(a);
                    // Whole numbers stay integers, as a user wrote them in YAML.
                    if f.fract() == 0.0 && f.abs() < 9.0e15 {
                        Value::Number(Number::from(f as i64))
                    } else {
                        Value::Number(Number::from_f64(f)?)
                    }
                }
                (3, Field::Len(s)) => Value::String(String::from_utf8(s.to_vec()).ok()?),
                (4, Field::Varint(v)) => Value::Bool(v != 0),
                (5, Field::Len(s)) => decode_struct_depth(s, depth + 1)?,
                (6, Field::Len(l)) => {
                    let mut lr = Reader { b: l };
                    let mut items = Vec::new();
                    while !lr.b.is_empty() {
                        let (1, Field::Len(v)) = lr.field()? else {
                            return None;
                        };
                        items.push(decode_value(v, depth + 1)?);
                    }
                    Value::Array(items)
                }
                _ => return None,
            };
        }
        Some(out)
    }
}

/// `http://host:port/path` -> (`host:port`, `/path`). Only plain http: the host terminates TLS
/// through the cluster's transport socket.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() || auth.contains(['@', ' ']) {
        return None;
    }
    Some((auth.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_str(s: &str) -> Result<Config, ConfigError> {
        parse(s.as_bytes(), &no_env)
    }

    #[test]
    fn empty_config_means_defaults_and_disabled() {
        let c = parse_str("").unwrap();
        assert_eq!(c, Config::default());
        assert!(!c.enabled);
        assert!(c.log_sink);
        assert!(c.http.is_none());
    }

    #[test]
    fn env_var_turns_streaming_on() {
        for v in ["true", "1", "TRUE"] {
            let env = |k: &str| (k == "ENABLE_EVENT_STREAMING").then(|| v.to_string());
            assert!(parse(b"{}", &env).unwrap().enabled, "{v}");
        }
        let env = |k: &str| (k == "ENABLE_EVENT_STREAMING").then(|| "yes".to_string());
        assert!(!parse(b"{}", &env).unwrap().enabled);
    }

    #[test]
    fn http_defaults_follow_the_spec() {
        let c = parse_str(r#"{"enabled":true,"sinks":["http"],"http":{"cluster":"collector"}}"#)
            .unwrap();
        let h = c.http.unwrap();
        assert!(!c.log_sink);
        assert_eq!(h.authority, "collector");
        assert_eq!(h.path, "/api/v1/usage/events");
        assert_eq!(h.format, Format::Veil);
        assert_eq!(
            (h.timeout_ms, h.batch_size, h.max_batch_bytes),
            (5000, 100, 1_048_576)
        );
        assert_eq!(
            (h.flush_interval_ms, h.buffer_size, h.max_in_flight),
            (1000, 10_000, 2)
        );
        assert_eq!(
            h.retry,
            Retry {
                max_attempts: 3,
                initial_backoff_ms: 200,
                max_backoff_ms: 10_000
            }
        );
        assert_eq!(h.compression, Compression::None);
    }

    #[test]
    fn url_shortcut_sets_authority_path_and_cluster() {
        let c = parse_str(
            r#"{"sinks":["http"],"http":{"url":"http://collector:3000/api/v1/usage/events"}}"#,
        )
        .unwrap();
        let h = c.http.unwrap();
        assert_eq!(h.authority, "collector:3000");
        assert_eq!(h.cluster, "collector:3000");
        assert_eq!(h.path, "/api/v1/usage/events");
        let c =
            parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","url":"http://x:1/e"}}"#).unwrap();
        assert_eq!(c.http.unwrap().cluster, "c");
    }

    #[test]
    fn protobuf_struct_as_envoy_hands_it_over() {
        // What Envoy 1.40 passed for `enabled: true` plus a nested http section, captured
        // from the real binary and extended by hand: fields{enabled: true,
        // sinks: ["http"], http: {cluster: "c", batch_size: 50}}
        fn len(field: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![(field << 3) | 2, body.len() as u8];
            v.extend_from_slice(body);
            v
        }
        fn entry(k: &str, value: Vec<u8>) -> Vec<u8> {
            let mut e = len(1, k.as_bytes());
            e.extend(len(2, &value));
            len(1, &e)
        }
        let bool_true = vec![0x20, 0x01];
        let s_http = len(3, b"http");
        let list = len(6, &len(1, &s_http));
        let mut num = vec![0x11];
        num.extend_from_slice(&50f64.to_le_bytes());
        let mut http = entry("cluster", len(3, b"c"));
        http.extend(entry("batch_size", num));
        let mut cfg = entry("enabled", bool_true);
        cfg.extend(entry("sinks", list));
        cfg.extend(entry("http", len(5, &http)));
        assert_eq!(
            &cfg[..11],
            &[0x0a, 0x0d, 0x0a, 0x07, b'e', b'n', b'a', b'b', b'l', b'e', b'd']
        );
        let c = parse(&cfg, &no_env).unwrap();
        assert!(c.enabled);
        let h = c.http.unwrap();
        assert_eq!((h.cluster.as_str(), h.batch_size), ("c", 50));
        // truncated protobuf is refused, not misread
        let e = parse(&cfg[..cfg.len() - 3], &no_env).unwrap_err();
        assert_eq!(e.key, "(root)");
    }

    #[test]
    fn struct_numbers_as_doubles_are_accepted() {
        let c =
            parse_str(r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":50.0}}"#).unwrap();
        assert_eq!(c.http.unwrap().batch_size, 50);
    }

    #[test]
    fn header_values_come_from_the_environment() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        let c = parse(
            br#"{"sinks":["http"],"http":{"cluster":"c","headers":{"Authorization":"${TOKEN}","x-a":"b"}}}"#,
            &env,
        )
        .unwrap();
        let h = c.http.unwrap();
        assert!(h
            .headers
            .contains(&("authorization".to_string(), "s3cret".to_string())));
        assert!(h.headers.contains(&("x-a".to_string(), "b".to_string())));
    }

    #[test]
    fn attributes_and_lowercasing() {
        let c = parse_str(
            r#"{"subscription_key_header":"X-Api-Key","attributes":{"organization_id":{"header":"X-Org"}}}"#,
        )
        .unwrap();
        assert_eq!(c.subscription_key_header, "x-api-key");
        assert_eq!(
            c.attributes,
            vec![Attribute {
                field: "organization_id".into(),
                header: "x-org".into()
            }]
        );
    }

    /// Every refusal names the key and the rule.
    #[test]
    fn bad_configs_are_refused_with_key_and_rule() {
        let cases: &[(&str, &str, &str)] = &[
            (r#"{"enabeld":true}"#, "enabeld", "unknown key"),
            (r#"{"enabled":"yes"}"#, "enabled", "must be a boolean"),
            (
                r#"{"key_mode":"md5"}"#,
                "key_mode",
                "must be one of raw, sha256, redact",
            ),
            (r#"{"sinks":["http"]}"#, "http.cluster", "is required"),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":0}}"#,
                "http.batch_size",
                "between 1 and",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","timeout_ms":-5}}"#,
                "http.timeout_ms",
                "between 1 and",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","format":"xml"}}"#,
                "http.format",
                "must be one of",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","retry":{"max_attempts":0}}}"#,
                "http.retry.max_attempts",
                "between 1 and",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","retry":{"initial_backoff_ms":500,"max_backoff_ms":100}}}"#,
                "http.retry.max_backoff_ms",
                ">= http.retry.initial_backoff_ms",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","bogus":1}}"#,
                "http.bogus",
                "unknown key",
            ),
            (r#"{"sinks":[]}"#, "sinks", "at least one sink"),
            (
                r#"{"sinks":["kafka"]}"#,
                "sinks[0]",
                "must be \"log\" or \"http\"",
            ),
            (
                r#"{"exclude_paths":["health"]}"#,
                "exclude_paths[0]",
                "must start with '/'",
            ),
            (
                r#"{"attributes":{"method":{"header":"x"}}}"#,
                "attributes.method",
                "collides",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","headers":{"authorization":"${NOPE}"}}}"#,
                "http.headers.authorization",
                "NOPE is not set",
            ),
            (
                r#"{"sinks":["http"],"http":{"cluster":"c","batch_size":1.5}}"#,
                "http.batch_size",
                "whole number",
            ),
            (
                r#"{"sinks":["http"],"http":{"url":"ftp://x"}}"#,
                "http.url",
                "must look like",
            ),
            (r#"[1,2]"#, "(root)", "must be a JSON object"),
            (r#"{"enabled":tru"#, "(root)", "valid JSON"),
        ];
        for (json, key, rule) in cases {
            let e = parse_str(json).expect_err(json);
            assert_eq!(&e.key, key, "{json} -> {e}");
            assert!(e.rule.contains(rule), "{json} -> {e}");
            assert!(e.to_string().contains(key));
        }
    }
}
