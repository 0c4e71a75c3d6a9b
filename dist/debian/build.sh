#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the binary, its man pages (generated from the
# command line's definition with clap_mangen), the systemd unit, /etc/foobar, the default site.
# Then: dpkg -i target/debian/foobar_*.deb (dist/debian/check.sh does, and checks it).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --release --bin foobar
rm -rf target/man
target/release/foobar manpages target/man
gzip -9n target/man/*.1
cargo deb --no-build
