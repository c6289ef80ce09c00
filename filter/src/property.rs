//! Property sources (`subscription_key_property`, `{"property": [...]}`): the path as the ABI
//! takes it, and the typeless bytes a host hands back read as the configuration says.
//!
//! Envoy 1.40 returns (checked in envoy/e2e_identity.py with jwt_authn's `payload_in_metadata`):
//! a string claim and `xds.route_name` as their text, a JSON number claim (a `Struct` number)
//! as an 8-byte little-endian double, an integer property as an 8-byte little-endian integer,
//! a boolean as one byte.

use std::borrow::Cow;

/// How a property's typeless bytes are read (see `decode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropertyAs {
    String,
    Double,
    Int,
    Bool,
}

/// The ABI's property path: the segments joined by NUL.
pub fn abi_path(segments: &[String]) -> Vec<u8> {
    segments.join("\0").into_bytes()
}

/// A property value as event text: a JSON string's content for `String`, else the JSON
/// literal (number or boolean). `None` when the bytes are not what `as_` says (the field is
/// then left out).
pub fn decode(bytes: &[u8], as_: PropertyAs) -> Option<Decoded<'_>> {
    match as_ {
        PropertyAs::String => std::str::from_utf8(bytes)
            .ok()
            .map(|s| Decoded::Text(Cow::Borrowed(s))),
        PropertyAs::Double => {
            let b: [u8; 8] = bytes.try_into().ok()?;
            double_text(f64::from_le_bytes(b)).map(Decoded::Literal)
        }
        PropertyAs::Int => {
            let b: [u8; 8] = bytes.try_into().ok()?;
            Some(Decoded::Literal(i64::from_le_bytes(b).to_string()))
        }
        PropertyAs::Bool => match bytes {
            [b] => Some(Decoded::Literal((*b != 0).to_string())),
            _ => None,
        },
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// Text (a JSON string in the event).
    Text(Cow<'a, str>),
    /// A JSON number or boolean, written as it is.
    Literal(String),
}

impl<'a> Decoded<'a> {
    /// As text, for the subscription key: a number in decimal.
    pub fn into_text(self) -> Cow<'a, str> {
        match self {
            Decoded::Text(t) => t,
            Decoded::Literal(l) => Cow::Owned(l),
        }
    }
}

/// A double as JSON: integral values without a fraction (`42`, not `42.0`); NaN and the
/// infinities, which JSON cannot carry, as `None`.
pub fn double_text(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    // 2^53: every integer below it is exact in a double.
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        return Some((f as i64).to_string());
    }
    serde_json::Number::from_f64(f).map(|n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(bytes: &[u8], as_: PropertyAs) -> Option<String> {
        decode(bytes, as_).map(|d| d.into_text().into_owned())
    }

    #[test]
    fn paths_are_joined_by_nul() {
        let p = [
            "metadata",
            "filter_metadata",
            "envoy.filters.http.jwt_authn",
        ];
        let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            abi_path(&p),
            b"metadata\0filter_metadata\0envoy.filters.http.jwt_authn"
        );
    }

    #[test]
    fn strings_are_text_and_other_bytes_are_absent() {
        assert_eq!(
            lit(b"user-1", PropertyAs::String).as_deref(),
            Some("user-1")
        );
        assert_eq!(lit(b"", PropertyAs::String).as_deref(), Some(""));
        assert_eq!(lit(b"\xff\xfe", PropertyAs::String), None);
    }

    #[test]
    fn doubles_are_numbers_integral_ones_without_a_fraction() {
        let d = |f: f64| lit(&f.to_le_bytes(), PropertyAs::Double);
        assert_eq!(d(42.0).as_deref(), Some("42"));
        assert_eq!(d(-7.0).as_deref(), Some("-7"));
        assert_eq!(d(1.5).as_deref(), Some("1.5"));
        assert_eq!(d(1e300).as_deref(), Some("1e+300"));
        assert_eq!(d(f64::NAN), None);
        assert_eq!(d(f64::INFINITY), None);
        assert_eq!(lit(b"1234567", PropertyAs::Double), None, "not 8 bytes");
        assert!(matches!(
            decode(&42.0f64.to_le_bytes(), PropertyAs::Double),
            Some(Decoded::Literal(_))
        ));
    }

    #[test]
    fn ints_and_bools() {
        assert_eq!(
            lit(&(-3i64).to_le_bytes(), PropertyAs::Int).as_deref(),
            Some("-3")
        );
        assert_eq!(lit(&[1, 2], PropertyAs::Int), None);
        assert_eq!(lit(&[1], PropertyAs::Bool).as_deref(), Some("true"));
        assert_eq!(lit(&[0], PropertyAs::Bool).as_deref(), Some("false"));
        assert_eq!(lit(&[], PropertyAs::Bool), None);
    }
}
