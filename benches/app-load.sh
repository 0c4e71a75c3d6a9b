#!/usr/bin/env bash
# The app under load: the post page (HTML) and the post JSON from foobar, with SQLite and with
# MySQL/MariaDB behind it. Prints requests per second, per server CPU-second, and p99 latency
# (oha over HTTP/2, 16 connections), median of the rounds.
#
#   benches/app-load.sh [--rounds N] [--seconds S] [--mysql mysql://root@127.0.0.1:3306]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=6 mysql=${FOOBAR_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --mysql) mysql=$2; shift 2 ;;
    --smoke) rounds=1 seconds=2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages python3 mariadb-client
command -v oha >/dev/null || cargo install oha --features http3 --locked -q
foobar=$(foobar_binary)
work=$(mktemp -d)
database="foobar_bench_$$"
server="${mysql%/*}"
pid=""
# Runs SQL on the MySQL server of the URL given (mysql://user[:password]@host[:port]/...).
mysql_admin() { # mysql_admin SQL
  python3 - "$server" "$1" <<'PY'
import subprocess, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
args = ["mariadb", "-h", url.hostname or "127.0.0.1", "-P", str(url.port or 3306),
        "-u", url.username or "root"]
if url.password:
    args.append(f"-p{url.password}")
subprocess.run(args + ["-e", sys.argv[2]], check=True)
PY
}
cleanup() {
  [ -n "$pid" ] && stop "$pid"
  mysql_admin "DROP DATABASE IF EXISTS \`$database\`" || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/zones"
cp "$BENCH_ROOT/zones/foobar.com.zone" "$work/zones/"
mysql_admin "CREATE DATABASE \`$database\` CHARACTER SET utf8mb4"

port=28543
# Runs foobar with DATABASE_URL, seeds a post with comments, loads PATH; prints
# "requests/s requests/CPU-s p99_ms".
measure() { # measure DATABASE_URL PATH
  write_foobar_conf "$work" 0 "$port" "$BENCH_ROOT/public" \
    "$(printf '[app]\ndatabase = "%s"\napi_token = "bench"' "$1")"
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" 2>>"$work/foobar.log" & pid=$!
  wait_port "$port"
  if ! curl -sk "https://127.0.0.1:$port/api/posts/1" | grep -q '"id":1'; then
    curl -sk -o /dev/null "https://127.0.0.1:$port/api/posts" -H 'Authorization: Bearer bench' \
      -H 'content-type: application/json' \
      -d "{\"title\": \"A post under load\", \"body\": \"$(head -c 2000 /dev/zero | tr '\0' x)\"}"
    for i in $(seq 10); do
      curl -sk -o /dev/null "https://127.0.0.1:$port/api/posts/1/comments" \
        -H 'content-type: application/json' -d "{\"author\": \"reader $i\", \"body\": \"comment $i\"}"
    done
  fi
  before=$(cpu_seconds "$pid")
  taskset -c "$CLIENT_CORE" oha -z "${seconds}s" -c 16 --http2 --insecure --no-tui \
    --output-format json "https://127.0.0.1:$port$2" > "$work/oha.json" 2>/dev/null
  after=$(cpu_seconds "$pid")
  stop "$pid"; pid=""
  python3 - "$work/oha.json" "$before" "$after" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); s = d["summary"]
ok = d.get("statusCodeDistribution", {}).get("200", 0)
cpu = float(sys.argv[3]) - float(sys.argv[2])
p99 = (d.get("latencyPercentiles") or {}).get("p99") or 0
print(round(ok / s["total"]), round(ok / cpu) if cpu > 0 else 0, round(p99 * 1000, 2))
PY
}

declare -A rps cps p99
for round in $(seq "$rounds"); do
  for backend in sqlite mysql; do
    url="sqlite://$work/foobar.db"
    [ "$backend" = mysql ] && url="$server/$database"
    for path in /posts/1 /api/posts/1; do
      read -r r c p < <(measure "$url" "$path")
      rps[$backend$path]+="$r " cps[$backend$path]+="$c " p99[$backend$path]+="$p "
      printf 'round %d %-6s %-13s %7s req/s %7s req/CPU-s p99 %s ms\n' "$round" "$backend" "$path" "$r" "$c" "$p" >&2
    done
  done
done

echo
echo "App, $rounds rounds x ${seconds}s, oha over HTTP/2 with 16 connections, foobar on core $SERVER_CORE"
printf '%-6s %-13s %10s %12s %10s\n' backend path "req/s" "req/CPU-s" "p99 ms"
for backend in sqlite mysql; do
  for path in /posts/1 /api/posts/1; do
    read -r r _ _ < <(tr ' ' '\n' <<<"${rps[$backend$path]}" | grep . | summarize)
    read -r c _ _ < <(tr ' ' '\n' <<<"${cps[$backend$path]}" | grep . | summarize)
    p=$(tr ' ' '\n' <<<"${p99[$backend$path]}" | grep . | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
    printf '%-6s %-13s %10s %12s %10s\n' "$backend" "$path" "$r" "$c" "$p"
  done
done
