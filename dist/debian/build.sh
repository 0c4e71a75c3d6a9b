#!/usr/bin/env bash
# Builds the Debian package into target/debian/: the binary, its man pages (generated from the
# command line's definition with clap_mangen), the systemd unit, /etc/foobar, the default site.
#
#   dist/debian/build.sh            # release build
#   dist/debian/build.sh --dev      # the debug build (quicker; what CI installs and checks)
set -euo pipefail
cd "$(dirname "$0")/../.."
profile=release
[ "${1:-}" = --dev ] && profile=dev
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
cargo build --profile "$profile" --bin foobar
binary=target/$([ "$profile" = dev ] && echo debug || echo release)/foobar
rm -rf target/man
"$binary" manpages target/man
gzip -9n target/man/*.1
cargo deb --no-build --profile "$profile" --no-strip
