//! Stamps the filter with the commit it was built from, for the line it logs at VM start
//! (`usage-filter 0.1.0 (abc1234)`): an operator can then tell which code a proxy runs.
//! Outside a git checkout (a source tarball, git missing) the build says "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let sha = git(&here, &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=USAGE_FILTER_GIT_SHA={sha}");
    // HEAD changes on a checkout, the branch's ref on a commit; a ref may also live only in
    // packed-refs. Only files that exist are named: cargo reruns on every build for one
    // that does not.
    if let Some(dir) = git(&here, &["rev-parse", "--absolute-git-dir"]) {
        watch(&PathBuf::from(dir).join("HEAD"));
    }
    if let Some(common) = git(&here, &["rev-parse", "--git-common-dir"]) {
        let common = here.join(common);
        if let Some(branch) = git(&here, &["symbolic-ref", "-q", "HEAD"]) {
            watch(&common.join(branch));
        }
        watch(&common.join("packed-refs"));
    }
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_string())
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
