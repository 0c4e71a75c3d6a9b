#!/usr/bin/env bash
# User-space instructions per request for the 2 KB page, counted by valgrind's callgrind: the
# same build, load and count give the same figure within a fraction of a percent whatever else
# the machine does, where requests per CPU-second move by 5-10% from round to round here. For
# deciding a small change to the request path; the kernel's share (system calls, loopback
# delivery) is not counted, so a change that sends more bytes must still be timed
# (http-compare.sh, or two builds alternating).
#
#   benches/instructions.sh [--protocols "h1 h2 h3"] [--requests N] [--proxy] [--logs]
#
# With --proxy the page is proxied instead: foobar's route forwards to an nginx serving it over
# plain HTTP/1.1 (the upstream of benches/proxy-compare.sh), whose instructions are not counted.
# With --logs the server writes its access lines (RUST_LOG=info; to a file), which it does not
# otherwise: the difference is what they cost in user space.
#
# Each protocol gets a fresh server under callgrind, a warm-up of 2,000 requests, then the
# count is zeroed and N requests (20,000 by default; 5,000 over HTTP/3) are made: h2load with
# 16 connections (HTTP/1.1; and 10 streams each over HTTP/2), oha with 16 connections over
# HTTP/3. The connections' handshakes are in the count. FOOBAR_BINARY compares builds; the
# per-function profile of the last run is left in the file the script names.
source "$(dirname "$0")/lib.sh"

protocols="h1 h2 h3"
requests=""
proxy=""
log_level=warn
while [ $# -gt 0 ]; do
  case $1 in
    --protocols) protocols=$2; shift 2 ;;
    --requests) requests=$2; shift 2 ;;
    --proxy) proxy=1; shift ;;
    --logs) log_level=info; shift ;;
    --smoke) requests=2000; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages valgrind nghttp2-client
ensure_oha "$protocols"
foobar=$(foobar_binary)
bench_work
port=28443
if [ -n "$proxy" ]; then
  ensure_packages nginx
  port_upstream=28444
  start_upstream_nginx "$port_upstream"
  write_foobar_conf "$work" 0 "$port" "$work/site" "$(proxy_site "$port_upstream" "max_idle = 64")"
else
  write_foobar_conf "$work" 0 "$port" "$work/site"
fi
url="https://127.0.0.1:$port/page.html"

load() { # load PROTOCOL N
  case $1 in
    h1) h2load --h1 -n "$2" -c 16 -t 1 "$url" ;;
    h2) h2load -n "$2" -c 16 -m 10 -t 1 "$url" ;;
    h3) oha -n "$2" -c 16 --http-version 3 --insecure --disable-compression --no-tui "$url" ;;
  esac >/dev/null 2>&1
}

for protocol in $protocols; do
  n=${requests:-20000}
  [ "$protocol" = h3 ] && n=${requests:-5000}
  rm -rf "$work/state" "$work"/callgrind.*
  RUST_LOG=$log_level valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
    "$foobar" serve --config "$work/foobar.toml" 2>>"$work/valgrind.log" & pid=$!
  pids="$pids $pid"
  # Under valgrind the server takes several seconds to start.
  for _ in $(seq 1 120); do curl -sk -o /dev/null "$url" && break; sleep 0.5; done
  load "$protocol" 2000
  callgrind_control -z "$pid" >/dev/null 2>&1
  load "$protocol" "$n"
  callgrind_control -d "$pid" >/dev/null 2>&1
  # The dump is written by the server's next scheduled thread: wait for it.
  for _ in $(seq 1 60); do
    compgen -G "$work/callgrind.$pid.*" >/dev/null && break
    sleep 0.5
  done
  sleep 1
  dump=$(ls -t "$work"/callgrind."$pid".* | head -1)
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  name=$protocol${proxy:+-proxy}
  [ "$log_level" = info ] && name=$name-logs
  cp "$dump" "/tmp/foobar-callgrind.$name"
  stop "$pid"
  printf '%s  %d requests  %d instructions per request  (profile: callgrind_annotate /tmp/foobar-callgrind.%s)\n' \
    "$name" "$n" "$((total / n))" "$name"
done
