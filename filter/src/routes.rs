//! Route templates (`path_templates`): `/v1/users/{id}/orders/{order_id}` matched against a
//! request path, so meters group by route rather than by one path per user. Pure: compiled
//! once at configure time, matched per request with no host call.
//!
//! The templates are compiled into a trie of path segments (a literal child per distinct
//! segment text, sorted for binary search; one child for `{name}`; a terminal for `{*name}`).
//! A request walks only the branches its own segments select, so the work grows with the
//! path's depth and the few templates that share its segments, not with how many templates
//! there are. "The first template that matches wins" is kept by carrying each template's
//! position: of all the templates a path matches, the smallest position is the answer, and a
//! branch whose best position cannot beat the one found is not entered.

/// The most templates a configuration may list.
pub const MAX_TEMPLATES: usize = 1000;

/// A template refused at configure time: the rule it broke (the caller names the key).
pub type Refusal = String;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routes {
    /// The templates as written: the event's `api_route`.
    templates: Vec<String>,
    root: Node,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// Literal segments, sorted by (hash, bytes): a lookup compares integers, not the
    /// shared prefixes of `resource1` … `resource499`, then the bytes once.
    literals: Vec<(u64, Box<[u8]>, Node)>,
    /// `{name}`: any one non-empty segment.
    param: Option<Box<Node>>,
    /// A template that ends here (the path has no more segments).
    end: Option<u32>,
    /// A template whose `{*name}` starts here (one segment or more remain).
    rest: Option<u32>,
    /// The smallest template position anywhere at or below this node: a walk skips a branch
    /// that cannot beat what it has.
    best: u32,
}

/// FNV-1a: a few instructions a byte, computed once per path segment that meets literals.
fn hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

enum Seg<'a> {
    Literal(&'a [u8]),
    Param,
    Rest,
}

/// One template's segments, or why it is refused.
fn segments(t: &str) -> Result<Vec<Seg<'_>>, Refusal> {
    let Some(body) = t.strip_prefix('/') else {
        return Err(format!("\"{t}\" must start with '/'"));
    };
    if t.contains(['?', '#']) {
        return Err(format!(
            "\"{t}\" must be a path without a query or fragment"
        ));
    }
    let parts: Vec<&str> = body.split('/').collect();
    let last = parts.len() - 1;
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        if !p.contains(['{', '}']) {
            out.push(Seg::Literal(p.as_bytes()));
            continue;
        }
        let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) else {
            return Err(format!(
                "\"{t}\": a parameter must be a whole segment, got \"{p}\""
            ));
        };
        let (rest, name) = match name.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, name),
        };
        if name.is_empty() || name.contains(['{', '}', '*']) {
            return Err(format!(
                "\"{t}\": a parameter needs a name, like {{id}} or {{*rest}}, got \"{p}\""
            ));
        }
        if rest && i != last {
            return Err(format!("\"{t}\": {{*{name}}} must be the last segment"));
        }
        out.push(if rest { Seg::Rest } else { Seg::Param });
    }
    Ok(out)
}

impl Default for Routes {
    fn default() -> Self {
        Routes {
            templates: Vec::new(),
            root: Node::new(),
        }
    }
}

impl Routes {
    /// Compiles the templates in order; the error names the template's position and rule.
    pub fn new(templates: Vec<String>) -> Result<Routes, (usize, Refusal)> {
        if templates.len() > MAX_TEMPLATES {
            return Err((
                MAX_TEMPLATES,
                format!("at most {MAX_TEMPLATES} templates, got {}", templates.len()),
            ));
        }
        let mut root = Node::new();
        for (i, t) in templates.iter().enumerate() {
            let segs = segments(t).map_err(|rule| (i, rule))?;
            root.insert(&segs, i as u32);
        }
        Ok(Routes { templates, root })
    }

    /// The position of the first template that matches `path` (no query), if any.
    pub fn find(&self, path: &[u8]) -> Option<u32> {
        if self.templates.is_empty() {
            return None;
        }
        let rest = path.strip_prefix(b"/")?;
        let mut found = u32::MAX;
        self.root.walk(rest, &mut found);
        (found != u32::MAX).then_some(found)
    }

    /// The template at a position `find` returned.
    pub fn template(&self, i: u32) -> Option<&str> {
        self.templates.get(i as usize).map(String::as_str)
    }
}

impl Node {
    fn new() -> Node {
        Node {
            best: u32::MAX,
            ..Node::default()
        }
    }

