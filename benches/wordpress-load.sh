#!/usr/bin/env bash
# WordPress (Debian's package) on two stacks, one after the other on the same address:
#
#   classic   nginx (TLS, try_files to index.php, fastcgi_pass) + PHP-FPM + MariaDB
#   foobar    foobar (a fastcgi route) + PHP-FPM + MariaDB
#
# The same PHP-FPM pool (8 static children, opcache on) and the same private mariadbd serve
# both; the front page (ten posts) is loaded with wrk over HTTPS, HTTP/1.1 keep-alive, 8
# connections. Everything of the stack runs on core 0, wrk on core 1. Prints pages per second,
# pages per CPU-second of the whole stack (web server, every php-fpm process, mariadbd), its
# p99 latency, and the ratio to the classic stack.
#
#   benches/wordpress-load.sh [--rounds N] [--seconds S]
source "$(dirname "$0")/lib.sh"

rounds=3 seconds=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --smoke) rounds=1 seconds=3; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ensure_packages wrk curl nginx php8.2-fpm php8.2-mysql mariadb-server mariadb-client
[ -e /usr/share/wordpress/wp-settings.php ] || ensure_packages wordpress
foobar=$(foobar_binary)
php_fpm=$(ls /usr/sbin/php-fpm* | head -1)
bench_work
port_db=28800 port_web=28801

# A private MariaDB for the run.
start_private_mariadb "$work" "$port_db"
pids="$pid_db"
mariadb -h 127.0.0.1 -P "$port_db" -u root -e "CREATE DATABASE wordpress CHARACTER SET utf8mb4"

# WordPress's files with a configuration of the run's own (the package's reads /etc).
cp -al /usr/share/wordpress "$work/wordpress" 2>/dev/null || cp -a /usr/share/wordpress "$work/wordpress"
rm "$work/wordpress/wp-config.php"
cat > "$work/wordpress/wp-config.php" <<CONF
<?php
define('DB_NAME', 'wordpress');
define('DB_USER', 'root');
define('DB_PASSWORD', '');
define('DB_HOST', '127.0.0.1:$port_db');
define('DB_CHARSET', 'utf8mb4');
define('DB_COLLATE', '');
\$table_prefix = 'wp_';
foreach (['AUTH_KEY', 'SECURE_AUTH_KEY', 'LOGGED_IN_KEY', 'NONCE_KEY', 'AUTH_SALT',
          'SECURE_AUTH_SALT', 'LOGGED_IN_SALT', 'NONCE_SALT'] as \$key) {
    define(\$key, "\$key of the benchmark");
}
define('WP_HTTP_BLOCK_EXTERNAL', true);
define('AUTOMATIC_UPDATER_DISABLED', true);
define('DISABLE_WP_CRON', true);
define('ABSPATH', __DIR__ . '/');
require_once ABSPATH . 'wp-settings.php';
CONF

write_php_fpm_conf wordpress
taskset -c "$SERVER_CORE" "$php_fpm" --nodaemonize --allow-to-run-as-root --fpm-config "$work/php-fpm.conf" \
  2>>"$work/php-fpm.log" & pid_fpm=$!
pids="$pids $pid_fpm"
for _ in $(seq 50); do [ -S "$work/php-fpm.sock" ] && break; sleep 0.1; done

mkdir -p "$work/zones" "$work/nginx" "$work/empty"
cp "$BENCH_ROOT/zones/foobar.com.zone" "$work/zones/"
write_foobar_conf "$work" 0 "$port_web" "$work/empty" "$(cat <<CONF
[[site]]
names = ["localhost"]
root = "$work/wordpress"
[[site.route]]
path = "/"
fastcgi = "unix:$work/php-fpm.sock"
max_connections = 8
CONF
)"
start_foobar() {
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$foobar" serve --config "$work/foobar.toml" \
    2>>"$work/foobar.log" & pid_web=$!
  wait_port "$port_web"
}
cat > "$work/nginx/nginx.conf" <<CONF
$(nginx_head "$work/nginx")
http {
    access_log off;
    keepalive_requests 100000;
    include /etc/nginx/mime.types;
$(nginx_temp_paths "$work/nginx")
    server {
        listen 127.0.0.1:$port_web ssl http2;
        ssl_certificate $work/state/tls/self-signed.crt;
        ssl_certificate_key $work/state/tls/self-signed.key;
        root $work/wordpress;
        index index.php;
        location / { try_files \$uri \$uri/ /index.php?\$args; }
        location ~ \\.php\$ {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_FILENAME \$document_root\$fastcgi_script_name;
            fastcgi_param HTTPS on;
            # Debian's fastcgi_params passes \$host, without the port, which this port needs.
            fastcgi_param HTTP_HOST \$host:\$server_port;
            fastcgi_pass unix:$work/php-fpm.sock;
        }
    }
}
CONF
start_nginx() {
  taskset -c "$SERVER_CORE" nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' \
    2>>"$work/nginx.log" & pid_web=$!
  wait_port "$port_web"
}

