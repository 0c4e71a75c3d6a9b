#!/usr/bin/env bash
# DNS side by side: foobar, Knot DNS and NSD serving the same zone to dnsperf on loopback, in
# alternating rounds. Prints answers per second and per server CPU-second (median, min-max) and
# the ratio to Knot, for UDP and TCP.
#
#   benches/dns-compare.sh [--rounds N] [--seconds S] [--zone FILE --origin NAME --queries FILE]
#                          [--dnssec] [--xdp]
#
# Defaults: 5 rounds of 10 s per server and transport, the bench zone below with a realistic
# query mix (www A mostly, AAAA/MX/HTTPS, ~5% NXDOMAIN, wildcards, referrals, out-of-zone).
# --dnssec: the zone signed by foobar (dnssec = true) and by Knot (dnssec-signing: on, its
# default policy), every query with DO; NSD, which does not sign, is left out.
# --xdp: UDP over a veth pair into a network namespace of the script's own, dnsperf inside it;
# foobar answers in XDP mode (`[dns] xdp`) on the pair's outer end; Knot, NSD and a second
# foobar without XDP ("sockets") answer with sockets on its address. In XDP mode part of a
# query's cost (the program, the copy into the socket's ring) is spent in the sender's softirq,
# outside the server's process: the table then also gives answers per CPU-second of the whole
# machine (both cores, dnsperf included), which counts every cycle wherever it is spent.
source "$(dirname "$0")/lib.sh"

rounds=5 seconds=10 zone_file="" origin="foobar.com" queries_file="" transports="udp tcp"
dnssec="" servers="foobar knot nsd" xdp=""
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
    --xdp) xdp=1 transports=udp servers="foobar sockets knot nsd"; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages knot nsd dnsperf bind9-dnsutils
foobar=$(foobar_binary)
work=$(mktemp -d)
trap 'for p in ${pids:-}; do stop "$p"; done; rm -rf "$work"; [ -z "${netns:-}" ] || ip netns del "$netns"' EXIT
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

port_foobar=25353 port_knot=25354 port_nsd=25355 port_sockets=25356
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

# Where the servers listen and dnsperf sends from.
address=127.0.0.1 client=()
if [ -n "$xdp" ]; then
  netns="foobar-bench-$$" outer="fbb$$" address=10.253.0.1
  ip netns add "$netns"
  ip link add "$outer" type veth peer name inner netns "$netns"
  ip addr add "$address/24" dev "$outer"
  ip link set "$outer" up
  ip -n "$netns" addr add 10.253.0.2/24 dev inner
  ip -n "$netns" link set inner up
  client=(ip netns exec "$netns")
  mkdir -p "$work/sockets"
  sed -e "s|$work/state|$work/sockets/state|; s/127.0.0.1:$port_foobar\"/$address:$port_sockets\"/" \
    "$work/foobar.toml" > "$work/sockets/foobar.toml"
  printf '[admin]\nlisten = "127.0.0.1:0"\n' >> "$work/sockets/foobar.toml"
  sed -i "s/127.0.0.1:$port_foobar\"\]/$address:$port_foobar\"]\nxdp = [\"$outer\"]/" "$work/foobar.toml"
  sed -i "s/127.0.0.1@/$address@/" "$work/knot/knot.conf"
  [ -n "$dnssec" ] || sed -i "s/127.0.0.1@/$address@/" "$work/nsd/nsd.conf"
fi

pids=""
taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/foobar.log" & pid_foobar=$!
taskset -c "$SERVER_CORE" knotd -c "$work/knot/knot.conf" 2>"$work/knot.log" & pid_knot=$!
pids="$pid_foobar $pid_knot"
if [ -n "$xdp" ]; then
  taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/sockets/foobar.toml" 2>"$work/sockets.log" & pid_sockets=$!
  pids="$pids $pid_sockets"
fi
if [ -z "$dnssec" ]; then
  taskset -c "$SERVER_CORE" nsd -d -c "$work/nsd/nsd.conf" 2>"$work/nsd.log" & pid_nsd=$!
  pids="$pids $pid_nsd"
fi
for server in $servers; do eval "wait_port \$port_$server $address"; done
if [ -n "$xdp" ]; then
  for _ in $(seq 50); do grep -q "xdp mode" "$work/foobar.log" && break; sleep 0.1; done
  grep -q "xdp mode" "$work/foobar.log" || { echo "foobar did not attach XDP:" >&2; grep -i xdp "$work/foobar.log" >&2; exit 1; }
fi
if [ -n "$dnssec" ]; then
  # Both serve the zone signed before the first round.
  for server in $servers; do
    eval "port=\$port_$server"
    for _ in $(seq 100); do
      dig +short +norec @"$address" -p "$port" "$origin" DNSKEY | grep -q . && break
      sleep 0.2
    done
  done
fi
sleep 1

declare -A qps cps mps
for transport in $transports; do
  for server in $servers; do qps[$server/$transport]="" cps[$server/$transport]="" mps[$server/$transport]=""; done
done
for round in $(seq "$rounds"); do
  for transport in $transports; do
    for server in $servers; do
      eval "port=\$port_$server pid=\$pid_$server"
      before=$(cpu_seconds "$pid") machine_before=$(machine_cpu_seconds)
      # shellcheck disable=SC2086 # no flags, or -D
      out=$("${client[@]}" taskset -c "$CLIENT_CORE" dnsperf -s "$address" -p "$port" -m "$transport" \
              -d "$queries_file" -l "$seconds" -c 8 -q 500 -T 1 $perf_flags 2>&1)
      after=$(cpu_seconds "$pid") machine_after=$(machine_cpu_seconds)
      answered=$(awk '/Queries completed:/ {print $3}' <<<"$out")
      rate=$(awk '/Queries per second:/ {print $4}' <<<"$out")
      per_cpu=$(awk -v a="$answered" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
      per_machine=$(awk -v a="$answered" -v b="$machine_before" -v c="$machine_after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
      qps[$server/$transport]+="$rate "
      cps[$server/$transport]+="$per_cpu "
      mps[$server/$transport]+="$per_machine "
      printf 'round %d %-4s %-7s %10.0f answers/s %10s answers/CPU-s %10s per machine CPU-s\n' "$round" "$transport" "$server" "$rate" "$per_cpu" "$per_machine" >&2
    done
  done
done

echo
echo "DNS${dnssec:+ signed, DO set}${xdp:+, over a veth pair (foobar in XDP mode)}, $rounds rounds x ${seconds}s, servers on core $SERVER_CORE, dnsperf on core $CLIENT_CORE"
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
if [ -n "$xdp" ]; then
  echo
  printf '%-4s %-7s %36s %14s\n' proto server "answers per machine CPU-s (min-max)" "vs Knot"
  for transport in $transports; do
    read -r knot_mps _ _ < <(tr ' ' '\n' <<<"${mps[knot/$transport]}" | grep . | summarize)
    for server in $servers; do
      read -r m mmin mmax < <(tr ' ' '\n' <<<"${mps[$server/$transport]}" | grep . | summarize)
      ratio=$(awk -v a="$m" -v b="$knot_mps" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
      printf '%-4s %-7s %20s (%s-%s) %14s\n' "$transport" "$server" "$m" "$mmin" "$mmax" "$ratio"
    done
  done
fi
