#!/usr/bin/env bash
# The app under load, against the classic stack it replaces. The same post (a 2 KB body, 10
# comments) is read as a page (/posts/1, HTML) and as JSON (/api/posts/1) from:
#
#   classic         nginx + PHP-FPM (benches/classic/index.php, PDO) + MariaDB, plain HTTP
#   foobar          foobar + MariaDB, HTTPS, as configured by default (rendered responses kept)
#   foobar-nocache  the same with `cache_ms = 0`: every request queries and renders
#   foobar-sqlite   foobar alone on its embedded SQLite, HTTPS
#
# Every stack runs pinned to core 0 with its own MariaDB (a private mariadbd in a temporary
# folder, so its CPU is the stack's alone); wrk (64 connections, no compression asked) runs on
# core 1. Prints requests per second, requests per CPU-second of the whole stack (every process
# of it: nginx, php-fpm, mariadbd; foobar, mariadbd), p99 latency and the stack's resident
# memory, median of the rounds, and the ratio of each to the classic stack.
#
#   benches/app-load.sh [--rounds N] [--seconds S] [--stacks "classic foobar ..."]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=8 stacks="classic foobar foobar-nocache foobar-sqlite"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --stacks) stacks=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk curl nginx php-fpm php-mysql mariadb-server mariadb-client
foobar=$(foobar_binary)
php_fpm=$(ls /usr/sbin/php-fpm* | head -1)
bench_work

port_db=28630 port_foobar=28631 port_nginx=28632

# A private MariaDB for the run, its data in the work folder.
start_private_mariadb "$work" "$port_db"
pids="$pid_db"
sql() { mariadb -h 127.0.0.1 -P "$port_db" -u root "$@"; }
sql -e "CREATE DATABASE bench CHARACTER SET utf8mb4"

mkdir -p "$work/zones" "$work/nginx"
cp "$BENCH_ROOT/zones/foobar.com.zone" "$work/zones/"

# Starts foobar on DATABASE_URL with EXTRA [app] lines; sets pid_foobar.
start_foobar() { # start_foobar DATABASE_URL EXTRA
  write_foobar_conf "$work" 0 "$port_foobar" "$BENCH_ROOT/public" \
    "$(printf '[app]\ndatabase = "%s"\napi_token = "bench"\n%s' "$1" "$2")"
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" \
    2>>"$work/foobar.log" & pid_foobar=$!
  wait_port "$port_foobar"
}

start_foobar "mysql://root@127.0.0.1:$port_db/bench" ""
seed_post "$port_foobar"
stop "$pid_foobar"
start_foobar "sqlite://$work/foobar.db" ""
seed_post "$port_foobar"
stop "$pid_foobar"

# PHP-FPM and nginx as a tuned classic deployment runs them: static FPM children with
# persistent database connections and opcache, nginx with keep-alive and no access log.
write_php_fpm_conf bench "env[BENCH_DSN] = \"mysql:host=127.0.0.1;port=$port_db;dbname=bench\""
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000;
$(nginx_temp_paths "$work/nginx")
    server {
        listen 127.0.0.1:$port_nginx;
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $BENCH_ROOT/benches/classic/index.php;
            fastcgi_pass unix:$work/php-fpm.sock;
        }
    }
}
CONF

# Starts STACK's web side; sets web (its PID) and base (its URL).
start_stack() { # start_stack STACK
  case "$1" in
    classic)
      taskset -c "$SERVER_CORE" "$php_fpm" --nodaemonize --allow-to-run-as-root --fpm-config "$work/php-fpm.conf" \
        2>>"$work/php-fpm.log" & pid_fpm=$!
      taskset -c "$SERVER_CORE" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' \
        2>>"$work/nginx.log" & pid_nginx=$!
      wait_port "$port_nginx"
      for _ in $(seq 50); do [ -S "$work/php-fpm.sock" ] && break; sleep 0.1; done
      web="$pid_fpm $pid_nginx" base="http://127.0.0.1:$port_nginx" ;;
    foobar) start_foobar "mysql://root@127.0.0.1:$port_db/bench" ""
      web=$pid_foobar base="https://127.0.0.1:$port_foobar" ;;
    foobar-nocache) start_foobar "mysql://root@127.0.0.1:$port_db/bench" "cache_ms = 0"
      web=$pid_foobar base="https://127.0.0.1:$port_foobar" ;;
    foobar-sqlite) start_foobar "sqlite://$work/foobar.db" ""
      web=$pid_foobar base="https://127.0.0.1:$port_foobar" ;;
  esac
  pids="$pids $web"
}

# What the database server has been sent so far, as NAME=COUNT words: statements (Questions),
# prepares, executes, closes, and administrative commands (a connection reset is one).
db_counters() {
  sql -N -e "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions', 'Com_stmt_prepare',
    'Com_stmt_execute', 'Com_stmt_close', 'Com_admin_commands')" | awk '{printf "%s=%s ", $1, $2}'
}

