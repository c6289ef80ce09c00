//! The JSON reader: one object's keys taken one at a time, each refusal naming the full
//! key path and the rule.

use super::keys::{self, Choice, Flag, Int, Key, Section, Text};
use super::types::{err, ConfigError};
use serde_json::{Map, Value};

/// One JSON object's keys, read one at a time; whatever is left at the end is unknown.
pub(super) struct Obj {
    prefix: String,
    map: Map<String, Value>,
    known: Vec<&'static str>,
}

impl Obj {
    /// The whole configuration.
    pub(super) fn root(value: Value) -> Result<Self, ConfigError> {
        Self::new("", value, keys::children(""))
    }

    /// One of the table's sections (`http`, `http.retry`, `dispatcher`).
    pub(super) fn section(section: &Section, value: Value) -> Result<Self, ConfigError> {
        Self::new(section.path, value, keys::children(section.path))
    }

    /// An object the table does not list key by key (one attribute's `{"header": …}`).
    pub(super) fn new(
        prefix: &str,
        value: Value,
        known: Vec<&'static str>,
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
        // A key the walk reads but the table lacks would be accepted yet documented nowhere;
        // every test that reads it fails here instead.
        #[cfg(test)]
        assert!(
            self.known.contains(&name),
            "{} is read but not in keys::ALL",
            self.key(name)
        );
        match self.map.remove(name) {
            Some(Value::Null) | None => None,
            Some(v) => Some(v),
        }
    }

    /// `k`'s name here; tests check that `k` belongs to this section.
    fn own(&self, k: &dyn Key) -> &'static str {
        #[cfg(test)]
        assert_eq!(self.key(k.name()), k.path(), "read from the wrong section");
        k.name()
    }

    pub(super) fn flag(&mut self, k: &Flag) -> Result<bool, ConfigError> {
        match self.take(self.own(k)) {
            None => Ok(k.default),
            Some(Value::Bool(b)) => Ok(b),
            Some(other) => err(k.path, format!("must be a boolean, got {}", kind(&other))),
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

    pub(super) fn text(&mut self, k: &Text) -> Result<String, ConfigError> {
        match self.string(self.own(k))? {
            None => Ok(k.default.to_string()),
            Some(s) if s.trim().is_empty() => err(k.path, "must not be empty"),
            Some(s) => Ok(s),
        }
    }

    /// Integers may arrive as `100.0`: a `google.protobuf.Struct` holds numbers as doubles.
    /// They may also arrive as text: Envoy's YAML loader makes every number that is not a
    /// 32-bit integer (`100.0`, `1e3`, `3000000000`) a Struct *string* ("Proto3 JSON mapping
    /// allows use string for double"), so a string spelling a whole number counts as one.
    pub(super) fn int(&mut self, k: &Int) -> Result<u64, ConfigError> {
        let (key, min, max) = (k.path, k.min, k.max);
        let v = match self.take(self.own(k)) {
            None => return Ok(k.default),
            Some(v) => v,
        };
        let n = match &v {
            Value::Number(n) => match n.as_u64() {
                Some(u) => Some(u),
                None => whole(n.as_f64(), key, min, max)?,
            },
            Value::String(s) => match s.parse::<u64>() {
                Ok(u) => Some(u),
                Err(_) => match number_text(s) {
                    Some(f) => match whole(Some(f), key, min, max)? {
                        Some(u) => Some(u),
                        None => return err(key, format!("must be a whole number, got \"{s}\"")),
                    },
                    None => {
                        return err(
                            key,
                            format!("must be a whole number, got a string (\"{s}\")"),
                        )
                    }
                },
            },
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

    pub(super) fn choice<T: Copy + PartialEq>(&mut self, k: &Choice<T>) -> Result<T, ConfigError> {
        match self.string(self.own(k))? {
            None => Ok(k.default),
            Some(s) => match k.options.iter().find(|(n, _)| *n == s) {
                Some((_, t)) => Ok(*t),
                None => err(
                    k.path,
                    format!("must be one of {}, got \"{}\"", k.names(), s),
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

/// A double as a whole number: `Some` when whole and not negative, an error naming the range
/// when negative, `None` when it has a fraction (or is not finite).
fn whole(f: Option<f64>, key: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
    match f {
        Some(f) if f.fract() == 0.0 && f >= 0.0 && f <= u64::MAX as f64 => Ok(Some(f as u64)),
        Some(f) if f < 0.0 => {
            // Not `{f}`: formatting a double costs the .wasm ~11 KB, for this message alone.
            let got = match f.fract() == 0.0 && f >= i64::MIN as f64 {
                true => (f as i64).to_string(),
                false => "a negative number".into(),
            };
            err(key, format!("must be between {min} and {max}, got {got}"))
        }
        _ => Ok(None),
    }
}

/// A string that spells a finite JSON/YAML number (`100.0`, `1e3`, `-5`); not `inf`/`NaN`.
fn number_text(s: &str) -> Option<f64> {
    let digits = s.trim_start_matches(['-', '+']);
    if !digits.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite())
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
