#!/usr/bin/env bash
# IXFR against AXFR for a one-record edit of a large zone: foobar serves the generated zone
# of N hosts (1,000,000 hosts = ~1.26M records), one host's address and the serial change, and
# the script prints the bytes of a full transfer, of the incremental one, and how long the edit
# took to be served.
#
#   benches/ixfr-size.sh [--hosts N]
source "$(dirname "$0")/lib.sh"

hosts=1000000
while [ $# -gt 0 ]; do
  case "$1" in
    --hosts) hosts=$2; shift 2 ;;
    --smoke) hosts=20000; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages bind9-dnsutils
foobar=$(foobar_binary)
work=$(mktemp -d)
pid=""
trap 'stop "$pid"; rm -rf "$work"' EXIT
mkdir -p "$work/zones"
origin=example.com
zone="$work/zones/$origin.zone"
python3 "$BENCH_ROOT/benches/gen-zone.py" "$hosts" "$origin." > "$zone"
port=25361
cat > "$work/foobar.toml" <<CONF
state_dir = "$work/state"
[dns]
listen = ["127.0.0.1:$port"]
zones = "$work/zones"
allow_transfer = ["127.0.0.1"]
[edge]
http = "127.0.0.1:0"
https = "127.0.0.1:0"
root = "$BENCH_ROOT/public"
CONF
RUST_LOG=warn "$foobar" serve --config "$work/foobar.toml" 2>"$work/foobar.log" & pid=$!
wait_port "$port"
until dig +short -p "$port" @127.0.0.1 "host1.$origin" A | grep -q .; do sleep 0.2; done

# "XFR size: 1250005 records (messages 416, bytes 31876523)" -> "records bytes"
xfr_size() { sed -n 's/.*XFR size: \([0-9]*\) records (messages [0-9]*, bytes \([0-9]*\)).*/\1 \2/p'; }
read -r axfr_records axfr_bytes < <(dig -p "$port" @127.0.0.1 "$origin" AXFR +nocmd | xfr_size)

# One host moves, the serial goes up; saved the way editors save (a rename).
sed -e 's/^@ SOA ns1 hostmaster 1 /@ SOA ns1 hostmaster 2 /' -e 's/^host7 A .*/host7 A 192.0.2.77/' "$zone" > "$zone.new"
edited=$(date +%s%N)
mv "$zone.new" "$zone"
until [ "$(dig +short -p "$port" @127.0.0.1 "host7.$origin" A)" = "192.0.2.77" ]; do sleep 0.02; done
served_ms=$(( ($(date +%s%N) - edited) / 1000000 ))
# The difference is computed after the new version serves (NOTIFY goes out once it is kept);
# until then an IXFR gets the whole zone.
for _ in $(seq 1 300); do
  read -r ixfr_records ixfr_bytes < <(dig -p "$port" @127.0.0.1 "$origin" IXFR=1 +nocmd | xfr_size)
  [ "$ixfr_records" -lt "$axfr_records" ] && break
  sleep 0.1
done
journaled_ms=$(( ($(date +%s%N) - edited) / 1000000 ))

echo "zone: $hosts hosts, $axfr_records records in an AXFR"
printf '%-6s %10s %12s\n' kind records bytes
printf '%-6s %10s %12s\n' AXFR "$axfr_records" "$axfr_bytes"
printf '%-6s %10s %12s\n' IXFR "$ixfr_records" "$ixfr_bytes"
python3 -c "import sys; a,i=int(sys.argv[1]),int(sys.argv[2]); print(f'IXFR is {i/a:.6%} of AXFR ({a//max(i,1)}x smaller)')" "$axfr_bytes" "$ixfr_bytes"
echo "edit served after $served_ms ms; its difference journaled (IXFR-ready) after $journaled_ms ms"
