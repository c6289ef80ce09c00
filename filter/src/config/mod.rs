//! Plugin configuration: parsed from the JSON Envoy hands the plugin, validated key by key.
//!
//! serde_json parses; the walk below checks each key so that every refusal names the full
//! key path (`http.retry.max_attempts`) and the rule it broke. serde's derive with
//! `deny_unknown_fields` would name neither the nesting nor the range. Every key, its
//! default and its rule are listed once, in `keys`.

mod env;
mod http;
mod json;
pub mod keys;
mod llm;
mod protobuf;
#[cfg(test)]
mod tests;
mod types;
mod url;

pub use keys::DEFAULT_EVENTS_PATH;
pub use types::*;

use json::{kind, Obj};
use keys::Key;
use llm::llm;
use serde_json::{Map, Value};
use types::err;

/// The defaults come from the key table (here, where both the table and the types are seen,
/// so neither module imports the other).
impl Default for Config {
    /// What an empty configuration means.
    fn default() -> Self {
        Config {
            enabled: keys::ENABLED.default,
            subscription_key_header: keys::SUBSCRIPTION_KEY_HEADER.default.to_string(),
            require_key: keys::REQUIRE_KEY.default,
            key_mode: keys::KEY_MODE.default,
            exclude_paths: Vec::new(),
            attributes: Vec::new(),
            subscription_key_property: None,
            routes: crate::routes::Routes::default(),
            log_sink: true,
            log_output: keys::LOG_OUTPUT.default,
            http: Vec::new(),
            http_named: false,
            dispatcher: DispatcherConfig {
                mode: keys::DISPATCHER_MODE.default,
                vm_id: keys::DISPATCHER_VM_ID.default.to_string(),
                queue: keys::DISPATCHER_QUEUE.default.to_string(),
                service: keys::DISPATCHER_SERVICE.default,
            },
            llm: None,
        }
    }
}

/// Parses and validates the plugin configuration. `env` reads the VM's environment
/// (`ENABLE_EVENT_STREAMING`, `${NAME}` header values). An empty configuration means all
/// defaults.
pub fn parse(raw: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let mut o = Obj::root(json_value(raw)?)?;
    // Read in this order so that, of several mistakes, the same one is reported as always.
    let enabled = o.flag(&keys::ENABLED)? || env::streaming_on(env);
    let subscription_key_header = o.text(&keys::SUBSCRIPTION_KEY_HEADER)?.to_ascii_lowercase();
    let require_key = o.flag(&keys::REQUIRE_KEY)?;
    let key_mode = o.choice(&keys::KEY_MODE)?;
    let log_output = o.choice(&keys::LOG_OUTPUT)?;
    let exclude_paths = exclude_paths(o.take(keys::EXCLUDE_PATHS.name()))?;
    let attributes = attributes(o.object(keys::ATTRIBUTES.name())?)?;
    let (log_sink, want_http) = sinks(o.take(keys::SINKS.name()))?;
    let http_value = o.take(keys::HTTP.name());
    // Validated even when "http" is not a sink, so a typo is caught before someone adds it.
    let (http_checked, http_named) = match (want_http, http_value) {
        (true, v) => http::parse_all(v.unwrap_or(empty()), env)?,
        (false, Some(v)) => http::parse_all(v, env)?,
        (false, None) => (Vec::new(), false),
    };
    let http = if want_http {
        http_checked.clone()
    } else {
        Vec::new()
    };
    let dispatcher = dispatcher(o.object(keys::DISPATCHER.name())?.unwrap_or(empty()))?;
    check_role(!http.is_empty(), &dispatcher)?;
    let llm = llm(o.object(keys::LLM.name())?.unwrap_or(empty()))?;
    if llm.is_some() {
        if let Some(a) = attributes
            .iter()
            .find(|a| LLM_FIELDS.contains(&a.field.as_str()))
        {
            return err(
                format!("{}.{}", keys::ATTRIBUTES.path, a.field),
                "attribute name collides with an llm event field (llm.enabled is true)",
            );
        }
    }
    let subscription_key_property = match o.take(keys::SUBSCRIPTION_KEY_PROPERTY.name()) {
        None => None,
        Some(v) => Some(property_path(keys::SUBSCRIPTION_KEY_PROPERTY.path, v)?),
    };
    let key_as = o.choice(&keys::SUBSCRIPTION_KEY_PROPERTY_AS)?;
    let subscription_key_property =
        subscription_key_property.map(|path| Property { path, as_: key_as });
    let routes = path_templates(o.take(keys::PATH_TEMPLATES.name()))?;
    for (i, h) in http_checked.iter().enumerate() {
        let Some(k) = &h.kafka_key else { continue };
        if !attributes.iter().any(|a| &a.field == k) {
            let names: Vec<&str> = attributes.iter().map(|a| a.field.as_str()).collect();
            return err(
                http::element_key(keys::HTTP_KAFKA_KEY.path, http_named.then_some(i)),
                format!(
                    "must be \"subscription_key\" or an attribute's name (attributes: [{}]), got \"{k}\"",
                    names.join(", ")
                ),
            );
        }
    }
    o.finish()?;
    Ok(Config {
        enabled,
        subscription_key_header,
        require_key,
        key_mode,
        exclude_paths,
        attributes,
        subscription_key_property,
        routes,
        log_sink,
        log_output,
        http,
        http_named,
        dispatcher,
        llm,
    })
}

