#!/usr/bin/env bash
# Memory per idle proxied WebSocket: foobar and nginx in front of the same WebSocket echo
# upstream (benches/ws_hold.rs), each holding COUNT WebSockets open over TLS (HTTP/1.1 Upgrade),
# idle after one echo each. The proxy's resident memory (every process of it) is read before
# and once all are open; the difference over COUNT is the cost of one WebSocket (its client
# TLS connection, its upstream connection, and the relay between them).
#
#   benches/ws-memory.sh [--count N]
source "$(dirname "$0")/lib.sh"

count=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --count) count=$2; shift 2 ;;
    --smoke) count=500; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages nginx
# A proxy holds two descriptors per WebSocket (client, upstream): the count is bounded by the
# open-file limit this machine allows (20,000 where these figures were taken: 9,500 of them).
ulimit -n "$(ulimit -Hn)"
most=$(( ($(ulimit -n) - 1000) / 2 ))
if [ "$count" -gt "$most" ]; then
  echo "open files are limited to $(ulimit -n): $most WebSockets rather than $count" >&2
  count=$most
fi
foobar=$(foobar_binary)
(cd "$BENCH_ROOT" && cargo bench -q --bench ws_hold --no-run) >&2
hold=$(ls -t "$BENCH_ROOT"/target/release/deps/ws_hold-* | grep -v '\.d$' | head -1)
bench_work
mkdir -p "$work/nginx"
port_upstream=28720 port_foobar=28721 port_nginx=28722

taskset -c "$CLIENT_CORE" "$hold" echo "$port_upstream" & pid_upstream=$!
pids="$pid_upstream"
wait_port "$port_upstream"

write_foobar_conf "$work" 0 "$port_foobar" "$work/site" "max_connections = 100000
max_connections_per_address = 100000
$(proxy_site "$port_upstream" "max_connections = 100000")"
run_foobar "$port_foobar"
cert="$work/state/tls/self-signed.crt" key="$work/state/tls/self-signed.key"

cat > "$work/nginx/nginx.conf" <<CONF
user root;
worker_processes 1;
worker_rlimit_nofile $(ulimit -n);
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 100000; }
http {
    access_log off;
$(nginx_temp_paths "$work/nginx")
    map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
    server {
        listen 127.0.0.1:$port_nginx ssl;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        location / {
            proxy_pass http://127.0.0.1:$port_upstream;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_read_timeout 3600s;
        }
    }
}
CONF
taskset -c "$SERVER_CORE" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" & pid_nginx=$!
pids="$pids $pid_nginx"
wait_port "$port_nginx"
sleep 1

declare -A per
for server in foobar nginx; do
  eval "port=\$port_$server pid=\$pid_$server"
  before=$(rss_kb "$pid")
  taskset -c "$CLIENT_CORE" "$hold" hold "wss://127.0.0.1:$port/ws" "$count" 30 > "$work/hold.out" & pid_hold=$!
  for _ in $(seq 1 600); do
    grep -q '^open' "$work/hold.out" 2>/dev/null && break
    sleep 0.2
  done
  sleep 2
  after=$(rss_kb "$pid")
  opened=$(awk '/^open/ {print $2, "open,", $4, "failed"}' "$work/hold.out")
  stop "$pid_hold"
  per[$server]=$(awk -v a="$after" -v b="$before" -v n="$count" 'BEGIN { printf "%.1f", (a - b) / n }')
  printf '%-6s %s: %s KiB before, %s KiB with them, %s KiB each\n' "$server" "$opened" "$before" "$after" "${per[$server]}" >&2
done

echo
echo "Idle proxied WebSockets ($count over TLS), resident memory of the proxy"
printf '%-6s %12s %10s\n' proxy "KiB each" "vs nginx"
for server in foobar nginx; do
  ratio=$(awk -v a="${per[$server]}" -v b="${per[nginx]}" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
  printf '%-6s %12s %10s\n' "$server" "${per[$server]}" "$ratio"
done
