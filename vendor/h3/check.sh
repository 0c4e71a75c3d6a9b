#!/usr/bin/env bash
# Runs the unit tests of the vendored h3's QPACK string coding (prefix_string, with the
# canonical Huffman decoder of PATCHES.md 5). The crate's own test suite does not build outside
# its repository, so a scratch crate includes the module's files by path, with the three it
# uses, and runs their tests.
set -euo pipefail
src=$(cd "$(dirname "$0")/src" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cat >"$work/Cargo.toml" <<TOML
[package]
name = "h3-prefix-string-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
bytes = "1"

[dev-dependencies]
assert_matches = "1.5"

[workspace]
TOML
cat >"$work/src/lib.rs" <<RUST
#![allow(dead_code, unused_imports)]
pub mod proto {
    #[path = "$src/proto/coding.rs"]
    pub mod coding;
    #[path = "$src/proto/varint.rs"]
    pub mod varint;
}
pub mod qpack {
    #[path = "$src/qpack/prefix_int.rs"]
    pub mod prefix_int;
    #[path = "$src/qpack/prefix_string/mod.rs"]
    pub mod prefix_string;
}
RUST
cargo test --quiet --manifest-path "$work/Cargo.toml"
