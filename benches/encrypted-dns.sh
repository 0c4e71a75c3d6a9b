#!/usr/bin/env bash
# Encrypted DNS side by side, in alternating rounds, with dnsperf on loopback: foobar's DNS over
# TLS against NSD's (Debian's NSD serves DoT; Knot 3.2 does not), and foobar's DNS over HTTPS
# (HTTP/2, on its web port) against dnsdist's DoH in front of Knot, the usual way to add DoH to
# an authoritative server. Prints answers per second and per server CPU-second (median,
# min-max; for dnsdist, its CPU and Knot's together) and the ratios.
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

ensure_packages knot nsd dnsperf dnsdist openssl
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

# One certificate for NSD and dnsdist; foobar makes its own self-signed one.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$origin" \
  -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null

port_dns=25370 port_https=25371 port_dot=25372
port_nsd=25373 port_nsd_dot=25374 port_knot=25375 port_dnsdist=25376
cat > "$work/foobar.toml" <<CONF
state_dir = "$work/state"
[dns]
listen = ["127.0.0.1:$port_dns"]
tls_listen = ["127.0.0.1:$port_dot"]
https_path = "/dns-query"
zones = "$work/zones"
[edge]
http = "127.0.0.1:0"
https = "127.0.0.1:$port_https"
root = "$BENCH_ROOT/public"
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

# Each case: name, the processes whose CPU counts, then dnsperf's transport and load options.
# Debian's dnsperf 2.11 loses DoH answers with more than two queries outstanding or more than
# one connection, against either server: DoH is measured with one connection and two.
dot_load="-c 8 -q 200" doh_load="-c 1 -q 2"
cases=(
  "foobar-dot|$pid_foobar|-m dot -p $port_dot $dot_load"
  "nsd-dot|$pid_nsd|-m dot -p $port_nsd_dot $dot_load"
  "foobar-doh|$pid_foobar|-m doh -p $port_https -O doh-uri=https://127.0.0.1:$port_https/dns-query $doh_load"
  "dnsdist-doh|$pid_dnsdist $pid_knot|-m doh -p $port_dnsdist -O doh-uri=https://127.0.0.1:$port_dnsdist/dns-query $doh_load"
)
declare -A qps cps
for round in $(seq "$rounds"); do
  for case in "${cases[@]}"; do
    IFS='|' read -r name counted options <<<"$case"
    # shellcheck disable=SC2086 # the PIDs and options are word lists
    before=$(cpu_seconds $counted)
    # shellcheck disable=SC2086
    out=$(taskset -c "$CLIENT_CORE" dnsperf -s 127.0.0.1 $options -d "$queries" -l "$seconds" \
            -T 1 2>&1)
    # shellcheck disable=SC2086
    after=$(cpu_seconds $counted)
    answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
    rate=$(awk '/Queries per second:/ {print $4}' <<<"$out")
    if [ -z "$answered" ] || [ "$answered" = 0 ]; then
      echo "$name answered nothing:" >&2; echo "$out" >&2
    fi
    per_cpu=$(awk -v a="${answered:-0}" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
    qps[$name]+="${rate:-0} "
    cps[$name]+="$per_cpu "
    printf 'round %d %-12s %10.0f answers/s %10s answers/CPU-s\n' "$round" "$name" "${rate:-0}" "$per_cpu" >&2
  done
done

echo
echo "Encrypted DNS, $rounds rounds x ${seconds}s, servers on core $SERVER_CORE, dnsperf on core $CLIENT_CORE"
printf '%-12s %24s %30s %12s\n' case "answers/s (min-max)" "answers/CPU-s (min-max)" ratio
median() { tr ' ' '\n' <<<"${cps[$1]}" | grep . | summarize | cut -d' ' -f1; }
for case in "${cases[@]}"; do
  name=${case%%|*}
  read -r q qmin qmax < <(tr ' ' '\n' <<<"${qps[$name]}" | grep . | summarize)
  read -r c cmin cmax < <(tr ' ' '\n' <<<"${cps[$name]}" | grep . | summarize)
  case $name in
    foobar-dot) ratio=$(awk -v a="$c" -v b="$(median nsd-dot)" 'BEGIN { printf "%.2fx NSD", (b > 0 ? a / b : 0) }') ;;
    foobar-doh) ratio=$(awk -v a="$c" -v b="$(median dnsdist-doh)" 'BEGIN { printf "%.2fx dnsdist", (b > 0 ? a / b : 0) }') ;;
    *) ratio="1.00x" ;;
  esac
  printf '%-12s %9s (%s-%s) %14s (%s-%s) %12s\n' "$name" "$q" "$qmin" "$qmax" "$c" "$cmin" "$cmax" "$ratio"
done
