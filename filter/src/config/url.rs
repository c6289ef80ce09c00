//! The http sink's URL shortcut.

/// `http://host:port/path` -> (`host:port`, `/path`). Only plain http: the host terminates TLS
/// through the cluster's transport socket.
pub(super) fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() || auth.contains(['@', ' ']) {
        return None;
    }
    Some((auth.to_string(), path.to_string()))
}