# Loads URL for the run's seconds; prints "requests/s requests/stack-CPU-s p99_ms rss_mb", and
# to stderr what each request sent to the database.
measure() { # measure URL PID...
  local url=$1; shift
  curl -sfk -o /dev/null "$url" || { echo "no 200 from $url" >&2; return 1; }
  # A short warm-up (persistent connections, the cache, the buffer pool), not counted.
  taskset -c "$CLIENT_CORE" wrk -t1 -c64 -d1s "$url" >/dev/null
  local before after db_before db_after db_cpu_before db_cpu_after
  db_before=$(db_counters)
  before=$(cpu_seconds "$@")
  db_cpu_before=$(cpu_seconds "$pid_db")
  taskset -c "$CLIENT_CORE" wrk -t1 -c64 -d"${seconds}s" --latency "$url" > "$work/wrk.txt"
  after=$(cpu_seconds "$@")
  db_cpu_after=$(cpu_seconds "$pid_db")
  db_after=$(db_counters)
  awk -v b="$db_before" -v a="$db_after" -v cpu0="$before" -v cpu1="$after" \
    -v db0="$db_cpu_before" -v db1="$db_cpu_after" '/requests in/ { n = $1 } END {
    split(b, x, " "); split(a, y, " ")
    for (i in x) { split(x[i], kv, "="); from[kv[1]] = kv[2] }
    for (i in y) { split(y[i], kv, "="); to[kv[1]] = kv[2] }
    printf "  per request, sent to the database: %.2f statements, %.2f prepares, %.2f executes, %.2f closes, %.2f admin (resets)\n",
      (to["Questions"] - from["Questions"]) / n, (to["Com_stmt_prepare"] - from["Com_stmt_prepare"]) / n,
      (to["Com_stmt_execute"] - from["Com_stmt_execute"]) / n, (to["Com_stmt_close"] - from["Com_stmt_close"]) / n,
      (to["Com_admin_commands"] - from["Com_admin_commands"]) / n
    all = cpu1 - cpu0; db = db1 - db0
    printf "  per request, stack CPU: %.0f us, of which the database %.0f us (%.0f%%)\n",
      all * 1e6 / n, db * 1e6 / n, (all > 0 ? 100 * db / all : 0)
  }' "$work/wrk.txt" >&2
  awk -v b="$before" -v a="$after" -v rss="$(rss_mb "$@")" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { r = $2 }
    /Non-2xx/ { bad = $NF }
    $1 == "99%" { p = $2; if (p ~ /us$/) p = p / 1000; else if (p ~ /ms$/) p = p + 0; else p = p * 1000 }
    END { ok = n - bad; printf "%.0f %.0f %.2f %s\n", r * ok / (n ? n : 1), (a - b > 0 ? ok / (a - b) : 0), p, rss }
  ' "$work/wrk.txt"
}

declare -A rps cps p99 mem
for round in $(seq "$rounds"); do
  for stack in $stacks; do
    start_stack "$stack"
    for path in /posts/1 /api/posts/1; do
      # shellcheck disable=SC2086
      read -r r c p m < <(measure "$base$path" $web "$pid_db")
      rps[$stack$path]+="$r " cps[$stack$path]+="$c " p99[$stack$path]+="$p " mem[$stack$path]+="$m "
      printf 'round %d %-15s %-13s %7s req/s %7s req/stack-CPU-s p99 %s ms, %s MB\n' \
        "$round" "$stack" "$path" "$r" "$c" "$p" "$m" >&2
    done
    for p in $web; do stop "$p"; done
  done
done

median() { tr ' ' '\n' | { grep . || true; } | summarize | awk '{print $1}'; }
echo
echo "The app against the classic stack, $rounds rounds x ${seconds}s, wrk -c64 on core $CLIENT_CORE, each stack (with its mariadbd) on core $SERVER_CORE"
printf '%-15s %-13s %9s %16s %9s %9s %8s\n' stack path "req/s" "req/stack-CPU-s" "p99 ms" "RSS MB" "vs classic"
for path in /posts/1 /api/posts/1; do
  classic=$(median <<<"${cps[classic$path]:-}")
  for stack in $stacks; do
    c=$(median <<<"${cps[$stack$path]}")
    ratio=$(awk -v a="$c" -v b="$classic" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')
    printf '%-15s %-13s %9s %16s %9s %9s %8s\n' "$stack" "$path" "$(median <<<"${rps[$stack$path]}")" \
      "$c" "$(tr ' ' '\n' <<<"${p99[$stack$path]}" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')" \
      "$(median <<<"${mem[$stack$path]}")" "$ratio"
  done
done
