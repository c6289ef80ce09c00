//! The `llm` section, and its price table read without floating point.

use super::json::{kind, Obj};
use super::keys::{self, Key};
use super::types::{err, ConfigError, Llm};
use crate::tokens::price::{parse_nanos, Price, Prices};
use serde_json::Value;

/// The `llm` section: validated whether or not it is enabled; `None` when it is not.
pub(super) fn llm(value: Value) -> Result<Option<Llm>, ConfigError> {
    let mut l = Obj::section(&keys::LLM, value)?;
    let enabled = l.flag(&keys::LLM_ENABLED)?;
    let max_scan_bytes = l.int(&keys::LLM_MAX_SCAN_BYTES)?;
    let paths = match l.take(keys::LLM_PATHS.name()) {
        None => Vec::new(),
        Some(v) => {
            let paths = super::prefixes(keys::LLM_PATHS.path, Some(v))?;
            if paths.is_empty() {
                return err(
                    keys::LLM_PATHS.path,
                    "must name at least one path prefix (leave it out to inspect every path)",
                );
            }
            paths
        }
    };
    let prices = prices(l.take(keys::LLM_PRICES.name()))?;
    let currency = l.text(&keys::LLM_CURRENCY)?;
    let force_stream_usage = l.flag(&keys::LLM_FORCE_STREAM_USAGE)?;
    let max_request_bytes = l.int(&keys::LLM_MAX_REQUEST_BYTES)?;
    let filter_state = l.flag(&keys::LLM_FILTER_STATE)?;
    l.finish()?;
    Ok(enabled.then_some(Llm {
        max_scan_bytes,
        paths,
        prices,
        currency,
        force_stream_usage,
        max_request_bytes,
        filter_state,
    }))
}

/// `llm.prices`: every refusal names the model and the price (`llm.prices["gpt-4o"].input`).
fn prices(value: Option<Value>) -> Result<Prices, ConfigError> {
    let key = keys::LLM_PRICES.path;
    let map = match value {
        None => return Ok(Prices::default()),
        Some(Value::Object(m)) => m,
        Some(v) => {
            return err(
                key,
                format!("must be an object of model -> prices, got {}", kind(&v)),
            )
        }
    };
    let mut table = Prices::default();
    for (model, v) in map {
        let at = format!("{key}[\"{model}\"]");
        if model.is_empty() || model.trim_end_matches('*').contains('*') {
            return err(
                at,
                "a model name must not be empty, and '*' may only end it",
            );
        }
        let Value::Object(mut p) = v else {
            return err(at, format!("must be an object of prices, got {}", kind(&v)));
        };
        let mut one = |name: &str, required: bool| -> Result<Option<u64>, ConfigError> {
            let at = format!("{at}.{name}");
            let text = match p.remove(name) {
                None | Some(Value::Null) if required => {
                    return err(at, "is required (a price per million tokens)")
                }
                None | Some(Value::Null) => return Ok(None),
                // Envoy's YAML loader hands non-integer numbers over as strings
                Some(Value::String(s)) => s,
                Some(Value::Number(n)) => n.to_string(),
                Some(other) => return err(at, format!("must be a number, got {}", kind(&other))),
            };
            match parse_nanos(&text) {
                Some(n) => Ok(Some(n)),
                None => err(
                    at,
                    format!("must be a price >= 0 with at most 9 decimals, got {text}"),
                ),
            }
        };
        let input = one("input", true)?.unwrap_or(0);
        let output = one("output", true)?.unwrap_or(0);
        let cached_input = one("cached_input", false)?.unwrap_or(input);
        let cache_write_input = one("cache_write_input", false)?.unwrap_or(input);
        if let Some(extra) = p.keys().next() {
            return err(
                format!("{at}.{extra}"),
                "unknown price; known: input, cached_input, cache_write_input, output",
            );
        }
        table.insert(
            &model,
            Price {
                input,
                cached_input,
                cache_write_input,
                output,
            },
        );
    }
    Ok(table)
}
