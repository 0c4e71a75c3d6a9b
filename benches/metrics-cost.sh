#!/usr/bin/env bash
# What counting for /metrics costs: this tree's foobar against a build of a revision without
# metrics (BASELINE_REV, default the commit before they were added), on the same core in
# alternating rounds. DNS with dnsperf over UDP and TCP (a query mix like dns-compare.sh's), a
# 2 KB page over HTTP/2 with h2load; answers and requests per server CPU-second, and the ratio.
# Both log at RUST_LOG=warn (no access lines).
#
#   benches/metrics-cost.sh [--rounds N] [--seconds S] [--baseline-rev REV] [--tests "udp tcp h2"]
source "$(dirname "$0")/lib.sh"

rounds=5 seconds=10 baseline_rev=${BASELINE_REV:-} tests="udp tcp h2"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --baseline-rev) baseline_rev=$2; shift 2 ;;
    --tests) tests=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$baseline_rev" ]; then
  # The parent of the commit that brought the admin listener and the first metrics.
  added=$(git -C "$BENCH_ROOT" log --format=%H --grep '^Admin listener' | tail -n 1)
  baseline_rev=$(git -C "$BENCH_ROOT" rev-parse "$added^")
fi

ensure_packages dnsperf nghttp2-client
metered=$(foobar_binary)
work=$(mktemp -d)
trap 'for p in ${pids:-}; do stop "$p"; done; git -C "$BENCH_ROOT" worktree remove --force "$work/baseline-tree" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# The baseline, built in a worktree of its own (its own target folder).
git -C "$BENCH_ROOT" worktree add -q --detach "$work/baseline-tree" "$baseline_rev"
(cd "$work/baseline-tree" && CARGO_TARGET_DIR="$BENCH_ROOT/target/metrics-baseline" \
  cargo build --release -q --bin foobar) >&2
baseline="$BENCH_ROOT/target/metrics-baseline/release/foobar"

queries="$work/queries"
for _ in $(seq 40); do echo "www.foobar.com A"; done > "$queries"
{
  for _ in $(seq 10); do echo "www.foobar.com AAAA"; echo "foobar.com MX"; done
  for _ in $(seq 5); do echo "foobar.com HTTPS"; echo "missing.foobar.com A"; done
  echo "example.org A"
} >> "$queries"
head -c 2048 /dev/zero | tr '\0' 'a' > "$work/page.html"

port_dns=(25363 25364) port_https=(28463 28464)
names=(baseline metered)
pids=""
for i in 0 1; do
  dir="$work/${names[$i]}"
  mkdir -p "$dir/zones" "$dir/site"
  cp "$BENCH_ROOT/zones/foobar.com.zone" "$dir/zones/"
  cp "$work/page.html" "$dir/site/"
  extra=""
  # The metered server with its admin listener on, as shipped (nothing scrapes it).
  [ "$i" = 1 ] && extra=$'[admin]\nlisten = "127.0.0.1:0"'
  write_foobar_conf "$dir" "${port_dns[$i]}" "${port_https[$i]}" "$dir/site" "$extra"
  binary=$baseline
  [ "$i" = 1 ] && binary=$metered
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$binary" serve --config "$dir/foobar.toml" 2>"$dir/log" &
  pid[$i]=$!
  pids="$pids ${pid[$i]}"
done
for i in 0 1; do wait_port "${port_dns[$i]}"; wait_port "${port_https[$i]}"; done

declare -A cps
for round in $(seq "$rounds"); do
  for test in $tests; do
    for i in 0 1; do
      before=$(cpu_seconds "${pid[$i]}")
      if [ "$test" = h2 ]; then
        done_count=$(taskset -c "$CLIENT_CORE" h2load -D "$seconds" -c 8 -m 16 -t 1 \
          "https://127.0.0.1:${port_https[$i]}/page.html" 2>&1 | awk '/^requests:/ {print $8}')
      else
        done_count=$(taskset -c "$CLIENT_CORE" dnsperf -s 127.0.0.1 -p "${port_dns[$i]}" -m "$test" \
          -d "$queries" -l "$seconds" -c 8 -q 500 -T 1 2>&1 | awk '/Queries completed:/ {print $3}')
      fi
      after=$(cpu_seconds "${pid[$i]}")
      per_cpu=$(awk -v a="$done_count" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
      cps[$test/$i]+="$per_cpu "
      printf 'round %d %-3s %-8s %10s per CPU-s\n' "$round" "$test" "${names[$i]}" "$per_cpu" >&2
    done
  done
done

echo
echo "Metrics cost, $rounds rounds x ${seconds}s, baseline $(git -C "$BENCH_ROOT" rev-parse --short "$baseline_rev"), servers on core $SERVER_CORE"
printf '%-4s %28s %28s %10s\n' test "baseline /CPU-s (min-max)" "metered /CPU-s (min-max)" ratio
for test in $tests; do
  read -r b bmin bmax < <(tr ' ' '\n' <<<"${cps[$test/0]}" | grep . | summarize)
  read -r m mmin mmax < <(tr ' ' '\n' <<<"${cps[$test/1]}" | grep . | summarize)
  ratio=$(awk -v a="$m" -v b="$b" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')
  printf '%-4s %10s (%s-%s) %10s (%s-%s) %10s\n' "$test" "$b" "$bmin" "$bmax" "$m" "$mmin" "$mmax" "$ratio"
done
