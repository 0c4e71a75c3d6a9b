#!/usr/bin/env bash
# DNS side by side: foobar, Knot DNS and NSD serving the same zone to dnsperf on loopback, in
# alternating rounds. Prints answers per second and per server CPU-second (median, min-max) and
# the ratio to Knot, for UDP and TCP.
#
#   benches/dns-compare.sh [--rounds N] [--seconds S] [--zone FILE --origin NAME --queries FILE]
#                          [--dnssec]
#
# Defaults: 5 rounds of 10 s per server and transport, the bench zone below with a realistic
# query mix (www A mostly, AAAA/MX/HTTPS, ~5% NXDOMAIN, wildcards, referrals, out-of-zone).
# --dnssec: the zone signed by foobar (dnssec = true) and by Knot (dnssec-signing: on, its
# default policy), every query with DO; NSD, which does not sign, is left out.
source "$(dirname "$0")/lib.sh"

rounds=5 seconds=10 zone_file="" origin="foobar.com" queries_file="" transports="udp tcp"
dnssec="" servers="foobar knot nsd"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --zone) zone_file=$2; shift 2 ;;
    --origin) origin=$2; shift 2 ;;
    --queries) queries_file=$2; shift 2 ;;
    --transports) transports=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    --dnssec) dnssec=1 servers="foobar knot"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages knot nsd dnsperf bind9-dnsutils
foobar=$(foobar_binary)
work=$(mktemp -d)
trap 'for p in ${pids:-}; do stop "$p"; done; rm -rf "$work"' EXIT
mkdir -p "$work/zones" "$work/knot" "$work/nsd"

if [ -z "$zone_file" ]; then
  zone_file="$work/bench.zone"
  {
    cat "$BENCH_ROOT/zones/foobar.com.zone"
    echo '*.wild          IN TXT  "wildcard"'
    echo 'child           IN NS   ns1.child'
    echo 'ns1.child       IN A    192.0.2.100'
  } > "$zone_file"
fi
cp "$zone_file" "$work/zones/$origin.zone"

if [ -z "$queries_file" ]; then
  queries_file="$work/queries.txt"
  {
    for _ in $(seq 70); do echo "www.$origin A"; done
    for _ in $(seq 8); do echo "www.$origin AAAA"; done
    for _ in $(seq 4); do echo "$origin MX"; done
    for _ in $(seq 5); do echo "www.$origin HTTPS"; done
    for i in $(seq 5); do echo "nx$i.$origin A"; done
    for i in $(seq 4); do echo "w$i.wild.$origin TXT"; done
    for i in $(seq 2); do echo "h$i.child.$origin A"; done
    for _ in $(seq 2); do echo "www.example.org A"; done
  } | shuf --random-source=<(yes) > "$queries_file"
fi

port_foobar=25353 port_knot=25354 port_nsd=25355
# Knot gets a copy of its own: when it signs, it writes the signed zone back to its file.
cp "$work/zones/$origin.zone" "$work/knot/$origin.zone"
if [ -n "$dnssec" ]; then
  write_foobar_conf "$work" "$port_foobar" 0 "$BENCH_ROOT/public" \
    "[dns.zone.\"$origin\"]
dnssec = true"
  write_knot_conf "$work/knot" $port_knot "$origin" "$work/knot/$origin.zone"
  printf '    dnssec-signing: on\n' >> "$work/knot/knot.conf"
  perf_flags="-D"
else
  write_foobar_conf "$work" "$port_foobar" 0 "$BENCH_ROOT/public"
  write_knot_conf "$work/knot" $port_knot "$origin" "$work/knot/$origin.zone"
  write_nsd_conf "$work/nsd" $port_nsd "$origin" "$work/zones"
  perf_flags=""
fi

pids=""
taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/foobar.log" & pid_foobar=$!
taskset -c "$SERVER_CORE" knotd -c "$work/knot/knot.conf" 2>"$work/knot.log" & pid_knot=$!
pids="$pid_foobar $pid_knot"
if [ -z "$dnssec" ]; then
  taskset -c "$SERVER_CORE" nsd -d -c "$work/nsd/nsd.conf" 2>"$work/nsd.log" & pid_nsd=$!
  pids="$pids $pid_nsd"
fi
for server in $servers; do eval "wait_port \$port_$server"; done
if [ -n "$dnssec" ]; then
  # Both serve the zone signed before the first round.
  for server in $servers; do
    eval "port=\$port_$server"
    for _ in $(seq 100); do
      dig +short +norec @127.0.0.1 -p "$port" "$origin" DNSKEY | grep -q . && break
      sleep 0.2
    done
  done
fi
sleep 1

declare -A qps cps
for transport in $transports; do
  for server in $servers; do qps[$server/$transport]="" cps[$server/$transport]=""; done
done
for round in $(seq "$rounds"); do
  for transport in $transports; do
    for server in $servers; do
      eval "port=\$port_$server pid=\$pid_$server"
      before=$(cpu_seconds "$pid")
      # shellcheck disable=SC2086 # no flags, or -D
      out=$(taskset -c "$CLIENT_CORE" dnsperf -s 127.0.0.1 -p "$port" -m "$transport" \
              -d "$queries_file" -l "$seconds" -c 8 -q 500 -T 1 $perf_flags 2>&1)
      after=$(cpu_seconds "$pid")
      answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
      rate=$(awk '/Queries per second:/ {print $4}' <<<"$out")
      per_cpu=$(awk -v a="$answered" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
      qps[$server/$transport]+="$rate "
      cps[$server/$transport]+="$per_cpu "
      printf 'round %d %-4s %-7s %10.0f answers/s %10s answers/CPU-s\n' "$round" "$transport" "$server" "$rate" "$per_cpu" >&2
    done
  done
done

echo
echo "DNS${dnssec:+ signed, DO set}, $rounds rounds x ${seconds}s, servers on core $SERVER_CORE, dnsperf on core $CLIENT_CORE"
printf '%-4s %-7s %22s %30s %14s\n' proto server "answers/s (min-max)" "answers/CPU-s (min-max)" "vs Knot /CPU"
for transport in $transports; do
  read -r knot_cps _ _ < <(tr ' ' '\n' <<<"${cps[knot/$transport]}" | grep . | summarize)
  for server in $servers; do
    read -r q qmin qmax < <(tr ' ' '\n' <<<"${qps[$server/$transport]}" | grep . | summarize)
    read -r c cmin cmax < <(tr ' ' '\n' <<<"${cps[$server/$transport]}" | grep . | summarize)
    ratio=$(awk -v a="$c" -v b="$knot_cps" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
    printf '%-4s %-7s %9s (%s-%s) %14s (%s-%s) %14s\n' "$transport" "$server" "$q" "$qmin" "$qmax" "$c" "$cmin" "$cmax" "$ratio"
  done
done
