//! Every fuzz seed and every input a fuzzer once crashed on, replayed through the fuzz
//! targets' own checks (`fuzz/checks.rs`), so a fixed crash stays fixed without a fuzzer.
#![allow(clippy::unwrap_used)]

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for folder in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".keep") {
                continue;
            }
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&data));
            assert!(outcome.is_ok(), "{} fails", path.display());
            count += 1;
        }
    }
    assert!(count > 0, "no inputs for {target}");
}

#[test]
fn query_inputs() {
    replay("query", checks::query);
}

#[test]
fn zone_file_inputs() {
    replay("zone_file", checks::zone_file);
}

#[test]
fn snapshot_inputs() {
    replay("snapshot", checks::snapshot);
}

#[test]
fn transfer_in_inputs() {
    replay("transfer_in", checks::transfer_in);
}

#[test]
fn frame_inputs() {
    replay("frame", checks::frame);
}
