# Shared helpers for the load-comparison scripts. Sourced, not run.
# Servers run pinned to core 0 and load generators to core 1 (taskset); CPU time is read from
# /proc for the server's whole process tree, so "per CPU-second" figures stay comparable even
# when the load generator is the bottleneck.

set -euo pipefail
# Turn Ctrl-C and kill into a normal exit, so each script's EXIT trap stops the servers it
# started.
trap 'exit 130' INT TERM

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
TICKS=$(getconf CLK_TCK)

# Installs Debian packages that are missing (root; registries only).
ensure_packages() {
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# Installs oha, the HTTP/3 load generator, from crates.io when PROTOCOLS include h3.
ensure_oha() { # ensure_oha "h1 h2 h3"
  if [[ " $1 " == *" h3 "* ]] && ! command -v oha >/dev/null; then
    echo "installing oha (the HTTP/3 load generator) from crates.io" >&2
    cargo install oha --features http3 --locked -q
  fi
}

# Starts a private MariaDB with its data in WORK/db, pinned to the server core, on PORT; sets
# pid_db.
start_private_mariadb() { # start_private_mariadb WORK PORT
  mariadb-install-db --no-defaults --user=mysql --auth-root-authentication-method=normal \
    --skip-test-db --datadir="$1/db" >/dev/null
  chown -R mysql:mysql "$1/db"
  taskset -c "$SERVER_CORE" mariadbd --no-defaults --user=mysql --bind-address=127.0.0.1 \
    --skip-name-resolve --port="$2" --datadir="$1/db" --socket="$1/db/sock" \
    --pid-file="$1/db/pid" --log-error="$1/db/error.log" --innodb-buffer-pool-size=128M \
    --max-connections=500 & pid_db=$!
  wait_port "$2"
}

# The post the app benchmarks read (a 2 KB body and 10 comments), written through the API of
# the foobar on PORT (api_token "bench"), so every stack reads the rows foobar's schema holds.
seed_post() { # seed_post PORT
  curl -sfk -o /dev/null "https://127.0.0.1:$1/api/posts" -H 'Authorization: Bearer bench' \
    -H 'content-type: application/json' \
    -d "{\"title\": \"A post under load\", \"body\": \"$(head -c 2000 /dev/zero | tr '\0' x)\"}"
  for i in $(seq 10); do
    curl -sfk -o /dev/null "https://127.0.0.1:$1/api/posts/1/comments" \
      -H 'content-type: application/json' -d "{\"author\": \"reader $i\", \"body\": \"comment $i\"}"
  done
}

# Builds the release binary and prints its path.
# The release binary, built from this tree; FOOBAR_BINARY=PATH measures another build instead
# (e.g. a copy of the previous commit's, for before/after figures).
foobar_binary() {
  if [ -n "${FOOBAR_BINARY:-}" ]; then
    echo "$FOOBAR_BINARY"
    return
  fi
  (cd "$BENCH_ROOT" && cargo build --release -q --bin foobar) >&2
  echo "$BENCH_ROOT/target/release/foobar"
}

# Process IDs of each PID and all their descendants.
process_tree() { # process_tree PID...
  local pids=("$@") i=0
  while [ $i -lt ${#pids[@]} ]; do
    for child in $(ps -o pid= --ppid "${pids[$i]}" 2>/dev/null); do pids+=("$child"); done
    i=$((i + 1))
  done
  echo "${pids[@]}"
}

# User plus system CPU seconds used so far by each PID and their descendants, summed.
# CPU time the whole machine has spent busy (every core, user, system and interrupts), in s.
machine_cpu_seconds() {
  awk -v hz="$TICKS" '$1 == "cpu" { printf "%.3f", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

cpu_seconds() { # cpu_seconds PID...
  local total=0
  for pid in $(process_tree "$@"); do
    local ticks
    # The command name may hold spaces ("nsd: server 1"): count fields after its closing ")".
    ticks=$(sed 's/.*) //' /proc/"$pid"/stat 2>/dev/null | awk '{print $12 + $13}' || echo 0)
    total=$((total + ticks))
  done
  awk -v t="$total" -v hz="$TICKS" 'BEGIN { printf "%.3f", t / hz }'
}

# Resident memory of each PID and their descendants, summed, in MB.
rss_mb() { # rss_mb PID...
  awk -v k="$(rss_kb "$@")" 'BEGIN { printf "%.0f", k / 1024 }'
}

# The peak resident memory (VmHWM) of each PID and their descendants, summed, in MB.
peak_mb() { # peak_mb PID...
  awk -v k="$(status_kb VmHWM "$@")" 'BEGIN { printf "%.0f", k / 1024 }'
}

# Resident memory of each PID and their descendants, summed, in KiB.
rss_kb() { # rss_kb PID...
  status_kb VmRSS "$@"
}

# A /proc/PID/status field in kB (VmRSS, VmHWM) of each PID and their descendants, summed.
status_kb() { # status_kb FIELD PID...
  local field=$1 total=0
  shift
  for pid in $(process_tree "$@"); do
    local kb
    kb=$(awk -v f="$field:" '$1 == f {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# Waits until TCP PORT on 127.0.0.1 accepts connections (at most 30 s).
wait_port() { # wait_port PORT [ADDRESS]
  for _ in $(seq 1 300); do
    if (exec 3<>/dev/tcp/"${2:-127.0.0.1}"/"$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on port $1" >&2
  return 1
}

# Median, minimum and maximum of the numbers on standard input: "median min max".
summarize() {
  sort -g | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "0 0 0"; exit }
    m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "%.0f %.0f %.0f\n", m, v[1], v[NR] }'
}

# Writes WORK/foobar.toml: state in WORK/state, zones from WORK/zones, DNS on DNS_PORT, HTTPS on
# HTTPS_PORT (0: any free port), static files from ROOT, then EXTRA lines (e.g. an [app] table).
write_foobar_conf() { # write_foobar_conf WORK DNS_PORT HTTPS_PORT ROOT [EXTRA]
  cat > "$1/foobar.toml" <<CONF
state_dir = "$1/state"
[dns]
listen = ["127.0.0.1:$2"]
zones = "$1/zones"
[edge]
http = "127.0.0.1:0"
https = "127.0.0.1:$3"
root = "$4"
${5:-}
CONF
}

# Writes a Knot DNS configuration serving ORIGIN from ZONE_FILE on 127.0.0.1@PORT, one worker.
write_knot_conf() { # write_knot_conf DIR PORT ORIGIN ZONE_FILE
  cat > "$1/knot.conf" <<CONF
server:
    listen: 127.0.0.1@$2
    rundir: $1
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: $1
log:
  - target: stderr
    any: error
zone:
  - domain: $3
    file: $4
    journal-content: none
    zonefile-load: whole
CONF
}

# Writes an NSD configuration serving ORIGIN from ZONES_DIR/ORIGIN.zone on 127.0.0.1@PORT.
write_nsd_conf() { # write_nsd_conf DIR PORT ORIGIN ZONES_DIR
  cat > "$1/nsd.conf" <<CONF
server:
    ip-address: 127.0.0.1@$2
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "$4"
    database: ""
    zonelistfile: "$1/zone.list"
    xfrdfile: "$1/xfrd.state"
    pidfile: "$1/nsd.pid"
    verbosity: 0
    # Response rate limiting would cap a single-client benchmark at a few hundred answers/s.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: $3
    zonefile: $3.zone
CONF
}

# The lines of an nginx http block that keep its temporary files in DIR (not in /var/lib/nginx,
# which a benchmark must not touch).
# The top of an nginx.conf for a server kept in DIR: root, one worker, its PID file and error
# log in DIR, 4096 connections.
nginx_head() { # nginx_head DIR
  cat <<CONF
user root;
worker_processes 1;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 4096; }
CONF
}

nginx_temp_paths() { # nginx_temp_paths DIR
  for kind in client_body proxy fastcgi uwsgi scgi; do
    printf '    %s_temp_path %s;\n' "$kind" "$1"
  done
}

# Stops a server started in the background (by the PID the script recorded).
# A work folder for one run (readable by the servers' own users), removed at exit with every
# server whose PID is in $pids stopped; the shipped zone in zones/, a 2 KB page in site/.
# Sets work and pids.
bench_work() {
  work=$(mktemp -d)
  chmod 755 "$work"
  pids=""
  trap 'for p in $pids; do stop "$p"; done; rm -rf "$work"' EXIT
  mkdir -p "$work/site" "$work/zones"
  cp "$BENCH_ROOT/zones/foobar.com.zone" "$work/zones/"
  head -c 2048 /dev/zero | tr '\0' 'a' > "$work/site/page.html"
}

# Starts $foobar on $work/foobar.toml on the server core, warnings only (logged to
# $work/foobar.log), and waits for PORT; sets pid_foobar and adds it to pids.
run_foobar() { # run_foobar PORT
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" \
    2>>"$work/foobar.log" & pid_foobar=$!
  pids="$pids $pid_foobar"
  wait_port "$1"
}

# $work/php-fpm.conf: one pool NAME of 8 static workers on $work/php-fpm.sock with opcache, and
# EXTRA lines (env[...]) in the pool.
write_php_fpm_conf() { # write_php_fpm_conf NAME [EXTRA]
  cat > "$work/php-fpm.conf" <<CONF
[global]
pid = $work/php-fpm.pid
error_log = $work/php-fpm.log
daemonize = no
[$1]
user = root
group = root
listen = $work/php-fpm.sock
listen.mode = 0666
pm = static
pm.max_children = 8
pm.max_requests = 0
${2:-}
php_admin_value[opcache.enable] = 1
php_admin_value[opcache.validate_timestamps] = 0
CONF
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# Starts an nginx serving $work/site over plain HTTP/1.1 on PORT, keep-alive without end (the
# upstream the proxy benchmarks put behind each proxy), pinned to the client core; adds it to
# pids and waits for it.
start_upstream_nginx() { # start_upstream_nginx PORT
  mkdir -p "$work/upstream"
  cat > "$work/upstream/nginx.conf" <<CONF
$(nginx_head "$work/upstream")
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    open_file_cache max=100 inactive=60s;
    types { text/html html; }
$(nginx_temp_paths "$work/upstream")
    server {
        listen 127.0.0.1:$1;
        root $work/site;
    }
}
CONF
  taskset -c "$CLIENT_CORE" nginx -c "$work/upstream/nginx.conf" -g 'daemon off;' \
    2>"$work/upstream.log" &
  pids="$pids $!"
  wait_port "$1"
}

# A foobar [[site]] whose one route proxies everything to 127.0.0.1:PORT, with EXTRA lines in
# the route.
proxy_site() { # proxy_site PORT [EXTRA]
  cat <<CONF
[[site]]
names = ["localhost"]
[[site.route]]
path = "/"
proxy = ["http://127.0.0.1:$1"]
${2:-}
CONF
}
