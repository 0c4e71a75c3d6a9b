#!/usr/bin/env bash
# A large zone side by side: foobar, Knot DNS and NSD load a generated zone of N hosts
# (1,000,000 hosts = ~1.26M records). Prints the time from start until the last record
# answers, resident memory after loading and its peak while loading, and answers per server
# CPU-second against it.
#
#   benches/zone-scale.sh [--hosts N] [--seconds S] [--dnssec]
#
# --dnssec: foobar (dnssec = true) and Knot (dnssec-signing: on) sign the zone as they load it;
# the time is until the last record answers with its signature, and the queries set DO. NSD,
# which does not sign, is left out.
source "$(dirname "$0")/lib.sh"

hosts=1000000 seconds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --smoke) hosts=20000 seconds=2; shift ;;
    --dnssec) dnssec=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages knot nsd dnsperf bind9-dnsutils
foobar=$(foobar_binary)
work=$(mktemp -d)
trap 'stop "${pid:-}"; rm -rf "$work"' EXIT
mkdir -p "$work/zones" "$work/knot" "$work/nsd"
origin=example.com
python3 "$BENCH_ROOT/benches/gen-zone.py" "$hosts" "$origin." > "$work/zones/$origin.zone"
records=$(grep -c -v '^\$' "$work/zones/$origin.zone")
last="host$((hosts - 1)).$origin"
python3 - "$hosts" "$origin" > "$work/queries.txt" <<'PY'
import random, sys
hosts, origin = int(sys.argv[1]), sys.argv[2]
rng = random.Random(7)
for _ in range(100000):
    print(f"host{rng.randrange(hosts)}.{origin} A")
PY

port=25360
servers="foobar knot nsd" dig_flags="" perf_flags=""
if [ -n "${dnssec:-}" ]; then
  servers="foobar knot" dig_flags="+dnssec" perf_flags="-D"
  write_foobar_conf "$work" "$port" 0 "$BENCH_ROOT/public" "[dns.zone.\"$origin\"]
dnssec = true"
  # Knot signs a copy of its own and keeps the signed zone in memory, not written back.
  cp "$work/zones/$origin.zone" "$work/knot/$origin.zone"
  write_knot_conf "$work/knot" $port "$origin" "$work/knot/$origin.zone"
  printf '    dnssec-signing: on\n    zonefile-sync: -1\n' >> "$work/knot/knot.conf"
else
  write_foobar_conf "$work" "$port" 0 "$BENCH_ROOT/public"
  write_knot_conf "$work/knot" $port "$origin" "$work/zones/$origin.zone"
  write_nsd_conf "$work/nsd" $port "$origin" "$work/zones"
fi

echo "zone: $records records ($hosts hosts)" >&2
printf '%-7s %10s %10s %10s %16s\n' server "load s" "RSS MB" "peak MB" "answers/CPU-s"
for server in $servers; do
  start=$(date +%s.%N)
  case $server in
    foobar) taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/$server.log" & pid=$! ;;
    knot) taskset -c "$SERVER_CORE" knotd -c "$work/knot/knot.conf" 2>"$work/$server.log" & pid=$! ;;
    nsd) taskset -c "$SERVER_CORE" nsd -d -c "$work/nsd/nsd.conf" 2>"$work/$server.log" & pid=$! ;;
  esac
  # shellcheck disable=SC2086 # no flags, or +dnssec: then the answer must carry its RRSIG
  until dig +short +time=1 +tries=1 $dig_flags @127.0.0.1 -p "$port" "$last" A 2>/dev/null |
      grep -q "${dig_flags:+^A }"; do
    sleep 0.05
    if ! kill -0 "$pid" 2>/dev/null; then echo "$server exited; see $work/$server.log" >&2; cat "$work/$server.log" >&2; exit 1; fi
  done
  loaded=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
  sleep 1
  rss=$(rss_mb "$pid")
  peak=$(peak_mb "$pid")
  before=$(cpu_seconds "$pid")
  # shellcheck disable=SC2086
  out=$(taskset -c "$CLIENT_CORE" dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$seconds" -c 8 -q 500 -T 1 $perf_flags 2>&1)
  after=$(cpu_seconds "$pid")
  answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
  per_cpu=$(awk -v a="$answered" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
  printf '%-7s %10s %10s %10s %16s\n' "$server" "$loaded" "$rss" "$peak" "$per_cpu"
  stop "$pid"
  pid=""
done
