//! The `http` section: where the http sink sends, in which format, and how it batches and
//! retries.

use super::json::{kind, Obj};
use super::keys::{self, Key};
use super::types::{err, ConfigError, Http, Retry, MAX_DESTINATIONS};
use super::{env, url, DEFAULT_EVENTS_PATH};
use serde_json::{Map, Value};

/// `http` as one destination (an object) or several (an array of them), and whether it was
/// an array: then every counter carries its destination's name.
pub(super) fn parse_all(
    value: Value,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Http>, bool), ConfigError> {
    let items = match value {
        Value::Array(items) => items,
        v @ Value::Object(_) => return Ok((vec![parse(v, env)?], false)),
        other => {
            return err(
                keys::HTTP.path,
                format!(
                    "must be a JSON object or an array of them, got {}",
                    kind(&other)
                ),
            )
        }
    };
    if items.is_empty() || items.len() > MAX_DESTINATIONS {
        return err(
            keys::HTTP.path,
            format!(
                "an array must hold 1 to {MAX_DESTINATIONS} destinations, got {}",
                items.len()
            ),
        );
    }
    let mut out: Vec<Http> = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let name_given =
            matches!(&item, Value::Object(m) if m.contains_key(keys::HTTP_NAME.name()));
        // Each element is read as the `http` section, and a refusal names the element.
        let h = parse(item, env).map_err(|e| ConfigError {
            key: element_key(&e.key, Some(i)),
            ..e
        })?;
        let name_key = element_key(keys::HTTP_NAME.path, Some(i));
        if !name_given {
            return err(
                name_key,
                "is required in an http array (it names the metrics)",
            );
        }
        if out.iter().any(|o| o.name == h.name) {
            return err(
                name_key,
                format!("\"{}\" is already the name of another destination", h.name),
            );
        }
        out.push(h);
    }
    Ok((out, true))
}

/// `http.x` as the key of the `i`th element of an `http` array (`http[1].x`); unchanged for
/// a single object.
pub(super) fn element_key(key: &str, i: Option<usize>) -> String {
    match (i, key.strip_prefix(keys::HTTP.path)) {
        (Some(i), Some(rest)) if rest.is_empty() || rest.starts_with('.') => {
            format!("{}[{i}]{rest}", keys::HTTP.path)
        }
        _ => key.to_string(),
    }
}

fn parse(value: Value, env: &dyn Fn(&str) -> Option<String>) -> Result<Http, ConfigError> {
    let mut h = Obj::section(&keys::HTTP, value)?;
    let name = name(&mut h)?;
    let (cluster, authority, path) = target(&mut h)?;
    let format = h.choice(&keys::HTTP_FORMAT)?;
    let headers = headers(h.object(keys::HTTP_HEADERS.name())?, env)?;
    let timeout_ms = h.int(&keys::HTTP_TIMEOUT_MS)?;
    let batch_size = h.int(&keys::HTTP_BATCH_SIZE)? as usize;
    let backlog_batch_size = h.int(&keys::Int {
        path: keys::HTTP_BACKLOG_BATCH_SIZE.path,
        default: batch_size as u64,
        ..keys::HTTP_BATCH_SIZE
    })? as usize;
    let max_batch_bytes = h.int(&keys::HTTP_MAX_BATCH_BYTES)? as usize;
    let flush_interval_ms = h.int(&keys::HTTP_FLUSH_INTERVAL_MS)?;
    let buffer_size = h.int(&keys::HTTP_BUFFER_SIZE)? as usize;
    let max_in_flight = h.int(&keys::HTTP_MAX_IN_FLIGHT)? as usize;
    let retry = retry(
        h.object(keys::HTTP_RETRY.name())?
            .unwrap_or(Value::Object(Map::new())),
    )?;
    let compression = h.choice(&keys::HTTP_COMPRESSION)?;
    let mut ce = Obj::section(
        &keys::HTTP_CLOUDEVENTS,
        h.object(keys::HTTP_CLOUDEVENTS.name())?
            .unwrap_or(Value::Object(Map::new())),
    )?;
    let cloudevents_type = ce.text(&keys::CLOUDEVENTS_TYPE)?;
    let cloudevents_source = ce.text(&keys::CLOUDEVENTS_SOURCE)?;
    ce.finish()?;
    // Which attribute is checked by the caller, which knows the attributes.
    let kafka_key = match h.string(keys::HTTP_KAFKA_KEY.name())? {
        None => None,
        Some(k) if k == "subscription_key" => None,
        Some(k) => Some(k),
    };
    if batch_size > buffer_size {
        return err(
            keys::HTTP_BATCH_SIZE.path,
            format!(
                "must not exceed {} ({buffer_size})",
                keys::HTTP_BUFFER_SIZE.path
            ),
        );
    }
    backlog(batch_size, backlog_batch_size, buffer_size, max_in_flight)?;
    h.finish()?;
    Ok(Http {
        name,
        cluster,
        authority,
        path,
        format,
        headers,
        timeout_ms,
        batch_size,
        backlog_batch_size,
        max_batch_bytes,
        flush_interval_ms,
        buffer_size,
        max_in_flight,
        retry,
        compression,
        kafka_key,
        cloudevents_type,
        cloudevents_source,
    })
}

