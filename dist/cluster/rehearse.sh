#!/usr/bin/env bash
# DEPLOY.md rehearsed on one machine: the blocks it marks `file:` are taken as written, with only
# what one machine needs changed (addresses to 127.0.0.2-5, free ports, paths in a temporary
# folder, the self-signed certificate), and every step it describes is run and checked with dig
# and curl. Runs as root (mariadbd runs as the mysql user), with mariadb-server, galera-4, rsync,
# dig and curl installed. FOOBAR names the binary (default: target/debug/foobar).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
FOOBAR=${FOOBAR:-$root/target/debug/foobar}
PROVIDER=/usr/lib/galera/libgalera_smm.so

die() { echo "rehearse: $*" >&2; [ -n "${work:-}" ] && failed; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root: mariadbd runs as the mysql user"
[ -x "$FOOBAR" ] || die "no binary at $FOOBAR (cargo build)"
[ -e "$PROVIDER" ] || die "galera-4 is not installed"
for tool in mariadbd mariadb mariadb-install-db rsync dig curl python3 openssl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done

work=$(mktemp -d /tmp/foobar-rehearsal.XXXXXX)
chmod 755 "$work"
declare -A foobar_pid mariadb_pid
stop_all() {
  for pid in "${foobar_pid[@]}" "${mariadb_pid[@]}"; do
    kill -s KILL -- "-$pid" 2>/dev/null || true
  done
}
failed() {
  stop_all
  for log in "$work"/node*/foobar.log "$work"/node*/mysql/error.log; do
    [ -f "$log" ] && { echo "--- $log"; tail -n 20 "$log"; }
  done
  echo "rehearse: FAILED (files kept in $work)" >&2
}
trap 'failed; exit 1' ERR
trap 'stop_all' EXIT

now() { echo "$EPOCHREALTIME"; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }
step() { echo; echo "== $*"; }

# --- The guide's files, as written -----------------------------------------------------------
doc="$work/doc"
mkdir -p "$doc"
awk -v dir="$doc" '
  /^```/ { if (inblock) { if (out) close(out); out = ""; inblock = 0 } else { inblock = 1; first = 1 }; next }
  inblock && first { first = 0; if (match($0, /^(#|--|;) file: /)) out = dir "/" substr($0, RLENGTH + 1) }
  out { print > out }
' "$root/DEPLOY.md"
for f in 60-galera.cnf foobar.sql node1.toml node2.toml foobar.com.zone promote.toml; do
  [ -s "$doc/$f" ] || die "DEPLOY.md has no block for $f"
done

# --- What one machine changes -----------------------------------------------------------------
# Ports free over TCP and UDP on every node address (the same port on each, as on real machines).
read -r DNS HTTP HTTPS GCOMM IST SST SQL1 SQL2 SQL3 SQL4 ADMIN1 ADMIN2 ADMIN3 ADMIN4 < <(python3 - <<'PY'
import socket
found = []
while len(found) < 14:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.bind(("127.0.0.2", 0))
    port = probe.getsockname()[1]
    probe.close()
    if port in found:
        continue
    try:
        held = []
        for host in ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]:
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                s = socket.socket(socket.AF_INET, kind)
                s.bind((host, port))
                held.append(s)
        found.append(port)
    except OSError:
        pass
    finally:
        for s in held:
            s.close()
print(*found)
PY
)
SQL=([1]=$SQL1 [2]=$SQL2 [3]=$SQL3 [4]=$SQL4)
ADMIN=([1]=$ADMIN1 [2]=$ADMIN2 [3]=$ADMIN3 [4]=$ADMIN4)
TSIG_SECRET=$(openssl rand -base64 32)
API_TOKEN=$(openssl rand -hex 32)
ip() { echo "127.0.0.$(($1 + 1))"; }

# localize N FILE: node N's copy of one of the guide's files, for this machine.
localize() {
  local n=$1 file=$2
  sed -e 's/192\.0\.2\.\([1-4]\)\b/127.0.0.\1X/g' "$file" |
    sed -e 's/127\.0\.0\.1X/127.0.0.2/g; s/127\.0\.0\.2X/127.0.0.3/g' \
        -e 's/127\.0\.0\.3X/127.0.0.4/g; s/127\.0\.0\.4X/127.0.0.5/g' \
        -e "s/\(127\.0\.0\.[2-5]\):53\b/\1:$DNS/g; s/\(127\.0\.0\.[2-5]\):80\b/\1:$HTTP/g" \
        -e "s/\(127\.0\.0\.[2-5]\):443\b/\1:$HTTPS/g; s/\(127\.0\.0\.[2-5]\):4567\b/\1:$GCOMM/g" \
        -e "s/\(127\.0\.0\.[2-5]\):4568\b/\1:$IST/g; s/\(127\.0\.0\.[2-5]\):4444\b/\1:$SST/g" \
        -e "s/127\.0\.0\.1:3306\b/127.0.0.1:${SQL[$n]}/g; s/127\.0\.0\.1:9153\b/127.0.0.1:${ADMIN[$n]}/g" \
        -e "s#/var/lib/foobar#$work/node$n/state#g; s#/etc/foobar/zones#$work/node$n/zones#g" \
        -e "s#/srv/foobar/public#$root/public#g" \
        -e '/^cert = "\/etc\/letsencrypt/d; /^key = "\/etc\/letsencrypt/d' \
        -e 's/^\[\[dns\.health\]\]$/&\nverify_certificate = false/' \
        -e "s#TSIG-SECRET#$TSIG_SECRET#g; s#API-TOKEN#$API_TOKEN#g"
}

dig_www() { # dig_www N: the addresses node N answers for www.foobar.com, sorted, on one line
  dig +short +time=1 +tries=1 -p "$DNS" @"$(ip "$1")" www.foobar.com A 2>/dev/null |
    grep -E '^[0-9.]+$' | sort | tr '\n' ' ' | sed 's/ $//' || true
}
wait_www() { # wait_www "NODES" "ADDRESSES" WHAT: until each node answers exactly ADDRESSES
  local nodes=$1 want=$2 what=$3 start got n
  start=$(now)
  while :; do
    got=ok
    for n in $nodes; do [ "$(dig_www "$n")" = "$want" ] || got=; done
    [ -n "$got" ] && break
    if (( $(python3 -c "print(int($(now) - $start > 60))") )); then
      for n in $nodes; do echo "node $n answers: $(dig_www "$n")"; done
      die "$what: not [$want] within 60 s"
    fi
    sleep 0.05
  done
  echo "$what: nodes $nodes answer [$want] after $(since "$start") s"
}
https_get() { # https_get N PATH: status code of GET https://www.foobar.com/PATH through node N
  curl -sk -o /dev/null -w '%{http_code}' --max-time 3 \
    --resolve "www.foobar.com:$HTTPS:$(ip "$1")" "https://www.foobar.com:$HTTPS$2" || true
}
wait_ready() { # wait_ready N CODE
  local n=$1 want=$2
  for _ in $(seq 1 600); do [ "$(https_get "$n" /readyz)" = "$want" ] && return; sleep 0.1; done
  die "node $n: /readyz never $want"
}

# --- Database nodes ---------------------------------------------------------------------------
sql() { mariadb --no-defaults --protocol=tcp -uroot -h127.0.0.1 -P"${SQL[$1]}" -N "${@:2}"; }
galera_status() {
  sql "$1" -e "SHOW STATUS WHERE Variable_name IN ('wsrep_cluster_size', 'wsrep_local_state_comment')" \
    2>/dev/null | awk '{print $2}' | sort | tr '\n' ' ' || true
}
wait_synced() { # wait_synced N SIZE
  for _ in $(seq 1 600); do
    [ "$(galera_status "$1")" = "$2 Synced " ] && { echo "database node $1: Synced, cluster of $2"; return; }
    sleep 0.2
  done
  cat "$work/node$1/mysql/error.log" >&2
  die "database node $1 not synced in a cluster of $2"
}
mariadb-install-db --no-defaults --user=mysql --auth-root-authentication-method=normal \
  --skip-test-db --datadir="$work/template" >/dev/null
database_node() { # database_node N [--wsrep-new-cluster]: configure and start node N's mariadbd
  local n=$1 dir="$work/node$1"
  mkdir -p "$dir"
  if [ ! -d "$dir/mysql" ]; then
    cp -a "$work/template" "$dir/mysql"
    # The lines marked "this node" carry node N's address (the guide shows node 1's).
    sed -e "/# this node/s/192\.0\.2\.1\b/192.0.2.$n/g" "$doc/60-galera.cnf" > "$dir/60-galera.raw"
    if [ "$n" = 4 ]; then # a node added later lists itself too
      sed -i 's/^\(wsrep_cluster_address = .*\)$/\1,192.0.2.4:4567/' "$dir/60-galera.raw"
    fi
    localize "$n" "$dir/60-galera.raw" > "$dir/60-galera.cnf"
    cat > "$dir/my.cnf" <<CNF
[mysqld]
user = mysql
datadir = $dir/mysql
socket = $dir/mysql/sock
pid-file = $dir/mysql/pid
log-error = $dir/mysql/error.log
bind-address = 127.0.0.1
port = ${SQL[$n]}
innodb_buffer_pool_size = 32M
!include $dir/60-galera.cnf
CNF
    chown -R mysql:mysql "$dir/mysql"
  fi
  setsid mariadbd --defaults-file="$dir/my.cnf" "${@:2}" </dev/null >/dev/null 2>&1 &
  mariadb_pid[$n]=$!
  disown
}
stop_database() { # as systemctl stop mariadb: SIGTERM, wait until gone
  kill -TERM "${mariadb_pid[$1]}"
  while kill -0 "${mariadb_pid[$1]}" 2>/dev/null; do sleep 0.1; done
  unset "mariadb_pid[$1]"
}

step "Galera: bootstrap node 1 (galera_new_cluster), then nodes 2 and 3 join"
start=$(now)
database_node 1 --wsrep-new-cluster
wait_synced 1 1
database_node 2
database_node 3
wait_synced 2 3
wait_synced 3 3
echo "cluster formed in $(since "$start") s"
sql 1 < "$doc/foobar.sql"
echo "foobar.sql run on node 1"

# --- foobar nodes -----------------------------------------------------------------------------
foobar_node() { # foobar_node N: configure (once) and start node N
  local n=$1 dir="$work/node$1"
  if [ ! -f "$dir/foobar.toml" ]; then
    mkdir -p "$dir/zones" "$dir/state"
    if [ "$n" = 1 ]; then
      localize 1 "$doc/node1.toml" > "$dir/foobar.toml"
      localize 1 "$doc/foobar.com.zone" > "$dir/zones/foobar.com.zone"
    else
      # Node 2's file with the node's own address, as the guide says for node 3.
      sed "s/192\.0\.2\.2\b/192.0.2.$n/g" "$doc/node2.toml" > "$dir/node.toml"
      localize "$n" "$dir/node.toml" > "$dir/foobar.toml"
    fi
    "$FOOBAR" serve --check --config "$dir/foobar.toml" >/dev/null 2>"$dir/check.log" ||
      { cat "$dir/check.log" >&2; die "node $n: serve --check failed"; }
  fi
  setsid "$FOOBAR" serve --config "$dir/foobar.toml" </dev/null >>"$dir/foobar.log" 2>&1 &
  foobar_pid[$n]=$!
  disown
}
A1=$(ip 1) A2=$(ip 2) A3=$(ip 3) A4=$(ip 4)

step "foobar: node 1 (primary), nodes 2 and 3 (secondaries)"
start=$(now)
foobar_node 1
foobar_node 2
foobar_node 3
for n in 1 2 3; do wait_ready "$n" 200; done
echo "three nodes ready in $(since "$start") s"
wait_www "1 2 3" "$A1 $A2 $A3" "zone on every node"
for n in 1 2 3; do
  "$FOOBAR" ctl -c "$work/node$n/foobar.toml" zone list | sed "s/^/node $n: /"
done

step "A post written through node 1 is read through nodes 2 and 3"
created=$(curl -sk --max-time 5 --resolve "www.foobar.com:$HTTPS:$A1" \
  -H "authorization: Bearer $API_TOKEN" -H 'content-type: application/json' \
  -d '{"title":"Rehearsal","body":"written through node 1"}' \
  -w '\n%{http_code}' "https://www.foobar.com:$HTTPS/api/posts")
[ "$(tail -n 1 <<<"$created")" = 201 ] || die "post through node 1: $created"
id=$(head -n 1 <<<"$created" | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
for n in 2 3; do
  [ "$(https_get "$n" "/api/posts/$id")" = 200 ] || die "post $id not read through node $n"
done
echo "post $id: 201 through node 1, 200 through nodes 2 and 3"

step "A foobar node dies (SIGKILL node 2): the others withdraw it, then it returns"
kill -s KILL -- "-${foobar_pid[2]}"
unset "foobar_pid[2]"
wait_www "1 3" "$A1 $A3" "node 2 withdrawn"
foobar_node 2
wait_www "1 2 3" "$A1 $A2 $A3" "node 2 back"

step "A database node stops (node 3's): node 3 fails /readyz and leaves the answers, then returns"
stop_database 3
wait_ready 3 503
wait_www "1 2" "$A1 $A2" "node 3 withdrawn"
database_node 3
wait_synced 3 3
wait_ready 3 200
wait_www "1 2" "$A1 $A2 $A3" "node 3 back"

step "Adding node 4"
database_node 4
wait_synced 4 4
foobar_node 4
wait_ready 4 200
zone="$work/node1/zones/foobar.com.zone"
cp "$zone" "$work/zone.before"
sed -i "s/^\(notify = \[.*\)\]$/\1, \"$A4:$DNS key:xfr.foobar.com.\"]/" "$work/node1/foobar.toml"
"$FOOBAR" reload --config "$work/node1/foobar.toml" >/dev/null
serial() { grep -oE '[0-9]{10} ; serial' "$1" | cut -d' ' -f1; }
next=$(($(serial "$zone") + 1))
python3 - "$zone" "$next" "$A4" <<'PY'
import sys
path, serial, address = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(path).read().split("\n")
out = []
for line in text:
    out.append(line)
    if line.startswith("www     IN A"):
        out.append(f"        IN A    {address}")
text = "\n".join(out)
old = text.split(" ; serial")[0].split()[-1]
open(path + ".new", "w").write(text.replace(f"{old} ; serial", f"{serial} ; serial", 1))
PY
grep -q "^        IN A    $A4" "$zone.new" || die "node 4's address not added to the zone"
mv "$zone.new" "$zone"
wait_www "1 2 3 4" "$A1 $A2 $A3 $A4" "node 4 answered by every node"

step "Removing node 4"
sed -e "s/[0-9]\{10\} ; serial/$((next + 1)) ; serial/" "$work/zone.before" > "$zone.new"
mv "$zone.new" "$zone"
sed -i "s/, \"$A4:$DNS key:xfr.foobar.com.\"\]$/]/" "$work/node1/foobar.toml"
"$FOOBAR" reload --config "$work/node1/foobar.toml" >/dev/null
wait_www "1 2 3" "$A1 $A2 $A3" "node 4 out of the zone"
start=$(now)
kill -TERM "${foobar_pid[4]}"   # systemctl stop foobar
while kill -0 "${foobar_pid[4]}" 2>/dev/null; do sleep 0.1; done
unset "foobar_pid[4]"
echo "node 4 stopped in $(since "$start") s (shutdown_delay, then the drain)"
stop_database 4
wait_synced 1 3
for n in 1 2 3; do [ "$(https_get "$n" /readyz)" = 200 ] || die "node $n not ready after node 4 left"; done

step "Node 1 dies: the secondaries answer on; node 2 becomes the primary"
kill -s KILL -- "-${foobar_pid[1]}"
unset "foobar_pid[1]"
wait_www "2 3" "$A2 $A3" "node 1 withdrawn"
# The guide's command, on node 2 (its address and port on this machine).
dig -y "hmac-sha256:xfr.foobar.com:$TSIG_SECRET" @"$A2" -p "$DNS" foobar.com AXFR \
  +onesoa +nocmd +nocomments +nostats | grep -v TSIG > "$work/node2/zones/foobar.com.zone"
localize 2 "$doc/promote.toml" > "$work/promote.toml"
python3 - "$work/node2/foobar.toml" "$work/promote.toml" <<'PY'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read()
lines = open(path).read().split("\n")
start = lines.index("[[dns.secondary]]")
end = start + 1
while end < len(lines) and lines[end] and not lines[end].startswith("["):
    end += 1
open(path, "w").write("\n".join(lines[:start] + table.rstrip("\n").split("\n") + lines[end:]))
PY
"$FOOBAR" reload --config "$work/node2/foobar.toml" >/dev/null
sed -i "s/^primaries = \[\"$A1:$DNS\"\]$/primaries = [\"$A2:$DNS\"]/" "$work/node3/foobar.toml"
grep -q "^primaries = \[\"$A2:$DNS\"\]$" "$work/node3/foobar.toml" || die "node 3's primaries not changed"
"$FOOBAR" reload --config "$work/node3/foobar.toml" >/dev/null
# An edit on the new primary reaches node 3.
zone="$work/node2/zones/foobar.com.zone"
python3 - "$zone" <<'PY'
import sys
path = sys.argv[1]
lines = open(path).read().split("\n")
soa = [i for i, l in enumerate(lines) if "\tSOA\t" in l][0]
fields = lines[soa].split()
fields[6] = str(int(fields[6]) + 1)
lines[soa] = "\t".join(fields)
lines.append("promoted.foobar.com.\t300\tIN\tTXT\t\"node 2 is the primary\"")
open(path + ".new", "w").write("\n".join(lines) + "\n")
PY
mv "$zone.new" "$zone"
for _ in $(seq 1 100); do
  got=$(dig +short -p "$DNS" @"$A3" promoted.foobar.com TXT)
  [ "$got" = '"node 2 is the primary"' ] && break
  sleep 0.1
done
[ "$got" = '"node 2 is the primary"' ] || die "an edit on node 2 did not reach node 3"
echo "an edit on node 2 is answered by node 3"
wait_www "2 3" "$A2 $A3" "nodes 2 and 3 serve on"

echo
echo "rehearse: every step of DEPLOY.md passed"
trap - ERR
rm -rf "$work"
