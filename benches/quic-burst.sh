#!/usr/bin/env bash
# A burst of new QUIC clients at once against foobar: how many datagrams the kernel dropped at
# the server's UDP socket (its receive buffer overflowed) and how many clients were answered.
# Server on core 0, clients on core 1.
#
#   benches/quic-burst.sh [--clients N] [--rounds N] [--foobar BINARY]
#
# --foobar runs another build (an older one, to compare before and after a change).
source "$(dirname "$0")/lib.sh"
clients=2000 rounds=3 foobar=""
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --foobar) foobar=$2; shift 2 ;;
    --smoke) clients=200 rounds=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[ -n "$foobar" ] || foobar=$(foobar_binary)
(cd "$BENCH_ROOT" && cargo bench -q --bench quic_burst --no-run) >&2
burst=$(ls -t "$BENCH_ROOT"/target/release/deps/quic_burst-* | grep -v '\.d$' | head -1)
work=$(mktemp -d)
trap 'stop "${pid:-}"; rm -rf "$work"' EXIT
mkdir -p "$work/zones" "$work/public"
cp "$BENCH_ROOT/zones/foobar.com.zone" "$work/zones/"
echo "<h1>burst</h1>" > "$work/public/index.html"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# All clients come from 127.0.0.1: lift the per-address cap (an older build may not know it).
write_foobar_conf "$work" 0 "$port" "$work/public" "max_connections_per_address = 100000"
if ! "$foobar" serve --check --config "$work/foobar.toml" >/dev/null 2>&1; then
  write_foobar_conf "$work" 0 "$port" "$work/public"
fi
RUST_LOG=warn,access=off taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/log" &
pid=$!
wait_port "$port"

# The server socket's drop counter: the last column of its line in /proc/net/udp.
drops() {
  local hex
  hex=$(printf '%04X' "$port")
  awk -v p=":$hex" '$2 ~ p"$" { print $NF }' /proc/net/udp | head -1
}
buffer=$(awk -v p=":$(printf '%04X' "$port")" '$2 ~ p"$" { print $5 }' /proc/net/udp | head -1)
echo "foobar: $foobar"
grep -i "udp buffers" "$work/log" >&2 || true
for round in $(seq 1 "$rounds"); do
  before=$(drops)
  line=$(taskset -c "$CLIENT_CORE" "$burst" "127.0.0.1:$port" "$work/state/tls/self-signed.crt" "$clients")
  after=$(drops)
  echo "round $round: $line; $((after - before)) datagrams dropped at the server socket"
done
