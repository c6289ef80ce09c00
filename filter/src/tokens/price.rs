//! `llm.prices`: the price of a model's tokens and a response's cost, in integers only.
//! Prices are held in nano-units (1e-9 of the currency) per million tokens, so a price with
//! at most 9 decimals is held exactly, and a cost is rounded once, at the end, to 1e-9.

use super::{Usage, CACHED, CACHE_WRITE, COST, INPUT, OUTPUT};

/// One model's prices, nano-units per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Price {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write_input: u64,
    pub output: u64,
}

/// The price table: exact names, and prefixes (a name that ended in `*`) longest first, so
/// the first prefix that matches is the longest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prices {
    exact: Vec<(String, Price)>,
    prefixes: Vec<(String, Price)>,
}

impl Prices {
    /// `name` as configured: a trailing `*` makes it a prefix.
    pub fn insert(&mut self, name: &str, price: Price) {
        match name.strip_suffix('*') {
            Some(prefix) => {
                let at = self
                    .prefixes
                    .partition_point(|(p, _)| p.len() >= prefix.len());
                self.prefixes.insert(at, (prefix.to_string(), price));
            }
            None => self.exact.push((name.to_string(), price)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefixes.is_empty()
    }

    /// An exact name wins, then the longest prefix.
    pub fn find(&self, model: &str) -> Option<&Price> {
        self.exact
            .iter()
            .find(|(n, _)| n == model)
            .or_else(|| {
                self.prefixes
                    .iter()
                    .find(|(p, _)| model.starts_with(p.as_str()))
            })
            .map(|(_, p)| p)
    }
}

/// The cost of normalized `u` at `p`, in nano-units: uncached input, cached, cache-write and
/// output tokens each at their price, summed exactly and rounded half-up once. `None` when
/// `u` has no input or output count.
pub fn cost(p: &Price, u: &Usage) -> Option<u64> {
    if u.get(INPUT).is_none() && u.get(OUTPUT).is_none() {
        return None;
    }
    let n = |i| u128::from(u.get(i).unwrap_or(0));
    let (cached, write) = (n(CACHED), n(CACHE_WRITE));
    let uncached = n(INPUT).saturating_sub(cached).saturating_sub(write);
    // each product is below 2^128 / 4, so the sum cannot overflow
    let sum = uncached * u128::from(p.input)
        + cached * u128::from(p.cached_input)
        + write * u128::from(p.cache_write_input)
        + n(OUTPUT) * u128::from(p.output);
    Some(u64::try_from((sum + 500_000) / 1_000_000).unwrap_or(u64::MAX))
}

/// `u` with its cost at `p` set, when it has one.
pub fn priced(p: &Price, mut u: Usage) -> Usage {
    if let Some(c) = cost(p, &u) {
        u.set(COST, c);
    }
    u
}

/// A decimal as JSON writes it (`2.5`, `0.000001`, `1e-7`, `3`) in nano-units: `None` when it
/// is negative, has more than 9 decimals or exceeds a u64 of nano-units. Read from the text,
/// never through a float, so `0.3` is exactly 300000000.
pub fn parse_nanos(text: &str) -> Option<u64> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) {
        return None;
    }
    // value = digits × 10^(exp - frac.len()); nano-units = digits × 10^(exp - frac.len() + 9)
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let shift = exp
        .checked_sub(i32::try_from(frac.len()).ok()?)?
        .checked_add(9)?;
    if digits.is_empty() {
        return Some(0);
    }
    let (digits, shift) = if shift < 0 {
        // the dropped digits must all be zero, or there were more than 9 decimals
        let keep = digits.len().checked_sub(usize::try_from(-shift).ok()?)?;
        if digits[keep..].bytes().any(|b| b != b'0') {
            return None;
        }
        (&digits[..keep], 0)
    } else {
        (digits, shift)
    };
    let mut n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in 0..shift {
        n = n.checked_mul(10)?;
    }
    Some(n)
}

