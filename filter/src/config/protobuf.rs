//! Protobuf's binary encoding of `google.protobuf.Struct`, decoded into JSON. Hand-written
//! because the whole grammar is three messages, and a protobuf crate would cost more
//! `.wasm` than the rest of the configuration code.

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

pub(super) fn decode_struct(b: &[u8]) -> Option<Value> {
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
