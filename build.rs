//! Records the git revision the binary is built from, for
//! `hello_oauth_build_info{git_revision}`: `HELLO_OAUTH_GIT_REVISION` from
//! the build environment if set, else `git rev-parse`, else `unknown`. A
//! build without git (a source archive, a builder image without it) works.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HELLO_OAUTH_GIT_REVISION");
    let revision = std::env::var("HELLO_OAUTH_GIT_REVISION")
        .ok()
        .filter(|r| is_revision(r))
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HELLO_OAUTH_GIT_REVISION={revision}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned())
}

fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"]).filter(|r| is_revision(r))?;
    // Rebuild when HEAD moves: HEAD itself, and the branch it points to.
    // (A missing file would make cargo rerun this script on every build.)
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    for path in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(p) = git(&["rev-parse", "--git-path", path])
            && std::path::Path::new(&p).exists()
        {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    Some(revision)
}

/// A short or full hexadecimal revision, nothing else (the value ends up in
/// a metric label).
fn is_revision(r: &str) -> bool {
    (7..=40).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_hexdigit())
}
