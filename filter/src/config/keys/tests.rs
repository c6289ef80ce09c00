use super::*;
use std::collections::BTreeMap;

/// docs/configuration.md's table of keys as key -> default, backticks dropped. A row may name
/// several keys at once (`a` / `b` with defaults `x` / `y`).
fn readme_defaults() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let readme = std::fs::read_to_string(path).unwrap();
    let section = readme
        .split("\n## Keys\n")
        .nth(1)
        .expect("docs/configuration.md has a Keys section");
    let section = section.split("\n## ").next().unwrap();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let keys: Vec<&str> = cells[1].split(" / ").collect();
        let defaults: Vec<&str> = if keys.len() == 1 {
            vec![cells[2]]
        } else {
            cells[2].split(" / ").collect()
        };
        assert_eq!(keys.len(), defaults.len(), "{line}");
        for (k, d) in keys.iter().zip(defaults) {
            let unquote = |s: &str| s.trim().trim_matches('`').to_string();
            let old = rows.insert(unquote(k), unquote(d));
            assert!(old.is_none(), "docs/configuration.md lists {k} twice");
        }
    }
    rows
}

#[test]
// The wasm run has no file system to read docs/ from; the native run checks it.
#[cfg_attr(target_arch = "wasm32", ignore)]
fn readme_lists_every_key_with_its_default() {
    let readme = readme_defaults();
    let table: BTreeMap<String, String> = ALL
        .iter()
        .filter_map(|k| Some((k.path().to_string(), k.shown()?)))
        .collect();
    for (key, default) in &table {
        assert_eq!(
            readme.get(key),
            Some(default),
            "docs/configuration.md's row for {key} (rule: {})",
            ALL.iter().find(|k| k.path() == key).unwrap().rule()
        );
    }
    for key in readme.keys() {
        assert!(
            table.contains_key(key),
            "docs/configuration.md lists {key}, unknown to keys::ALL"
        );
    }
}

#[test]
fn every_key_sits_in_a_section_of_the_table_once() {
    for (i, k) in ALL.iter().enumerate() {
        assert!(
            ALL[..i].iter().all(|o| o.path() != k.path()),
            "{} twice",
            k.path()
        );
        if let Some((parent, _)) = k.path().rsplit_once('.') {
            let section = ALL.iter().find(|o| o.path() == parent);
            assert!(
                section.is_some_and(|s| s.shown().is_none()),
                "{}: {parent} is not a section",
                k.path()
            );
        }
    }
}

#[test]
fn defaults_are_within_their_rules() {
    for k in [
        &HTTP_TIMEOUT_MS,
        &HTTP_BATCH_SIZE,
        &HTTP_MAX_BATCH_BYTES,
        &HTTP_FLUSH_INTERVAL_MS,
        &HTTP_BUFFER_SIZE,
        &HTTP_MAX_IN_FLIGHT,
        &RETRY_MAX_ATTEMPTS,
        &RETRY_INITIAL_BACKOFF_MS,
        &RETRY_MAX_BACKOFF_MS,
        &LLM_MAX_SCAN_BYTES,
    ] {
        assert!((k.min..=k.max).contains(&k.default), "{}", k.path);
    }
    const {
        assert!(HTTP_BATCH_SIZE.default <= HTTP_BUFFER_SIZE.default);
        assert!(RETRY_INITIAL_BACKOFF_MS.default <= RETRY_MAX_BACKOFF_MS.default);
    }
}
