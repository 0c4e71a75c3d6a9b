#!/usr/bin/env bash
# Encrypted DNS side by side, in alternating rounds, on loopback: foobar's DNS over TLS against
# NSD's (Debian's NSD serves DoT; Knot 3.2 does not), with dnsperf; foobar's DNS over QUIC
# against its own DoT, with benches/doq_load.rs (dnsperf has no DoQ); foobar's DNS over HTTPS
# (HTTP/2, GET with ?dns= through the same query mix, on its web port) against dnsdist's DoH in
# front of Knot (the usual way to add DoH to an authoritative server) and against the 2 KB page
# on the same port, with h2load (Debian's dnsperf 2.11 loses DoH answers beyond two queries
# outstanding). Prints answers per second and per server CPU-second (median, min-max; for
# dnsdist, its CPU and Knot's together) and the ratios.
#
#   benches/encrypted-dns.sh [--rounds N] [--seconds S] [--smoke]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=5
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages knot nsd dnsperf dnsdist openssl nghttp2-client python3
(cd "$BENCH_ROOT" && cargo bench -q --bench doq_load --no-run) >&2
doq_load=$(ls -t "$BENCH_ROOT"/target/release/deps/doq_load-* | grep -v '\.d$' | head -1)
foobar=$(foobar_binary)
work=$(mktemp -d)
trap 'for p in ${pids:-}; do stop "$p"; done; rm -rf "$work"' EXIT
mkdir -p "$work/zones" "$work/knot" "$work/nsd" "$work/tls"
origin=foobar.com
cp "$BENCH_ROOT/zones/$origin.zone" "$work/zones/$origin.zone"
cp "$work/zones/$origin.zone" "$work/knot/$origin.zone"
queries="$work/queries.txt"
{
  for _ in $(seq 80); do echo "www.$origin A"; done
  for _ in $(seq 10); do echo "www.$origin AAAA"; done
  for _ in $(seq 5); do echo "$origin MX"; done
  for i in $(seq 5); do echo "nx$i.$origin A"; done
} | shuf --random-source=<(yes) > "$queries"
# The same mix as DoH GET URIs (RFC 8484: ID 0, base64url without padding).
uris="$work/uris.txt"
python3 - "$queries" > "$uris" <<'PY'
import base64, struct, sys
types = {"A": 1, "AAAA": 28, "MX": 15}
for line in open(sys.argv[1]):
    name, rtype = line.split()
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    message = struct.pack(">HHHHHH", 0, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", types[rtype], 1)
    print("https://127.0.0.1:PORT/dns-query?dns=" + base64.urlsafe_b64encode(message).decode().rstrip("="))
PY
head -c 2048 /dev/zero | tr '\0' 'a' > "$work/page.html"

# One certificate for all three (the DoQ client checks it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$origin" \
  -addext "subjectAltName=DNS:$origin" -addext "basicConstraints=critical,CA:FALSE" -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null

port_dns=25370 port_https=25371 port_dot=25372 port_doq=25377
port_nsd=25373 port_nsd_dot=25374 port_knot=25375 port_dnsdist=25376
cat > "$work/foobar.toml" <<CONF
state_dir = "$work/state"
[dns]
listen = ["127.0.0.1:$port_dns"]
tls_listen = ["127.0.0.1:$port_dot"]
quic_listen = ["127.0.0.1:$port_doq"]
https_path = "/dns-query"
zones = "$work/zones"
[edge]
http = "127.0.0.1:0"
https = "127.0.0.1:$port_https"
root = "$work"
cert = "$work/tls/cert.pem"
key = "$work/tls/key.pem"
CONF
write_nsd_conf "$work/nsd" "$port_nsd" "$origin" "$work/zones"
sed -i "s|^    ip-address: 127.0.0.1@$port_nsd|&\n    ip-address: 127.0.0.1@$port_nsd_dot\n    tls-port: $port_nsd_dot\n    tls-service-key: \"$work/tls/key.pem\"\n    tls-service-pem: \"$work/tls/cert.pem\"|" "$work/nsd/nsd.conf"
write_knot_conf "$work/knot" "$port_knot" "$origin" "$work/knot/$origin.zone"
cat > "$work/dnsdist.conf" <<CONF
setLocal("127.0.0.1:0")
newServer({address="127.0.0.1:$port_knot"})
addDOHLocal("127.0.0.1:$port_dnsdist", "$work/tls/cert.pem", "$work/tls/key.pem", "/dns-query")
setMaxTCPClientThreads(1)
CONF

# No access lines: dnsdist logs no queries by default either.
RUST_LOG=warn taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/foobar.log" & pid_foobar=$!
taskset -c "$SERVER_CORE" nsd -d -c "$work/nsd/nsd.conf" 2>"$work/nsd.log" & pid_nsd=$!
taskset -c "$SERVER_CORE" knotd -c "$work/knot/knot.conf" 2>"$work/knot.log" & pid_knot=$!
taskset -c "$SERVER_CORE" dnsdist --supervised --disable-syslog -C "$work/dnsdist.conf" >"$work/dnsdist.log" 2>&1 & pid_dnsdist=$!
pids="$pid_foobar $pid_nsd $pid_knot $pid_dnsdist"
for port in $port_dot $port_https $port_nsd_dot $port_knot $port_dnsdist; do wait_port "$port"; done
sleep 1

# Each case: name, the processes whose CPU counts, the load generator and its arguments. Every
# load keeps 200 queries (or requests) outstanding: 8 connections, 25 on each (DoQ: streams;
# DoH and the page: HTTP/2 streams; DoT: dnsperf's pipelining).
sed "s/PORT/$port_https/" "$uris" > "$work/uris-foobar.txt"
sed "s/PORT/$port_dnsdist/" "$uris" > "$work/uris-dnsdist.txt"
cases=(
  "foobar-dot|$pid_foobar|dnsperf|-m dot -p $port_dot -c 8 -q 200"
  "nsd-dot|$pid_nsd|dnsperf|-m dot -p $port_nsd_dot -c 8 -q 200"
  "foobar-doq|$pid_foobar|doq|127.0.0.1:$port_doq"
  "foobar-doh|$pid_foobar|h2load|-i $work/uris-foobar.txt"
  "dnsdist-doh|$pid_dnsdist $pid_knot|h2load|-i $work/uris-dnsdist.txt"
  "foobar-page|$pid_foobar|h2load|https://127.0.0.1:$port_https/page.html"
)
# Runs one load; prints "answered per_second".
load() { # load GENERATOR ARGUMENTS
  case "$1" in
    # shellcheck disable=SC2086 # the arguments are a word list
    dnsperf) taskset -c "$CLIENT_CORE" dnsperf -s 127.0.0.1 $2 -d "$queries" -l "$seconds" -T 1 2>&1 |
               awk '/Queries completed:/ {n = $3} /Queries per second:/ {r = $4} END {print n + 0, r + 0}' ;;
    doq) taskset -c "$CLIENT_CORE" "$doq_load" "$2" "$work/tls/cert.pem" "$origin" "$queries" "$seconds" 8 25 |
           awk '/^answered/ {n = $2} /^per_second/ {r = $2} END {print n + 0, r + 0}' ;;
    # shellcheck disable=SC2086
    h2load) taskset -c "$CLIENT_CORE" h2load -D "$seconds" -c 8 -m 25 -t 1 $2 2>&1 |
              awk '/^requests:/ {n = $8} /^finished in/ {r = $4} END {print n + 0, r + 0}' ;;
  esac
}
declare -A qps cps
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    IFS='|' read -r name counted generator options <<<"$case"
    # shellcheck disable=SC2086 # the PIDs are a word list
    before=$(cpu_seconds $counted)
    read -r answered rate < <(load "$generator" "$options")
    # shellcheck disable=SC2086
    after=$(cpu_seconds $counted)
    if [ "$answered" = 0 ]; then
      echo "$name answered nothing" >&2
    fi
    per_cpu=$(awk -v a="${answered:-0}" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
    qps[$name]+="${rate:-0} "
    cps[$name]+="$per_cpu "
    printf 'round %d %-12s %10.0f answers/s %10s answers/CPU-s\n' "$round" "$name" "${rate:-0}" "$per_cpu" >&2
  done
done

echo
echo "Encrypted DNS, $rounds rounds x ${seconds}s, servers on core $SERVER_CORE, load on core $CLIENT_CORE"
printf '%-12s %24s %30s %12s\n' case "answers/s (min-max)" "answers/CPU-s (min-max)" ratio
median() { tr ' ' '\n' <<<"${cps[$1]}" | grep . | summarize | cut -d' ' -f1; }
for case in "${cases[@]}"; do
  name=${case%%|*}
  read -r q qmin qmax < <(tr ' ' '\n' <<<"${qps[$name]}" | grep . | summarize)
  read -r c cmin cmax < <(tr ' ' '\n' <<<"${cps[$name]}" | grep . | summarize)
  case $name in
    foobar-dot) ratio=$(awk -v a="$c" -v b="$(median nsd-dot)" 'BEGIN { printf "%.2fx NSD", (b > 0 ? a / b : 0) }') ;;
    foobar-doq) ratio=$(awk -v a="$c" -v b="$(median foobar-dot)" 'BEGIN { printf "%.2fx our DoT", (b > 0 ? a / b : 0) }') ;;
    foobar-doh) ratio=$(awk -v a="$c" -v b="$(median dnsdist-doh)" -v p="$(median foobar-page)" \
                  'BEGIN { printf "%.2fx dnsdist, %.2fx the page", (b > 0 ? a / b : 0), (p > 0 ? a / p : 0) }') ;;
    *) ratio="1.00x" ;;
  esac
  printf '%-12s %9s (%s-%s) %14s (%s-%s) %12s\n' "$name" "$q" "$qmin" "$qmax" "$c" "$cmin" "$cmax" "$ratio"
done
