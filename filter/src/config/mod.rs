//! Plugin configuration: parsed from the JSON Envoy hands the plugin, validated key by key.
//!
//! serde_json parses; the walk below checks each key so that every refusal names the full
//! key path (`http.retry.max_attempts`) and the rule it broke. serde's derive with
//! `deny_unknown_fields` would name neither the nesting nor the range.

mod json;
mod protobuf;
#[cfg(test)]
mod tests;
mod types;
mod url;

pub use types::*;

use json::{kind, Obj};
use serde_json::{Map, Value};
use types::err;
use url::split_url;

/// Parses and validates the plugin configuration. `env` reads the VM's environment
/// (`ENABLE_EVENT_STREAMING`, `${NAME}` header values). An empty configuration means all
/// defaults.
pub fn parse(raw: &[u8], env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    // Envoy 1.40 hands a `google.protobuf.Struct` configuration over in protobuf's binary
    // encoding; a StringValue arrives as its JSON text. A JSON object starts with `{`;
    // anything else is tried as a Struct, and else reported as JSON.
    let raw_json;
    let first = raw.iter().find(|b| !b.is_ascii_whitespace());
    let raw = match (first, protobuf::decode_struct(raw)) {
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
