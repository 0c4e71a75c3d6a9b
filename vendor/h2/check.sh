#!/usr/bin/env bash
# Runs the unit tests of the vendored h2's HPACK coding (its encoder with the repeated-block
# patch of PATCHES.md 8, its decoder, table and Huffman code). The crate's own test suite does
# not build outside its repository (it needs its dev-dependencies and fixtures), so a scratch
# crate includes the module's files by path, with the one type they use from the rest of the
# crate, and runs their tests.
set -euo pipefail
src=$(cd "$(dirname "$0")/src" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
cat >"$work/Cargo.toml" <<TOML
[package]
name = "h2-hpack-check"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
bytes = "1"
fnv = "1"
http = "1"
tracing = { version = "0.1", default-features = false, features = ["std"] }

[dev-dependencies]
# The Huffman tests' random strings, as h2's own dev-dependency.
rand = "0.8"

[workspace]
TOML
cat >"$work/src/lib.rs" <<RUST
#![allow(dead_code, unused_imports)]
pub mod frame {
    #[derive(Debug)]
    pub enum Error {
        Hpack(crate::hpack::DecoderError),
    }
}
#[path = "$src/ext.rs"]
pub mod ext;
pub mod hpack {
    #[path = "$src/hpack/decoder.rs"]
    mod decoder;
    #[path = "$src/hpack/encoder.rs"]
    mod encoder;
    #[path = "$src/hpack/header.rs"]
    pub(crate) mod header;
    #[path = "$src/hpack/huffman/mod.rs"]
    pub(crate) mod huffman;
    #[path = "$src/hpack/table.rs"]
    mod table;

    pub use self::decoder::{Decoder, DecoderError, NeedMore};
    pub use self::encoder::Encoder;
    pub use self::header::{BytesStr, Header};
}
RUST
# One upstream test is marked ignored (an empty placeholder); it is named here so that the
# run reports no ignored test.
cargo test --quiet --manifest-path "$work/Cargo.toml" -- --skip test_evicted_overflow
