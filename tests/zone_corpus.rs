//! The zone-file corpus under `tests/zones/`, all of origin `example.com`:
//!
//! - `good/`: files the majority of BIND (`named-checkzone`), Knot (`kzonecheck`) and NSD
//!   (`nsd-checkzone`) load; foobar must load them.
//! - `bad/`: files with one defect each, which the majority refuses; foobar must refuse them and
//!   name the line marked `; <- defect` (give or take one).
//! - `strict/`: files the majority loads but at least one checker refuses, where foobar sides
//!   with the strict one for the reason the file's first line gives.
//!
//! foobar's verdicts are always checked. The three checkers are run too when installed (CI
//! installs them), so that the folders stay true to what they say.
#![allow(clippy::unwrap_used)]

mod support;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use support::{binary, installed, skip_without};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Good,
    Bad,
    Strict,
}

fn corpus() -> Vec<(Kind, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/zones");
    let mut files = Vec::new();
    for (kind, folder) in [
        (Kind::Good, "good"),
        (Kind::Bad, "bad"),
        (Kind::Strict, "strict"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(folder))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|e| e == "zone"))
            .collect();
        found.sort();
        files.extend(found.into_iter().map(|path| (kind, path)));
    }
    files
}

/// The line of the `; <- defect` marker.
fn marked_line(path: &Path) -> Option<u32> {
    let text = std::fs::read(path).unwrap();
    let text = String::from_utf8_lossy(&text);
    let index = text.lines().position(|line| line.contains("; <- defect"))?;
    Some(index as u32 + 1)
}

/// foobar's verdict: `Ok` or the first error line of `check-zone`.
fn foobar(path: &Path) -> Result<(), String> {
    let output = Command::new(binary())
        .args(["check-zone", "--origin", "example.com"])
        .arg(path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(stderr
            .lines()
            .find(|line| !line.ends_with("(warning)"))
            .unwrap_or_default()
            .to_string()),
        other => panic!(
            "{}: check-zone exited with {other:?}: {stderr}",
            path.display()
        ),
    }
}

/// Whether each checker loads the file, run from the file's folder (BIND reads `$INCLUDE`
/// paths from there).
fn checkers(path: &Path) -> [(&'static str, bool); 3] {
    let folder = path.parent().unwrap();
    let file = path.file_name().unwrap();
    let loads = |program: &str, args: &[&str]| {
        Command::new(program)
            .current_dir(folder)
            .args(args)
            .arg(file)
            .output()
            .unwrap()
            .status
            .success()
    };
    [
        (
            "named-checkzone",
            loads("named-checkzone", &["-q", "example.com"]),
        ),
        ("kzonecheck", loads("kzonecheck", &["-o", "example.com"])),
        ("nsd-checkzone", loads("nsd-checkzone", &["example.com"])),
    ]
}

#[test]
fn the_corpus_is_big_enough() {
    let files = corpus();
    let count = |kind| files.iter().filter(|(k, _)| *k == kind).count();
    assert!(count(Kind::Good) >= 30, "{} good files", count(Kind::Good));
    assert!(count(Kind::Bad) >= 40, "{} bad files", count(Kind::Bad));
    for (kind, path) in &files {
        if *kind != Kind::Good {
            assert!(
                marked_line(path).is_some(),
                "{}: no defect marker",
                path.display()
            );
        }
    }
}

#[test]
fn foobar_loads_the_good_and_names_the_defect_of_the_bad() {
    let mut failures = Vec::new();
    for (kind, path) in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match (kind, foobar(&path)) {
            (Kind::Good, Ok(())) => {}
            (Kind::Good, Err(error)) => failures.push(format!("{name}: refused: {error}")),
            (_, Ok(())) => failures.push(format!("{name}: loaded, but it is defective")),
            (_, Err(error)) => {
                let want = marked_line(&path).unwrap();
                // `file:line: reason`; the file may be an included one.
                let line = error
                    .split(':')
                    .nth(1)
                    .and_then(|n| n.trim().parse::<u32>().ok());
                let close = line.is_some_and(|line| line.abs_diff(want) <= 1);
                if !close || !error.contains(&name) {
                    failures.push(format!("{name}: want line {want}, got: {error}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn foobar_agrees_with_the_majority_of_bind_knot_and_nsd() {
    let tools = [
        ("named-checkzone", "-v"),
        ("kzonecheck", "-V"),
        ("nsd-checkzone", "-h"),
    ];
    if let Some((missing, _)) = tools.iter().find(|(tool, flag)| !installed(tool, &[flag])) {
        return skip_without(
            "foobar_agrees_with_the_majority_of_bind_knot_and_nsd",
            missing,
            "apt-get install bind9-utils knot-dnssecutils nsd",
        );
    }
    let mut failures = Vec::new();
    let (mut agreed, mut total) = (0, 0);
    for (kind, path) in corpus() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let verdicts = checkers(&path);
        let loading = verdicts.iter().filter(|(_, loads)| *loads).count();
        let majority_loads = loading >= 2;
        let ours = foobar(&path).is_ok();
        let ok = match kind {
            Kind::Good | Kind::Bad => {
                total += 1;
                agreed += usize::from(ours == majority_loads);
                ours == majority_loads && majority_loads == (kind == Kind::Good)
            }
            // Loaded by the majority, refused by at least one, and by foobar.
            Kind::Strict => majority_loads && loading < 3 && !ours,
        };
        if !ok {
            failures.push(format!(
                "{kind:?} {name}: foobar loads: {ours}; checkers: {verdicts:?}"
            ));
        }
    }
    eprintln!("foobar agrees with the majority on {agreed}/{total} files");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
