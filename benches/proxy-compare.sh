#!/usr/bin/env bash
# The reverse proxy side by side: foobar, nginx (proxy_pass to an upstream block with keepalive)
# and Caddy (reverse_proxy) in front of the same upstream, an nginx serving a 2 KB page over
# plain HTTP/1.1. Clients over HTTP/1.1 (wrk), HTTP/2 (h2load) and HTTP/3 (oha; foobar and
# Caddy, Debian's nginx has no HTTP/3), in alternating rounds, with the same certificate, no
# compression and no access logs anywhere. The proxies run on core 0; the load generator and the
# upstream on core 1. Prints requests per second and per CPU-second of the proxy (median,
# min-max), and the ratio to nginx (h1, h2) and to Caddy (h1, h2, h3).
#
#   benches/proxy-compare.sh [--rounds N] [--seconds S] [--protocols "h1 h2 h3"]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=8 protocols="h1 h2 h3"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --protocols) protocols=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages nginx caddy wrk nghttp2-client python3
ensure_oha "$protocols"
foobar=$(foobar_binary)
bench_work
mkdir -p "$work/nginx"

port_upstream=28510 port_foobar=28511 port_nginx=28512 port_caddy=28513

# The upstream: nginx with the page, plain HTTP, keep-alive without end.
start_upstream_nginx "$port_upstream"
write_foobar_conf "$work" 0 "$port_foobar" "$work/site" "$(proxy_site "$port_upstream" "max_idle = 64")"
run_foobar "$port_foobar"
cert="$work/state/tls/self-signed.crt" key="$work/state/tls/self-signed.key"

cat > "$work/nginx/nginx.conf" <<CONF
$(nginx_head "$work/nginx")
http {
    access_log off;
    keepalive_requests 1000000;
$(nginx_temp_paths "$work/nginx")
    upstream app {
        server 127.0.0.1:$port_upstream;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$port_nginx ssl http2;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
        }
    }
}
CONF
cat > "$work/Caddyfile" <<CONF
{
    admin off
    auto_https off
    # Clients connecting by IP send no SNI; without this Caddy fails QUIC handshakes.
    default_sni 127.0.0.1
    servers {
        protocols h1 h2 h3
    }
}
https://127.0.0.1:$port_caddy {
    tls $cert $key
    reverse_proxy 127.0.0.1:$port_upstream
}
CONF
taskset -c "$SERVER_CORE" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" & pid_nginx=$!
taskset -c "$SERVER_CORE" caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 & pid_caddy=$!
pids="$pids $pid_nginx $pid_caddy"
wait_port "$port_nginx"
wait_port "$port_caddy"
sleep 1
for port in $port_foobar $port_nginx $port_caddy; do
  size=$(curl -sk "https://127.0.0.1:$port/page.html" | wc -c)
  [ "$size" = 2048 ] || { echo "port $port did not proxy the page ($size bytes)" >&2; exit 1; }
done

# Runs one load and prints "requests_completed requests_per_second".
load() { # load PROTOCOL URL
  case "$1" in
    h1) taskset -c "$CLIENT_CORE" wrk -t1 -c32 -d"${seconds}s" "$2" 2>&1 |
          awk '/requests in/ {n = $1} /Non-2xx/ {bad = $NF} /Requests\/sec/ {r = $2}
               END {print n - bad, r * (n ? (n - bad) / n : 0)}' ;;
    h2) taskset -c "$CLIENT_CORE" h2load -D "$seconds" -c 16 -m 10 -t 1 "$2" 2>&1 |
          awk '/^status codes:/ {ok = $3} /^finished in/ {r = $4} /^requests:/ {n = $8}
               END {print ok + 0, r * (n ? ok / n : 0)}' ;;
    h3) taskset -c "$CLIENT_CORE" oha -z "${seconds}s" -c 16 --http-version 3 --insecure --disable-compression \
          --no-tui --output-format json "$2" 2>/dev/null |
          python3 -c 'import json, sys
d = json.load(sys.stdin); s = d["summary"]
n = d.get("statusCodeDistribution", {}).get("200", 0)
print(n, round(n / s["total"]) if s.get("total") else 0)' ;;
  esac
}

declare -A rps cps
for round in $(seq "$rounds"); do
  for protocol in $protocols; do
    for server in foobar nginx caddy; do
      [ "$protocol/$server" = h3/nginx ] && continue
      eval "port=\$port_$server pid=\$pid_$server"
      before=$(cpu_seconds "$pid")
      read -r done rate < <(load "$protocol" "https://127.0.0.1:$port/page.html")
      after=$(cpu_seconds "$pid")
      per_cpu=$(awk -v a="$done" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
      rps[$protocol/$server]+="$rate "
      cps[$protocol/$server]+="$per_cpu "
      printf 'round %d %s %-6s %9.0f req/s %9s req/proxy-CPU-s\n' "$round" "$protocol" "$server" "$rate" "$per_cpu" >&2
    done
  done
done

echo
echo "Proxying a 2 KB page, $rounds rounds x ${seconds}s, proxies on core $SERVER_CORE, load and upstream on core $CLIENT_CORE"
printf '%-3s %-6s %24s %28s %10s %10s\n' proto server "req/s (min-max)" "req/proxy-CPU-s (min-max)" "vs nginx" "vs Caddy"
for protocol in $protocols; do
  read -r nginx_cps _ _ < <(tr ' ' '\n' <<<"${cps[$protocol/nginx]:-}" | grep . | summarize)
  read -r caddy_cps _ _ < <(tr ' ' '\n' <<<"${cps[$protocol/caddy]:-}" | grep . | summarize)
  for server in foobar nginx caddy; do
    [ "$protocol/$server" = h3/nginx ] && continue
    read -r r rmin rmax < <(tr ' ' '\n' <<<"${rps[$protocol/$server]}" | grep . | summarize)
    read -r c cmin cmax < <(tr ' ' '\n' <<<"${cps[$protocol/$server]}" | grep . | summarize)
    vs_nginx=$(awk -v a="$c" -v b="$nginx_cps" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }')
    vs_caddy=$(awk -v a="$c" -v b="$caddy_cps" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else printf "-" }')
    printf '%-3s %-6s %9s (%s-%s) %13s (%s-%s) %10s %10s\n' "$protocol" "$server" "$r" "$rmin" "$rmax" "$c" "$cmin" "$cmax" "$vs_nginx" "$vs_caddy"
  done
done