/// `http.backlog_batch_size` against the sizes it grows from and into: below `batch_size` it
/// would shrink batches under load, above `buffer_size` no batch reaches it, and when the
/// buffer cannot hold more than `max_in_flight × batch_size` waiting events there is never a
/// backlog to use it on: each a setting that silently does nothing.
fn backlog(
    batch_size: usize,
    backlog: usize,
    buffer_size: usize,
    max_in_flight: usize,
) -> Result<(), ConfigError> {
    let key = keys::HTTP_BACKLOG_BATCH_SIZE.path;
    if backlog < batch_size {
        return err(
            key,
            format!(
                "must be at least {} ({batch_size}), got {backlog}",
                keys::HTTP_BATCH_SIZE.path
            ),
        );
    }
    if backlog > buffer_size {
        return err(
            key,
            format!(
                "must not exceed {} ({buffer_size}), got {backlog}",
                keys::HTTP_BUFFER_SIZE.path
            ),
        );
    }
    let threshold = max_in_flight.saturating_mul(batch_size);
    if backlog > batch_size && buffer_size <= threshold {
        return err(
            key,
            format!(
                "has no effect: a backlog is more than {} × {} ({threshold}) waiting events, \
                 more than {} ({buffer_size}) holds",
                keys::HTTP_MAX_IN_FLIGHT.path,
                keys::HTTP_BATCH_SIZE.path,
                keys::HTTP_BUFFER_SIZE.path
            ),
        );
    }
    Ok(())
}

/// `http.name`: it becomes part of metric names, so only what every metrics backend takes.
fn name(h: &mut Obj) -> Result<String, ConfigError> {
    let Some(name) = h.string(keys::HTTP_NAME.name())? else {
        return Ok(keys::DEFAULT_HTTP_NAME.to_string());
    };
    let valid = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return err(
            keys::HTTP_NAME.path,
            format!("must be 1 to 32 characters of [a-z0-9_], got \"{name}\""),
        );
    }
    Ok(name)
}

/// (cluster, authority, path), from those keys or from `http.url`.
fn target(h: &mut Obj) -> Result<(String, String, String), ConfigError> {
    let url = h.string(keys::HTTP_URL.name())?;
    let mut cluster = h.string(keys::HTTP_CLUSTER.name())?;
    let mut authority = h.string(keys::HTTP_AUTHORITY.name())?;
    let mut path = h.string(keys::HTTP_PATH.name())?;
    if let Some(url) = url {
        if path.is_some() {
            return err(
                keys::HTTP_URL.path,
                "cannot be combined with http.path (the URL carries the path)",
            );
        }
        let (auth, p) = url::split_url(&url).map_err(|rule| ConfigError {
            key: keys::HTTP_URL.path.into(),
            rule,
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
        Some(_) => return err(keys::HTTP_CLUSTER.path, "must not be empty"),
        None => {
            return err(
                keys::HTTP_CLUSTER.path,
                "is required when \"http\" is a sink (or give http.url)",
            )
        }
    };
    let authority = match authority {
        Some(a) if a.trim().is_empty() => {
            return err(keys::HTTP_AUTHORITY.path, "must not be empty")
        }
        Some(a) => a,
        None => cluster.clone(),
    };
    let path = path.unwrap_or_else(|| DEFAULT_EVENTS_PATH.to_string());
    if !path.starts_with('/') {
        return err(
            keys::HTTP_PATH.path,
            format!("must start with '/', got \"{path}\""),
        );
    }
    Ok((cluster, authority, path))
}

/// Extra callout headers, lower-cased, `${NAME}` values resolved.
fn headers(
    value: Option<Value>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Some(Value::Object(map)) = value else {
        return Ok(Vec::new());
    };
    let mut headers = Vec::with_capacity(map.len());
    for (name, v) in map {
        let key = format!("{}.{name}", keys::HTTP_HEADERS.path);
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
        match env::substitute(s, env) {
            Ok(value) => headers.push((lower, value)),
            Err(rule) => return err(key, rule),
        }
    }
    Ok(headers)
}

fn retry(value: Value) -> Result<Retry, ConfigError> {
    let mut r = Obj::section(&keys::HTTP_RETRY, value)?;
    let max_attempts = r.int(&keys::RETRY_MAX_ATTEMPTS)? as u32;
    let initial_backoff_ms = r.int(&keys::RETRY_INITIAL_BACKOFF_MS)?;
    let max_backoff_ms = r.int(&keys::RETRY_MAX_BACKOFF_MS)?;
    r.finish()?;
    if max_backoff_ms < initial_backoff_ms {
        return err(
            keys::RETRY_MAX_BACKOFF_MS.path,
            format!(
                "must be >= {} ({initial_backoff_ms})",
                keys::RETRY_INITIAL_BACKOFF_MS.path
            ),
        );
    }
    Ok(Retry {
        max_attempts,
        initial_backoff_ms,
        max_backoff_ms,
    })
}
