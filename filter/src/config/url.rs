//! The http sink's URL shortcut.

/// `http://host:port/path` -> (`host:port`, `/path`). Only plain http: the host terminates TLS
/// through the cluster's transport socket. A port, when given, must be a number 1..=65535:
/// the host would refuse every callout to anything else (BadArgument), and every event
/// would be dropped as a send failure. The error says what is wrong with the URL.
pub(super) fn split_url(url: &str) -> Result<(String, String), String> {
    let shape = || format!("must look like http://host:port/path, got \"{url}\"");
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(shape)?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() || auth.contains(['@', ' ']) {
        return Err(shape());
    }
    // `[v6]` or `[v6]:port`; else `host` or `host:port` with one colon at most.
    let port = if let Some(v6) = auth.strip_prefix('[') {
        let (_, after) = v6.split_once(']').ok_or_else(shape)?;
        match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(shape)?),
        }
    } else {
        match auth.split_once(':') {
            Some((_, p)) if p.contains(':') => return Err(shape()),
            Some(("", _)) => return Err(shape()),
            Some((_, p)) => Some(p),
            None => None,
        }
    };
    if let Some(p) = port {
        let ok = !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
        if !ok {
            return Err(format!(
                "port must be a number 1..=65535, got \"{p}\" in \"{url}\""
            ));
        }
    }
    Ok((auth.to_string(), path.to_string()))
}