/// Refuses what `Config::role` could only guess at. The service is checked first: its
/// refusal names the key that made this VM a service.
fn check_role(http: bool, d: &DispatcherConfig) -> Result<(), ConfigError> {
    let (service, mode) = (keys::DISPATCHER_SERVICE.path, keys::DISPATCHER_MODE.path);
    if d.service && d.mode == DispatcherMode::Local {
        // Such a VM would send its own events yet shut down as the service does, at once,
        // dropping whatever its batches still held.
        return err(
            service,
            format!(
                "true is for the singleton service of a shared queue and needs {mode} \
                 \"shared_queue\" (got \"local\")"
            ),
        );
    }
    if d.service && !http {
        return err(
            service,
            "true needs \"http\" in sinks: the service sends the queue's events over http",
        );
    }
    if d.mode == DispatcherMode::SharedQueue && !http {
        return err(mode, "\"shared_queue\" needs \"http\" in sinks");
    }
    Ok(())
}

/// A property path: a non-empty array of non-empty strings without NUL, as the ABI bytes.
fn property_path(key: &str, v: Value) -> Result<Vec<u8>, ConfigError> {
    let Value::Array(items) = v else {
        return err(
            key,
            format!(
                "must be an array of path segments (e.g. [\"xds\", \"route_name\"]), got {}",
                kind(&v)
            ),
        );
    };
    if items.is_empty() {
        return err(key, "must name at least one path segment");
    }
    let mut segments = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if !s.is_empty() && !s.contains('\0') => segments.push(s),
            Value::String(_) => {
                return err(
                    format!("{key}[{i}]"),
                    "must be a non-empty segment without NUL",
                )
            }
            other => {
                return err(
                    format!("{key}[{i}]"),
                    format!("must be a string, got {}", kind(&other)),
                )
            }
        }
    }
    Ok(crate::property::abi_path(&segments))
}

/// `path_templates`, compiled; a refusal names the template by its index.
fn path_templates(value: Option<Value>) -> Result<crate::routes::Routes, ConfigError> {
    let key = keys::PATH_TEMPLATES.path;
    let items = match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return err(
                key,
                format!("must be an array of route templates, got {}", kind(&v)),
            )
        }
    };
    let mut templates = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) => templates.push(s),
            other => {
                return err(
                    format!("{key}[{i}]"),
                    format!("must be a string, got {}", kind(&other)),
                )
            }
        }
    }
    let many = templates.len() > crate::routes::MAX_TEMPLATES;
    crate::routes::Routes::new(templates).map_err(|(i, rule)| ConfigError {
        key: if many {
            key.to_string()
        } else {
            format!("{key}[{i}]")
        },
        rule,
    })
}

fn empty() -> Value {
    Value::Object(Map::new())
}

/// The configuration as one JSON value, whichever way the host handed it over.
fn json_value(raw: &[u8]) -> Result<Value, ConfigError> {
    // Envoy 1.40 hands a `google.protobuf.Struct` configuration over in protobuf's binary
    // encoding; a StringValue arrives as its JSON text. A JSON object starts with `{`;
    // anything else is tried as a Struct, and else reported as JSON.
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    if !matches!(first, Some(b'{') | None) {
        if let Some(v) = protobuf::decode_struct(raw) {
            return Ok(v);
        }
    }
    let text = std::str::from_utf8(raw).map_err(|_| ConfigError {
        key: "(root)".into(),
        rule: format!(
            "must be UTF-8 JSON (got {} bytes starting {:02x?})",
            raw.len(),
            &raw[..raw.len().min(16)]
        ),
    })?;
    if text.trim().is_empty() {
        return Ok(empty());
    }
    serde_json::from_str::<Value>(text).map_err(|e| ConfigError {
        key: "(root)".into(),
        rule: format!("must be valid JSON ({e})"),
    })
}

fn exclude_paths(value: Option<Value>) -> Result<Vec<String>, ConfigError> {
    prefixes(keys::EXCLUDE_PATHS.path, value)
}