    fn insert(&mut self, segs: &[Seg<'_>], i: u32) {
        self.best = self.best.min(i);
        let Some((first, more)) = segs.split_first() else {
            self.end.get_or_insert(i);
            return;
        };
        let child = match first {
            Seg::Rest => {
                self.rest.get_or_insert(i);
                return;
            }
            Seg::Param => self.param.get_or_insert_with(|| Box::new(Node::new())),
            Seg::Literal(lit) => {
                let h = hash(lit);
                let at = match self
                    .literals
                    .binary_search_by(|(lh, l, _)| (*lh, &**l).cmp(&(h, lit)))
                {
                    Ok(at) => at,
                    Err(at) => {
                        self.literals.insert(at, (h, (*lit).into(), Node::new()));
                        at
                    }
                };
                &mut self.literals[at].2
            }
        };
        child.insert(more, i);
    }

    /// `rest` is what follows the '/' that led here: one segment or more (possibly empty).
    fn walk(&self, rest: &[u8], found: &mut u32) {
        if self.best >= *found {
            return;
        }
        if let Some(r) = self.rest {
            // `{*name}` takes one segment or more: a non-empty remainder.
            if !rest.is_empty() {
                *found = (*found).min(r);
            }
        }
        let (seg, tail) = match rest.iter().position(|&b| b == b'/') {
            Some(at) => (&rest[..at], Some(&rest[at + 1..])),
            None => (rest, None),
        };
        let next = |n: &Node, found: &mut u32| match tail {
            Some(t) => n.walk(t, found),
            None => {
                if let Some(e) = n.end {
                    *found = (*found).min(e);
                }
            }
        };
        if !self.literals.is_empty() {
            let h = hash(seg);
            let first = self.literals.partition_point(|(lh, _, _)| *lh < h);
            let same = self.literals[first..]
                .iter()
                .take_while(|(lh, _, _)| *lh == h);
            if let Some((_, _, n)) = same.into_iter().find(|(_, l, _)| **l == *seg) {
                next(n, found);
            }
        }
        if let Some(p) = &self.param {
            if !seg.is_empty() && p.best < *found {
                next(p, found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(ts: &[&str]) -> Routes {
        Routes::new(ts.iter().map(|t| t.to_string()).collect()).unwrap()
    }

    fn route<'a>(r: &'a Routes, path: &str) -> Option<&'a str> {
        r.find(path.as_bytes()).and_then(|i| r.template(i))
    }

    #[test]
    fn a_parameter_matches_one_segment_and_the_whole_path_must_match() {
        let r = routes(&["/v1/users/{id}", "/v1/users/{id}/orders/{order_id}"]);
        assert_eq!(route(&r, "/v1/users/42"), Some("/v1/users/{id}"));
        assert_eq!(
            route(&r, "/v1/users/42/orders/7"),
            Some("/v1/users/{id}/orders/{order_id}")
        );
        for miss in [
            "/v1/users/42/",
            "/v1/users/",
            "/v1/users",
            "/v1/users/42/orders",
            "/v1/users/42/orders/7/x",
            "/v2/users/42",
            "",
            "v1/users/42",
        ] {
            assert_eq!(route(&r, miss), None, "{miss}");
        }
    }

    #[test]
    fn a_final_rest_parameter_matches_one_segment_or_more() {
        let r = routes(&["/files/{*path}"]);
        assert_eq!(route(&r, "/files/a"), Some("/files/{*path}"));
        assert_eq!(route(&r, "/files/a/b/c.txt"), Some("/files/{*path}"));
        assert_eq!(route(&r, "/files/"), None);
        assert_eq!(route(&r, "/files"), None);
        let all = routes(&["/{*all}"]);
        assert_eq!(route(&all, "/x/y"), Some("/{*all}"));
        assert_eq!(route(&all, "/"), None);
    }

    #[test]
    fn the_first_template_that_matches_wins() {
        let r = routes(&["/v1/{kind}/me", "/v1/users/me", "/v1/{*rest}"]);
        assert_eq!(route(&r, "/v1/users/me"), Some("/v1/{kind}/me"));
        let r = routes(&["/v1/users/me", "/v1/{kind}/me", "/v1/{*rest}"]);
        assert_eq!(route(&r, "/v1/users/me"), Some("/v1/users/me"));
        assert_eq!(route(&r, "/v1/orgs/me"), Some("/v1/{kind}/me"));
        assert_eq!(route(&r, "/v1/orgs/you"), Some("/v1/{*rest}"));
        let r = routes(&["/v1/{*rest}", "/v1/users/me"]);
        assert_eq!(route(&r, "/v1/users/me"), Some("/v1/{*rest}"));
        // a literal branch that fails deeper gives way to a parameter branch
        let r = routes(&["/a/b/c", "/a/{x}/d"]);
        assert_eq!(route(&r, "/a/b/d"), Some("/a/{x}/d"));
    }

    #[test]
    fn literals_are_compared_as_bytes() {
        let r = routes(&["/", "/a//b", "/ключ/{id}"]);
        assert_eq!(route(&r, "/"), Some("/"));
        assert_eq!(route(&r, "/a//b"), Some("/a//b"));
        assert_eq!(route(&r, "/ключ/1"), Some("/ключ/{id}"));
        assert_eq!(route(&r, "/A//b"), None);
    }

    #[test]
    fn a_parameter_does_not_match_an_empty_segment() {
        let r = routes(&["/a/{id}/b"]);
        assert_eq!(route(&r, "/a//b"), None);
    }

    #[test]
    fn bad_templates_are_refused_naming_the_template() {
        for (t, rule) in [
            ("v1/users", "must start with '/'"),
            ("", "must start with '/'"),
            ("/v1/{}", "needs a name"),
            ("/v1/{*}", "needs a name"),
            ("/v1/{*rest}/x", "must be the last segment"),
            ("/v1/user-{id}", "must be a whole segment"),
            ("/v1/{id", "must be a whole segment"),
            ("/v1/{a}{b}", "needs a name"),
            ("/v1?x=1", "without a query"),
        ] {
            let e = Routes::new(vec!["/ok".into(), t.to_string()]).unwrap_err();
            assert_eq!(e.0, 1, "{t}");
            assert!(
                e.1.contains(rule) && e.1.contains(&format!("\"{t}\"")),
                "{t}: {}",
                e.1
            );
        }
        let many = vec!["/x".to_string(); MAX_TEMPLATES + 1];
        assert!(Routes::new(many).unwrap_err().1.contains("at most 1000"));
        assert!(Routes::new(vec!["/x".to_string(); MAX_TEMPLATES]).is_ok());
    }

    /// The brute-force reading of the rules, to hold the trie to.
    fn naive(ts: &[String], path: &str) -> Option<usize> {
        let p: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        ts.iter().position(|t| {
            let s: Vec<&str> = t[1..].split('/').collect();
            let rest = s.last().is_some_and(|l| l.starts_with("{*"));
            if rest {
                let k = s.len() - 1;
                if p.len() < k + 1 || (p.len() == k + 1 && p[k].is_empty()) {
                    return false;
                }
                if p.len() > k + 1 && p[k..].join("/").is_empty() {
                    return false;
                }
            } else if p.len() != s.len() {
                return false;
            }
            s.iter().zip(&p).all(|(a, b)| {
                if a.starts_with("{*") {
                    true
                } else if a.starts_with('{') {
                    !b.is_empty()
                } else {
                    a == b
                }
            })
        })
    }

    #[test]
    fn the_trie_agrees_with_the_plain_reading() {
        let words = ["a", "b", "{x}", "{y}", "{*r}", ""];
        let mut ts = Vec::new();
        // every template of up to three segments from `words` (rest only last), in a fixed
        // shuffled order
        let more: Vec<&str> = words.iter().copied().chain(["-"]).collect();
        for a in words {
            for b in &more {
                for c in &more {
                    let mut s: Vec<&str> = vec![a];
                    if *b != "-" {
                        s.push(b);
                        if *c != "-" {
                            s.push(c);
                        }
                    }
                    let t = format!("/{}", s.join("/"));
                    if segments(&t).is_ok() {
                        ts.push(t);
                    }
                }
            }
        }
        let mut seed = 7u64;
        for i in (1..ts.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            ts.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let r = Routes::new(ts.clone()).unwrap();
        let segs = ["a", "b", "c", ""];
        let mut paths = vec!["/".to_string()];
        for a in segs {
            paths.push(format!("/{a}"));
            for b in segs {
                paths.push(format!("/{a}/{b}"));
                for c in segs {
                    paths.push(format!("/{a}/{b}/{c}"));
                    for d in segs {
                        paths.push(format!("/{a}/{b}/{c}/{d}"));
                    }
                }
            }
        }
        for p in &paths {
            for n in [5, 40, ts.len()] {
                let sub = Routes::new(ts[..n.min(ts.len())].to_vec()).unwrap();
                assert_eq!(
                    sub.find(p.as_bytes()).map(|i| i as usize),
                    naive(&ts[..n.min(ts.len())], p),
                    "{p} with {n} templates"
                );
            }
            assert_eq!(
                r.find(p.as_bytes()).map(|i| i as usize),
                naive(&ts, p),
                "{p}"
            );
        }
    }
}
