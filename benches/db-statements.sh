#!/usr/bin/env bash
# What MariaDB itself spends on each statement the post page and JSON send, foobar's and the
# classic stack's (benches/app-load.sh): the floor under the app's requests per stack
# CPU-second when responses are not kept (`cache_ms = 0`). A private mariadbd on core 0 with
# the post benches/app-load.sh reads (schema and rows made through foobar), and one PHP client
# on core 1 running each statement with server-side prepares; prints the server's CPU and the
# round trip per execution.
#
#   benches/db-statements.sh [--runs N]
source "$(dirname "$0")/lib.sh"

runs=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --smoke) runs=500; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages curl php-cli php-mysql mariadb-server mariadb-client
foobar=$(foobar_binary)
bench_work
port_db=28640 port_foobar=28641

start_private_mariadb "$work" "$port_db"
pids="$pid_db"
mariadb -h 127.0.0.1 -P "$port_db" -u root -e "CREATE DATABASE bench CHARACTER SET utf8mb4"

# The post benches/app-load.sh reads.
write_foobar_conf "$work" 0 "$port_foobar" "$BENCH_ROOT/public" \
  "$(printf '[app]\ndatabase = "mysql://root@127.0.0.1:%s/bench"\napi_token = "bench"' "$port_db")"
run_foobar "$port_foobar"
seed_post "$port_foobar"
stop "$pid_foobar"

echo "MariaDB's CPU per statement, $runs executions each, one client on core $CLIENT_CORE, mariadbd on core $SERVER_CORE"
DB_PID=$pid_db DB_DSN="mysql:host=127.0.0.1;port=$port_db;dbname=bench" RUNS=$runs \
  taskset -c "$CLIENT_CORE" php "$BENCH_ROOT/benches/classic/statements.php"
