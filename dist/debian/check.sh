#!/usr/bin/env bash
# Installs the package that build.sh made (as root, with dpkg) and checks what it put in place:
# the binary and its revision, the system user, a unit systemd accepts, man pages that render,
# a configuration that loads. Then removes it again. CI runs it.
set -euo pipefail
cd "$(dirname "$0")/../.."
deb=$(ls -t target/debian/foobar_*.deb | head -n 1)
echo "installing $deb"
dpkg -i "$deb"
trap 'dpkg --purge foobar >/dev/null' EXIT

version=$(foobar --version)
echo "$version"
grep -Eq '^foobar [0-9.]+ \(([0-9a-f]{12}|unknown)' <<<"$version" ||
  { echo "no revision in the version" >&2; exit 1; }
getent passwd foobar >/dev/null || { echo "no foobar user" >&2; exit 1; }
systemd-analyze verify /lib/systemd/system/foobar.service
for page in foobar foobar-serve foobar-ctl foobar-upgrade; do
  man -l "/usr/share/man/man1/$page.1.gz" 2>/dev/null | grep -q "^NAME" ||
    { echo "man page $page does not render" >&2; exit 1; }
done
dpkg -L foobar | grep -q /etc/foobar/zones/foobar.com.zone.example
dpkg -L foobar | grep -q /usr/share/foobar/public/index.html
# The shipped configuration loads (with the example zone as a real one), as the service user.
cp /etc/foobar/zones/foobar.com.zone.example /etc/foobar/zones/foobar.com.zone
trap 'rm -f /etc/foobar/zones/foobar.com.zone; dpkg --purge foobar >/dev/null' EXIT
install -d -o foobar -g foobar /var/lib/foobar
setpriv --reuid foobar --regid foobar --clear-groups \
  foobar serve --check --config /etc/foobar/foobar.toml
echo "package checks passed"
