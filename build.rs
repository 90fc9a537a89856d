//! Records the git revision the binary is built from, for
//! `hello_oauth_build_info{git_revision}`: `HELLO_OAUTH_GIT_REVISION` from
//! the build environment if set, else `git rev-parse`, else `unknown`. A
//! build without git (a source archive, a builder image without it) works.
//!
//! It also hands the linker `link/startup-order.txt`, the functions start-up
//! runs, so that they are laid out together at the start of `.text` instead
//! of spread over all of it (docs/performance.md, "Idle RSS");
//! `scripts/startup-order` regenerates the file.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HELLO_OAUTH_GIT_REVISION");
    let revision = std::env::var("HELLO_OAUTH_GIT_REVISION")
        .ok()
        .filter(|r| is_revision(r))
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=HELLO_OAUTH_GIT_REVISION={revision}");
    startup_order();
}

/// Passes the start-up order file to the linker, for the `hello-oauth`
/// binary only. Only for lld, the linker Rust uses on x86_64 Linux (GNU ld
/// has no such option): skipped when the build names another linker.
/// Symbols the file names that the build does not have (it was made from an
/// older build) are ignored: the order is a layout hint, never a
/// requirement, and no build fails or behaves differently because of it.
/// `HELLO_OAUTH_LINK_MAP=<path>` also writes the linker's map file, which
/// `scripts/startup-order` reads to name the functions start-up ran.
fn startup_order() {
    println!("cargo:rerun-if-env-changed=HELLO_OAUTH_LINK_MAP");
    println!("cargo:rerun-if-env-changed=RUSTFLAGS");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let target = std::env::var("TARGET").unwrap_or_default();
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let linker_env = format!(
        "CARGO_TARGET_{}_LINKER",
        target.to_uppercase().replace(['-', '.'], "_")
    );
    println!("cargo:rerun-if-env-changed={linker_env}");
    let other_linker = flags.contains("linker")
        || flags.contains("link-self-contained")
        || std::env::var_os(&linker_env).is_some();
    if target != "x86_64-unknown-linux-gnu" || other_linker {
        return;
    }
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let file = format!("{dir}/link/startup-order.txt");
    println!("cargo:rerun-if-changed={file}");
    if let Ok(order) = std::fs::read_to_string(&file) {
        println!("cargo:rustc-link-arg-bin=hello-oauth=-Wl,--symbol-ordering-file={file}");
        println!("cargo:rustc-link-arg-bin=hello-oauth=-Wl,--no-warn-symbol-ordering");
        let made_for = order
            .lines()
            .next()
            .and_then(|line| line.strip_prefix(ORDER_KEY_PREFIX));
        let key = format!("{:016x}", build_key(&dir));
        if made_for != Some(key.as_str()) {
            println!(
                "cargo:warning=link/startup-order.txt was made for other dependencies, \
                 manifest or toolchain, so most of its names no longer match: the binary \
                 works, but idle memory grows by about 2 MiB until `scripts/startup-order` \
                 is rerun (docs/performance.md, \"Idle RSS\")"
            );
        }
    }
    if let Some(map) = std::env::var_os("HELLO_OAUTH_LINK_MAP") {
        let map = map.to_string_lossy();
        println!("cargo:rustc-link-arg-bin=hello-oauth=-Wl,-Map={map}");
    }
}

/// How `scripts/startup-order` starts the file's first line; the rest is
/// [`build_key`] when it was made.
const ORDER_KEY_PREFIX: &str = "# made for build inputs ";

/// FNV-1a over what symbol names depend on besides the code: the exact
/// dependencies, the manifest and the toolchain. `scripts/startup-order`
/// computes the same hash (`build_key` there).
fn build_key(dir: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for name in ["Cargo.lock", "Cargo.toml", "rust-toolchain.toml"] {
        let path = format!("{dir}/{name}");
        let data = std::fs::read(&path).unwrap_or_default();
        if !data.is_empty() {
            println!("cargo:rerun-if-changed={path}");
        }
        for byte in data.iter().chain(std::iter::once(&0)) {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
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
