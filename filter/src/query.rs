//! Query-string attributes (`{"query": NAME}`): read from the `:path` the request map already
//! holds, so no host call. Decoded as `application/x-www-form-urlencoded` is: `+` is a space,
//! `%XX` a byte; the first of repeated parameters wins.

use std::borrow::Cow;

/// The query of a `:path`: after the first `?`, up to a `#`; empty when there is none.
pub fn of_path(path: &[u8]) -> &[u8] {
    // A '#' before any '?' ends the path: there is no query (as `event::strip_query` cuts).
    let Some(q) = crate::swar::find_any(path, [b'?', b'#']) else {
        return &[];
    };
    if path[q] == b'#' {
        return &[];
    }
    let q = &path[q + 1..];
    match q.iter().position(|&b| b == b'#') {
        Some(end) => &q[..end],
        None => q,
    }
}

/// The decoded value of the first parameter called `name` (compared after decoding); `None`
/// when it is absent. A parameter without `=` has the empty value.
pub fn param<'a>(query: &'a [u8], name: &str) -> Option<Cow<'a, [u8]>> {
    query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .find_map(|pair| {
            let (n, v) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode(n).as_ref() == name.as_bytes()).then(|| decode(v))
        })
}

/// Form decoding: `+` is a space, `%XX` the byte XX; a `%` not followed by two hex digits
/// stays as it is. Borrowed when there is nothing to decode.
pub fn decode(s: &[u8]) -> Cow<'_, [u8]> {
    if !s.iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => match (s.get(i + 1).and_then(hex), s.get(i + 2).and_then(hex)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    Cow::Owned(out)
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, name: &str) -> Option<String> {
        param(of_path(path.as_bytes()), name).map(|v| String::from_utf8(v.into_owned()).unwrap())
    }

    #[test]
    fn the_query_is_between_the_question_mark_and_the_fragment() {
        assert_eq!(of_path(b"/a?x=1&y=2#f"), b"x=1&y=2");
        assert_eq!(of_path(b"/a?"), b"");
        assert_eq!(of_path(b"/a#f?x=1"), b"");
        assert_eq!(of_path(b"/a"), b"");
    }

    #[test]
    fn parameters_are_form_decoded_and_the_first_wins() {
        assert_eq!(
            get("/v1?plan=pro&plan=free", "plan").as_deref(),
            Some("pro")
        );
        assert_eq!(get("/v1?q=a+b%20c%2Bd", "q").as_deref(), Some("a b c+d"));
        assert_eq!(
            get("/v1?region=eu%2Dwest", "region").as_deref(),
            Some("eu-west")
        );
        assert_eq!(get("/v1?flag&x=1", "flag").as_deref(), Some(""));
        assert_eq!(get("/v1?x=1", "flag"), None);
        assert_eq!(get("/v1", "flag"), None);
        assert_eq!(get("/v1?a%5Bb%5D=1", "a[b]").as_deref(), Some("1"));
        assert_eq!(get("/v1?k=%zz%4", "k").as_deref(), Some("%zz%4"));
        assert_eq!(get("/v1?&&k=v&", "k").as_deref(), Some("v"));
        assert_eq!(get("/v1?k=a=b", "k").as_deref(), Some("a=b"));
        assert_eq!(get("/v1?k=%C3%A9", "k").as_deref(), Some("é"));
    }
}