/// An array of path prefixes, each starting with '/'.
pub(super) fn prefixes(key: &str, value: Option<Value>) -> Result<Vec<String>, ConfigError> {
    let items = match value {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return err(
                key,
                format!("must be an array of path prefixes, got {}", kind(&v)),
            )
        }
    };
    let mut paths = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::String(s) if s.starts_with('/') => paths.push(s),
            Value::String(s) => {
                return err(
                    format!("{key}[{i}]"),
                    format!("must start with '/', got \"{s}\""),
                )
            }
            other => {
                return err(
                    format!("{key}[{i}]"),
                    format!("must be a string, got {}", kind(&other)),
                )
            }
        }
    }
    Ok(paths)
}

fn attributes(value: Option<Value>) -> Result<Vec<Attribute>, ConfigError> {
    let Some(Value::Object(map)) = value else {
        return Ok(Vec::new());
    };
    let mut attributes = Vec::with_capacity(map.len());
    for (field, spec) in map {
        let key = format!("{}.{field}", keys::ATTRIBUTES.path);
        if field.is_empty() {
            return err(key, "attribute name must not be empty");
        }
        if RESERVED_FIELDS.contains(&field.as_str()) {
            return err(key, "attribute name collides with an event field");
        }
        let mut a = Obj::new(&key, spec, vec!["header", "query", "property", "as"])?;
        let header = a.string("header")?;
        let query = a.string("query")?;
        let property = a.take("property");
        let as_ = a.string("as")?;
        let given = [header.is_some(), query.is_some(), property.is_some()];
        match given.iter().filter(|g| **g).count() {
            // the refusal of a header-only configuration, as it always was
            0 => {
                return err(
                    format!("{key}.header"),
                    "is required (or \"query\", or \"property\") and must be a header name",
                )
            }
            1 => {}
            _ => {
                return err(
                    key,
                    "must have exactly one of \"header\", \"query\" or \"property\"",
                )
            }
        }
        a.finish()?;
        if as_.is_some() && property.is_none() {
            return err(format!("{key}.as"), "is only for a \"property\" source");
        }
        let source = if let Some(h) = header {
            if h.trim().is_empty() {
                return err(format!("{key}.header"), "must be a header name");
            }
            Source::Header(h.to_ascii_lowercase())
        } else if let Some(q) = query {
            if q.is_empty() {
                return err(format!("{key}.query"), "must be a query parameter name");
            }
            Source::Query(q)
        } else {
            let path = property_path(&format!("{key}.property"), property.unwrap_or_default())?;
            let as_ = match as_ {
                None => keys::PROPERTY_AS.default,
                Some(s) => match keys::PROPERTY_AS.options.iter().find(|(n, _)| *n == s) {
                    Some((_, t)) => *t,
                    None => {
                        return err(
                            format!("{key}.as"),
                            format!("must be one of {}, got \"{s}\"", keys::PROPERTY_AS.names()),
                        )
                    }
                },
            };
            Source::Property(Property { path, as_ })
        };
        attributes.push(Attribute { field, source });
    }
    Ok(attributes)
}

/// (log sink wanted, http sink wanted).
fn sinks(value: Option<Value>) -> Result<(bool, bool), ConfigError> {
    let key = keys::SINKS.path;
    let items = match value {
        None => return Ok((true, false)),
        Some(Value::Array(items)) => items,
        Some(v) => {
            return err(
                key,
                format!(
                    "must be an array of \"log\" and/or \"http\", got {}",
                    kind(&v)
                ),
            )
        }
    };
    if items.is_empty() {
        return err(key, "must name at least one sink (\"log\", \"http\")");
    }
    let (mut log, mut http) = (false, false);
    for (i, item) in items.into_iter().enumerate() {
        match item.as_str() {
            Some("log") if !log => log = true,
            Some("http") if !http => http = true,
            Some("log") | Some("http") => return err(format!("{key}[{i}]"), "is listed twice"),
            _ => return err(format!("{key}[{i}]"), "must be \"log\" or \"http\""),
        }
    }
    Ok((log, http))
}

fn dispatcher(value: Value) -> Result<DispatcherConfig, ConfigError> {
    let mut d = Obj::section(&keys::DISPATCHER, value)?;
    let dispatcher = DispatcherConfig {
        mode: d.choice(&keys::DISPATCHER_MODE)?,
        vm_id: d.text(&keys::DISPATCHER_VM_ID)?,
        queue: d.text(&keys::DISPATCHER_QUEUE)?,
        service: d.flag(&keys::DISPATCHER_SERVICE)?,
    };
    d.finish()?;
    Ok(dispatcher)
}