# Installed through foobar (which also makes the certificate both serve), with ten posts.
start_foobar
base="https://127.0.0.1:$port_web"
curl -sk -o /dev/null "$base/wp-admin/install.php?step=2" \
  --data-urlencode "weblog_title=foobar's blog" --data-urlencode user_name=admin \
  --data-urlencode "admin_password=a benchmark password" --data-urlencode "admin_password2=a benchmark password" \
  --data-urlencode pw_weak=on --data-urlencode admin_email=hostmaster@foobar.com \
  --data-urlencode blog_public=0
for i in $(seq 10); do
  mariadb -h 127.0.0.1 -P "$port_db" -u root wordpress -e "INSERT INTO wp_posts
    (post_author, post_date, post_date_gmt, post_content, post_title, post_excerpt, post_status,
     comment_status, ping_status, post_name, to_ping, pinged, post_modified, post_modified_gmt,
     post_content_filtered, guid, post_type)
    VALUES (1, NOW(), UTC_TIMESTAMP(), REPEAT('A paragraph of the post. ', 80), 'Post $i', '', 'publish',
     'open', 'open', 'post-$i', '', '', NOW(), UTC_TIMESTAMP(), '', '', 'post')"
done
stop "$pid_web"
pids="$pids"

measure() { # measure → "pages/s pages/stack-CPU-s p99_ms"
  # A 200 with the page, not a redirect.
  [ "$(curl -sk --http1.1 -o /dev/null -w '%{http_code}' "$base/")" = 200 ] || { echo "no 200 from $base/" >&2; return 1; }
  taskset -c "$CLIENT_CORE" wrk -t1 -c8 -d2s "$base/" >/dev/null
  local before after web_before web_after
  before=$(cpu_seconds "$pid_web" "$pid_fpm" "$pid_db")
  web_before=$(cpu_seconds "$pid_web")
  taskset -c "$CLIENT_CORE" wrk -t1 -c8 -d"${seconds}s" --latency "$base/" > "$work/wrk.txt"
  after=$(cpu_seconds "$pid_web" "$pid_fpm" "$pid_db")
  web_after=$(cpu_seconds "$pid_web")
  awk -v b="$before" -v a="$after" -v wb="$web_before" -v wa="$web_after" '
    /requests in/ { n = $1 }
    /Requests\/sec/ { r = $2 }
    /Non-2xx/ { bad = $NF }
    $1 == "99%" { p = $2; if (p ~ /us$/) p = p / 1000; else if (p ~ /ms$/) p = p + 0; else p = p * 1000 }
    END { ok = n - bad; printf "%.1f %.1f %.1f %.2f\n", r * ok / (n ? n : 1), (a - b > 0 ? ok / (a - b) : 0), p, (ok ? (wa - wb) * 1000 / ok : 0) }
  ' "$work/wrk.txt"
}

declare -A pps cps p99 web
for round in $(seq "$rounds"); do
  # Alternating which goes first, so that neither always finds the database warmer.
  order="classic foobar"
  [ $((round % 2)) = 0 ] && order="foobar classic"
  for stack in $order; do
    if [ "$stack" = classic ]; then start_nginx; else start_foobar; fi
    read -r r c p w < <(measure)
    pps[$stack]+="$r " cps[$stack]+="$c " p99[$stack]+="$p " web[$stack]+="$w "
    printf 'round %d %-8s %7s pages/s %7s pages/stack-CPU-s p99 %s ms, web server %s ms CPU/page\n' \
      "$round" "$stack" "$r" "$c" "$p" "$w" >&2
    stop "$pid_web"
  done
done

median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {m = (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2; printf "%.1f", m}'; }
echo
echo "WordPress front page, $rounds rounds x ${seconds}s, wrk -c8 over HTTPS on core $CLIENT_CORE, each stack on core $SERVER_CORE"
printf '%-8s %9s %20s %9s %22s %12s\n' stack "pages/s" "pages/stack-CPU-s" "p99 ms" "web server ms CPU/page" "vs classic"
classic=$(median <<<"${cps[classic]}")
for stack in classic foobar; do
  c=$(median <<<"${cps[$stack]}")
  printf '%-8s %9s %20s %9s %22s %12s\n' "$stack" "$(median <<<"${pps[$stack]}")" "$c" \
    "$(median <<<"${p99[$stack]}")" "$(median <<<"${web[$stack]}")" \
    "$(awk -v a="$c" -v b="$classic" 'BEGIN { printf "%.2fx", (b > 0 ? a / b : 0) }')"
done
