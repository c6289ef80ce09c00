//! The JSON reader: one object's keys taken one at a time, each refusal naming the full
//! key path and the rule.

use super::types::{err, ConfigError};
use serde_json::{Map, Value};

/// One JSON object's keys, read one at a time; whatever is left at the end is unknown.
pub(super) struct Obj<'a> {
    prefix: String,
    map: Map<String, Value>,
    known: &'a [&'a str],
}

impl<'a> Obj<'a> {
    pub(super) fn new(
        prefix: &str,
        value: Value,
        known: &'a [&'a str],
    ) -> Result<Self, ConfigError> {
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

    pub(super) fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.prefix, name)
        }
    }

    pub(super) fn take(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    pub(super) fn bool(&mut self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => err(
                self.key(name),
                format!("must be a boolean, got {}", kind(&other)),
            ),
        }
    }

    pub(super) fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => err(
                self.key(name),
                format!("must be a string, got {}", kind(&other)),
            ),
        }
    }

    pub(super) fn nonempty(&mut self, name: &str, default: &str) -> Result<String, ConfigError> {
        match self.string(name)? {
            None => Ok(default.to_string()),
            Some(s) if s.trim().is_empty() => err(self.key(name), "must not be empty"),
            Some(s) => Ok(s),
        }
    }

    /// Integers may arrive as `100.0`: Envoy turns a `google.protobuf.Struct` into JSON
    /// through doubles.
    pub(super) fn int(
        &mut self,
        name: &str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
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

    pub(super) fn choice<T: Copy>(
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

    pub(super) fn object(&mut self, name: &str) -> Result<Option<Value>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(other) => err(
                self.key(name),
                format!("must be a JSON object, got {}", kind(&other)),
            ),
        }
    }

    pub(super) fn finish(self) -> Result<(), ConfigError> {
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

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
