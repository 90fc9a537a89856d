//! Every input the fuzzers keep, replayed through the same target functions
//! on each `cargo test`: the seeds of each target (tests/fuzz/seeds) and
//! every input that once failed one (tests/fuzz/regressions). CI has no
//! nightly toolchain for cargo-fuzz; this is how what the fuzzers found
//! stays fixed.

#[path = "../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_kept_fuzz_input_still_holds_its_targets_properties() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut failures = Vec::new();
    for (name, target) in targets::TARGETS {
        let mut replayed = 0;
        // FUZZ_REPLAY_CORPUS=1 adds the local working corpus (not committed).
        let mut kinds = vec!["seeds", "regressions"];
        if std::env::var_os("FUZZ_REPLAY_CORPUS").is_some() {
            kinds.push("corpus");
        }
        for kind in kinds {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
            files.sort();
            for file in files {
                let data = std::fs::read(&file).unwrap();
                if std::panic::catch_unwind(|| target(&data)).is_err() {
                    failures.push(file.display().to_string());
                }
                replayed += 1;
            }
        }
        assert!(replayed > 0, "no kept input for the fuzz target {name}");
        println!("{name}: {replayed} inputs");
    }
    assert!(
        failures.is_empty(),
        "inputs that fail their target: {failures:#?}"
    );
}