/// Nano-units as a JSON number: `0.00325`, `12`, never an exponent.
pub fn write_nanos(out: &mut Vec<u8>, nanos: u64) {
    let (whole, frac) = (nanos / 1_000_000_000, nanos % 1_000_000_000);
    out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
    if frac != 0 {
        let digits = format!(".{frac:09}");
        out.extend_from_slice(digits.trim_end_matches('0').as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_become_exact_nano_units() {
        for (text, want) in [
            ("0", Some(0)),
            ("3", Some(3_000_000_000)),
            ("2.5", Some(2_500_000_000)),
            ("0.3", Some(300_000_000)),
            ("1.25", Some(1_250_000_000)),
            ("0.000000001", Some(1)),
            ("1e-9", Some(1)),
            ("1.5E2", Some(150_000_000_000)),
            ("2.50000000000", Some(2_500_000_000)),
            ("0.0000000001", None),
            ("1e-10", None),
            ("-1", None),
            ("", None),
            ("1.", Some(1_000_000_000)),
            (".5", None),
            ("abc", None),
            ("18446744074", None),
            ("1e400", None),
        ] {
            assert_eq!(parse_nanos(text), want, "{text}");
        }
    }

    #[test]
    fn nano_units_print_without_float_noise() {
        for (n, want) in [
            (0, "0"),
            (1, "0.000000001"),
            (3_250_000, "0.00325"),
            (12_000_000_000, "12"),
            (12_340_000_000, "12.34"),
        ] {
            let mut out = Vec::new();
            write_nanos(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    fn price(input: &str, cached: &str, write: &str, output: &str) -> Price {
        let n = |s| parse_nanos(s).unwrap();
        Price {
            input: n(input),
            cached_input: n(cached),
            cache_write_input: n(write),
            output: n(output),
        }
    }

    #[test]
    fn an_exact_name_wins_then_the_longest_prefix() {
        let mut t = Prices::default();
        let (a, b, c, d) = (
            price("1", "1", "1", "1"),
            price("2", "2", "2", "2"),
            price("3", "3", "3", "3"),
            price("4", "4", "4", "4"),
        );
        t.insert("claude*", a);
        t.insert("claude-sonnet-4*", b);
        t.insert("claude-sonnet-4-5", c);
        t.insert("*", d);
        assert_eq!(t.find("claude-sonnet-4-5"), Some(&c));
        assert_eq!(t.find("claude-sonnet-4-5-20250929"), Some(&b));
        assert_eq!(t.find("claude-haiku"), Some(&a));
        assert_eq!(t.find("gpt-4o"), Some(&d));
        assert_eq!(Prices::default().find("gpt-4o"), None);
    }

    #[test]
    fn cost_prices_each_part_and_rounds_half_up_once() {
        let p = price("3", "0.3", "3.75", "15");
        let mut u = Usage::default();
        // 1000 input of which 200 cached and 100 written; 50 output
        for (i, n) in [
            (INPUT, 1000),
            (CACHED, 200),
            (CACHE_WRITE, 100),
            (OUTPUT, 50),
        ] {
            u.set(i, n);
        }
        // 700×3 + 200×0.3 + 100×3.75 + 50×15 = 2100 + 60 + 375 + 750 = 3285 per 1e6
        assert_eq!(cost(&p, &u), Some(3_285_000));
        // one token at 0.0000005 per million is 5e-13: rounds to 0; 1000 of them to 1e-9 (half up)
        let tiny = price("0.000000001", "0", "0", "0");
        let mut one = Usage::default();
        one.set(INPUT, 500_000);
        assert_eq!(cost(&tiny, &one), Some(1), "0.5e-9 rounds up");
        one.set(INPUT, 499_999);
        assert_eq!(cost(&tiny, &one), Some(0));
        assert_eq!(cost(&p, &Usage::default()), None);
        let mut huge = Usage::default();
        huge.set(INPUT, u64::MAX);
        assert_eq!(cost(&price("1000", "0", "0", "0"), &huge), Some(u64::MAX));
    }
}
