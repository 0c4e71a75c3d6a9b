#!/usr/bin/env bash
# HTTP side by side: foobar, nginx and Caddy serve the same files with the same certificate.
# A 2 KB page and a 1 MiB file over HTTP/1.1 (wrk), HTTP/2 (h2load) and HTTP/3 (oha), in
# alternating rounds; compression off on all sides (no client asks for it). nginx keeps open
# files and stats in its open_file_cache, as foobar keeps small files in memory (NGINX_STOCK=1
# runs nginx without it); Caddy has no file cache and logs nothing. Two settings of the logs,
# each measured and reported on its own:
#   off  the strongest setting of each: nginx `access_log off`, foobar with RUST_LOG=warn;
#   on   both write access lines in batches: nginx `buffer=64k flush=100ms` (one write per line
#        with NGINX_STOCK=1), foobar's default (batched, at most 100 ms late).
# Prints requests per second and per server CPU-second (median, min-max) and the ratio to nginx
# (h1, h2; Debian's nginx has no HTTP/3) and to Caddy (h3).
#
#   benches/http-compare.sh [--rounds N] [--seconds S] [--protocols "h1 h2 h3"] [--logs "off on"]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=8 protocols="h1 h2 h3" logs="off on"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --protocols) protocols=$2; shift 2 ;;
    --logs) logs=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages nginx caddy wrk nghttp2-client python3
ensure_oha "$protocols"
foobar=$(foobar_binary)
bench_work
stop_servers() { for p in $pids; do stop "$p"; done; pids=""; }
mkdir -p "$work/nginx"
head -c 1048576 /dev/urandom > "$work/site/file.bin"

# Starts the three servers with logs "$1" (off or on), runs the rounds and prints the table.
compare() { # compare off|on
  port_foobar=28443 port_nginx=28444 port_caddy=28445
  write_foobar_conf "$work" 0 "$port_foobar" "$work/site"
  # foobar creates the self-signed certificate that all three then serve.
  foobar_log=info
  [ "$1" = off ] && foobar_log=warn
  RUST_LOG=$foobar_log taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>"$work/foobar.log" & pid_foobar=$!
  pids="$pid_foobar"
  wait_port "$port_foobar"
  cert="$work/state/tls/self-signed.crt" key="$work/state/tls/self-signed.key"

  nginx_cache="open_file_cache max=10000 inactive=60s;"
  nginx_log="access_log $work/nginx/access.log combined buffer=64k flush=100ms;"
  if [ "${NGINX_STOCK:-0}" = 1 ]; then
    nginx_cache="" nginx_log="access_log $work/nginx/access.log;"
  fi
  [ "$1" = off ] && nginx_log="access_log off;"
  nginx_tuning="
      $nginx_cache
      $nginx_log"
  cat > "$work/nginx/nginx.conf" <<CONF
# The files live in a private temporary folder: the worker must run as its owner.
$(nginx_head "$work/nginx")
http {
    $nginx_tuning
$(nginx_temp_paths "$work/nginx")
    sendfile on;
    keepalive_requests 100000;
    types { text/html html; application/octet-stream bin; }
    server {
        listen 127.0.0.1:$port_nginx ssl http2;
        ssl_certificate $cert;
        ssl_certificate_key $key;
        root $work/site;
        gzip off;
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
    root * $work/site
    file_server
}
CONF
  taskset -c "$SERVER_CORE" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' 2>"$work/nginx.log" & pid_nginx=$!
  taskset -c "$SERVER_CORE" caddy run --config "$work/Caddyfile" --adapter caddyfile >"$work/caddy.log" 2>&1 & pid_caddy=$!
  pids="$pids $pid_nginx $pid_caddy"
  wait_port "$port_nginx"
  wait_port "$port_caddy"
  sleep 1

  # Runs one load and prints "requests_completed requests_per_second".
  load() { # load PROTOCOL URL
    case "$1" in
      h1) taskset -c "$CLIENT_CORE" wrk -t1 -c32 -d"${seconds}s" "$2" 2>&1 |
            awk '/requests in/ {n = $1} /Requests\/sec/ {r = $2} END {print n + 0, r + 0}' ;;
      h2) taskset -c "$CLIENT_CORE" h2load -D "$seconds" -c 16 -m 10 -t 1 "$2" 2>&1 |
            awk '/^requests:/ {n = $8} /^finished in/ {r = $4} END {print n + 0, r + 0}' ;;
      h3) taskset -c "$CLIENT_CORE" oha -z "${seconds}s" -c 16 --http-version 3 --insecure --disable-compression \
            --no-tui --output-format json "$2" 2>/dev/null |
            python3 -c 'import json, sys
d = json.load(sys.stdin); s = d["summary"]
n = sum(d.get("statusCodeDistribution", {}).values())
print(n, round(n / s["total"]) if s.get("total") else 0)' ;;
    esac
  }

  declare -A rps cps
  for round in $(seq "$rounds"); do
    for file in page.html file.bin; do
      for protocol in $protocols; do
        for server in foobar nginx caddy; do
          [ "$protocol/$server" = h3/nginx ] && continue
          eval "port=\$port_$server pid=\$pid_$server"
          before=$(cpu_seconds "$pid")
          read -r done rate < <(load "$protocol" "https://127.0.0.1:$port/$file")
          after=$(cpu_seconds "$pid")
          per_cpu=$(awk -v a="$done" -v b="$before" -v c="$after" 'BEGIN { d = c - b; printf "%.0f", (d > 0 ? a / d : 0) }')
          rps[$file/$protocol/$server]+="$rate "
          cps[$file/$protocol/$server]+="$per_cpu "
          printf 'logs %s round %d %-9s %s %-6s %9s req/s %9s req/CPU-s\n' "$1" "$round" "$file" "$protocol" "$server" "$rate" "$per_cpu" >&2
        done
      done
    done
  done

  echo
  echo "HTTP, logs $1, $rounds rounds x ${seconds}s, servers on core $SERVER_CORE, load on core $CLIENT_CORE"
  printf '%-9s %-3s %-6s %24s %26s %10s\n' file proto server "req/s (min-max)" "req/CPU-s (min-max)" ratio
  for file in page.html file.bin; do
    for protocol in $protocols; do
      peer=nginx; [ "$protocol" = h3 ] && peer=caddy
      read -r peer_cps _ _ < <(tr ' ' '\n' <<<"${cps[$file/$protocol/$peer]}" | grep . | summarize)
      for server in foobar nginx caddy; do
        [ "$protocol/$server" = h3/nginx ] && continue
        read -r r rmin rmax < <(tr ' ' '\n' <<<"${rps[$file/$protocol/$server]}" | grep . | summarize)
        read -r c cmin cmax < <(tr ' ' '\n' <<<"${cps[$file/$protocol/$server]}" | grep . | summarize)
        ratio=$(awk -v a="$c" -v b="$peer_cps" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
        printf '%-9s %-3s %-6s %9s (%s-%s) %11s (%s-%s) %6s vs %s\n' "$file" "$protocol" "$server" "$r" "$rmin" "$rmax" "$c" "$cmin" "$cmax" "$ratio" "$peer"
      done
    done
  done
  stop_servers
}

for setting in $logs; do
  compare "$setting"
done
