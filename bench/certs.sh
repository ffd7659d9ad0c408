#!/bin/bash
# bench/certs.sh: the staging certificates (issue 9) against Debian's
# pebble, in one run, all on loopback under a mktemp scratch folder:
#
#   1. first issuance, portal-gated side by side with Debian's `certbot
#      certonly --standalone`, against the same pebble, runs interleaved
#      (certbot first in odd runs, portal-gated first in even ones), each
#      from nothing: a new account, a new key, a new name. Measured:
#        certbot       the command's wall time (start -> exit, its files
#                      written);
#        portal-gated  a new daemon with a new state_dir and no pair:
#                      started -> its "issued ... installed and nginx
#                      reloaded" log line (placeholder, account, order,
#                      http-01 through the edge, the pair checked and
#                      written, nginx -t, SIGHUP: more than certbot does).
#      Plus the ACME part alone ("starts" -> "issued" lines) and a
#      renewal by the long-running daemon (`cert renew NAME --wait`:
#      "renewal asked" -> "issued" in its log, and the CLI's wall time).
#   2. HTTPS under wrk load while the certificate rotates: `wrk -t2 -c20
#      -d10s` against the staging vhost, five runs one after the other:
#      keep-alive (wrk's way) with nothing else, with three `cert renew
#      --wait`, and with three bare SIGHUPs to that nginx (the pair
#      unchanged: what a reload alone costs keep-alive clients); then
#      `Connection: close` (a new TLS connection per request) with nothing
#      else and with three renewals. A failed request is a "Non-2xx" or a
#      "Socket errors" line of wrk; the served serial must change at each
#      renewal.
#   3. kill propagation while orders are in flight: bench/propagation-probe
#      (as bench/propagation.sh uses it) on 3 edges, kill rounds in blocks
#      that alternate between idle and a loop of `cert renew --wait`
#      against pebble for the whole block; p50 / p99 / max of each, and how
#      many rounds had an order in flight at t0 (from the daemon's log).
#
# The rig: redis-server; pebble and pebble-challtestsrv (tools/pebble.sh;
# PEBBLE_AUTHZREUSE=0: every order is validated through the edge);
# edges e1..e3 (2 workers each, reuseport, portal_gate_acme_challenge on,
# pebble's httpPort is e1's port; certbot listens on 127.0.0.2 at the same
# port, its names resolved there); "staging", the nginx with the HTTPS
# vhost whose pair portal-gated installs and reloads (it is not probed: a
# reload changes its workers); portal-gated with e1..e3 and the
# certificate; $CERTS_FLAGS flags in production.
#
#   CERTS_RUNS=5          first issuances of each client
#   CERTS_WRK=10          seconds of each wrk run
#   CERTS_RENEWALS=3      renewals (or SIGHUPs) during a wrk run
#   CERTS_KILLS=200       kill rounds (half idle, half with renewals)
#   CERTS_BLOCKS=10       blocks, alternating (idle first)
#   CERTS_FLAGS=30        flags in the store
#   CERTS_TEST_NICE=N     portal-gated runs `nice -n N nginx -t` (the
#                         nginx line's binary=, a wrapper): what a config
#                         check at a lower CPU priority does to the kills
#   CERTS_KEEP=1          keep the scratch folder
#   PORTAL_GATED, PORTAL_GATECTL   other builds of the controller
#
# Prints a results block for bench/RESULTS.md at the end. Everything it
# starts is stopped on exit. Needs pebble, certbot and wrk (make bench
# installs them); without pebble or certbot it says so and exits 0.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
gated_bin=${PORTAL_GATED:-$top/build/portal-gated}
ctl_bin=${PORTAL_GATECTL:-$top/build/portal-gatectl}
nginx=/usr/sbin/nginx

runs=${CERTS_RUNS:-5}
wrk_secs=${CERTS_WRK:-10}
renewals=${CERTS_RENEWALS:-3}
kills=${CERTS_KILLS:-200}
blocks=${CERTS_BLOCKS:-10}
nflags=${CERTS_FLAGS:-30}
workers=2
name=staging.bench.test

# shellcheck source-path=SCRIPTDIR source=../tools/pebble.sh
. "$top/tools/pebble.sh"

if ! pebble_available; then
    echo "certs: skipped: $pebble_error"
    exit 0
fi
if ! command -v certbot > /dev/null; then
    echo "certs: skipped: certbot is not installed (Debian package certbot)"
    exit 0
fi
for tool in "$nginx" redis-server redis-cli wrk cc curl perl openssl; do
    if ! command -v "$tool" > /dev/null; then
        echo "certs: $tool is missing: run make bench" >&2
        exit 1
    fi
done
for f in "$module" "$gated_bin" "$ctl_bin"; do
    if [ ! -f "$f" ]; then
        echo "certs: $f is missing: run make module ctl gated" >&2
        exit 1
    fi
done
if [ $((kills % blocks)) != 0 ] || [ $((blocks % 2)) != 0 ]; then
    echo "certs: CERTS_KILLS must be a multiple of CERTS_BLOCKS, itself" \
         "even" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/portal-gate-certs.XXXXXX)
chmod 755 "$dir"

# private copies: the figures belong to the binaries there at the start
cp "$module" "$gated_bin" "$ctl_bin" "$dir/"
module="$dir/ngx_http_portal_gate_module.so"
gated_bin="$dir/$(basename "$gated_bin")"
ctl_bin="$dir/$(basename "$ctl_bin")"

# everything started, stopped in reverse: NAME PID pairs
names=()
pids=()
started() {
    names+=("$1")
    pids+=("$2")
}
loop_pid=""

stop() {
    local i
    set +e
    if [ -n "$loop_pid" ]; then
        touch "$dir/loop.stop"
        wait "$loop_pid" 2>/dev/null
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        if kill -0 "${pids[i]}" 2>/dev/null; then
            # nginx: QUIT waits for its workers
            case ${names[i]} in
                nginx*) kill -QUIT "${pids[i]}" ;;
                *) kill -TERM "${pids[i]}" ;;
            esac
            wait "${pids[i]}" 2>/dev/null
        fi
    done
    if [ -n "${CERTS_KEEP:-}" ]; then
        echo "certs: kept $dir (CERTS_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { echo "== $*" >&2; }

fail() {
    echo "certs: $*" >&2
    for f in "$dir"/probe.err "$dir"/gated.log "$dir"/*/error.log \
             "$dir/pebble/pebble.log"; do
        [ -f "$f" ] || continue
        echo "--- $f" >&2
        tail -15 "$f" >&2 || true
    done
    exit 1
}

# alive, and not a zombie
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# wait_for SECONDS PID TEST...: until TEST succeeds; 1 if PID exits first
wait_for() {
    local secs=$1 pid=$2 n
    shift 2
    for ((n = 0; n < secs * 50; n++)); do
        running "$pid" || return 1
        "$@" > /dev/null 2>&1 && return 0
        sleep 0.02
    done
    return 1
}

ms_now() { date +%s%3N; }

# log_ms LINE: a portal-gated log line's time ("2026/11/30 03:00:00.123
# ..."), in ms since the epoch
log_ms() {
    perl -MTime::Local=timelocal -ne '
        m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+)\.(\d+) } or exit 1;
        print timelocal($6, $5, $4, $3, $2 - 1, $1) * 1000 + $7, "\n"' \
        <<< "$1"
}

median() {
    perl -e '@v = sort { $a <=> $b } @ARGV; $n = @v;
             printf "%.0f\n", $n % 2 ? $v[$n / 2]
                                     : ($v[$n / 2 - 1] + $v[$n / 2]) / 2' "$@"
}
secs() { perl -e 'printf "%.2f", $ARGV[0] / 1000' "$1"; }
list_secs() {
    local v out=""
    for v in "$@"; do out+="${out:+ }$(secs "$v")"; done
    echo "$out"
}

# ------------------------------------------------------------ free ports
read -r redis_port https_port pb_port pb_mgmt dns_port dns_mgmt port1 \
        port2 port3 https_var_port < <(perl -MIO::Socket::INET -e '
    my @s;
    while (@s < 10) {
        my $t = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                      LocalPort => 0, Listen => 1)
            or die "certs: no free port: $!\n";
        # the DNS takes UDP too
        my $u = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                      LocalPort => $t->sockport,
                                      Proto => "udp") or next;
        push @s, [$t, $u];
    }
    print join(" ", map { $_->[0]->sockport } @s), "\n"')
ports=("$port1" "$port2" "$port3")

# ---------------------------------------------------------------- pebble
say "pebble on 127.0.0.1:$pb_port (http-01 to 127.0.0.1:$port1)"
pebble_dir="$dir/pebble"
pebble_port=$pb_port
pebble_mgmt_port=$pb_mgmt
pebble_http_port=$port1
pebble_tls_port=$https_port
pebble_dns_port=$dns_port
pebble_dns_mgmt_port=$dns_mgmt
pebble_env=(PEBBLE_AUTHZREUSE=0)
pebble_started=started
pebble_start || fail "pebble: $pebble_error ${pebble_log_tail:-}"

# ------------------------------------------------------------------ redis
say "redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
started redis-server $!

export PORTAL_GATE_REDIS="redis://127.0.0.1:$redis_port/0"
export PORTAL_GATE_PREFIX="bench:"
export PORTAL_GATE_ENV=production
unset PORTAL_GATE_CONF

ctl() { "$ctl_bin" --actor bench "$@"; }
wait_for 5 "${pids[-1]}" ctl init || fail "redis-server did not start"

say "seeding $nflags flags"
ctl create customer_portal > /dev/null
ctl rollout customer_portal 100 > /dev/null
for i in $(seq 2 "$nflags"); do
    f=$(printf 'flag_%02d' "$i")
    ctl create "$f" > /dev/null
    ctl rollout "$f" $((i * 3 % 100)) > /dev/null
    ctl allow "$f" $((1000 + i)) $((2000 + i)) $((3000 + i)) > /dev/null
done

# ------------------------------------------------------------------- edges
# nginx_conf DIR BODY: an nginx.conf in DIR with BODY in its http block
nginx_conf() {
    local d=$1
    mkdir -p "$d/state" "$d/tmp"
    if [ "$(id -u)" = 0 ]; then
        chown nobody:nogroup "$d/state" "$d/tmp"
    fi
    cat > "$d/nginx.conf" <<EOF
load_module $module;

daemon off;
worker_processes $workers;
pid $d/nginx.pid;
error_log $d/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
    default_type text/plain;
$2
}
EOF
}

start_nginx() {
    "$nginx" -p "$1/" -c "$1/nginx.conf" -e "$1/error.log" \
        2>> "$1/stderr.log" &
    started "nginx-$(basename "$1")" $!
}

# e1..e3: propagation.sh's edges, answering the ACME challenges too
edge_pids=()
for e in 1 2 3; do
    ed="$dir/e$e"
    nginx_conf "$ed" "
    keepalive_timeout 600s;
    keepalive_requests 100000000;

    portal_gate_zone zone=portal_gate:4m state=$ed/state/state.json;
    portal_gate_company \$http_x_company_id;
    portal_gate_acme_challenge on;

    server {
        listen 127.0.0.1:${ports[$((e - 1))]} reuseport;

        location /portal/ {
            portal_gate customer_portal;
            add_header X-Pid \$pid always;
            return 200 \"on\\n\";
        }
    }

    server {
        listen unix:$ed/api.sock;
        location /portal-gate/ {
            portal_gate_api;
        }
    }"
    start_nginx "$ed"
    edge_pids[e]=${pids[-1]}
done

edge_up() {
    curl -sf -o /dev/null --unix-socket "$dir/e$1/api.sock" \
        http://edge/portal-gate/status
}
for e in 1 2 3; do
    wait_for 5 "${edge_pids[e]}" edge_up "$e" || fail "nginx e$e did not start"
done

# ------------------------------------------------------------ portal-gated
# CERTS_TEST_NICE: nginx -t through a wrapper at that niceness
nginx_binary=""
if [ -n "${CERTS_TEST_NICE:-}" ]; then
    printf '#!/bin/sh\nexec nice -n %d %s "$@"\n' "$CERTS_TEST_NICE" \
        "$nginx" > "$dir/nginx-niced"
    chmod 755 "$dir/nginx-niced"
    nginx_binary=" binary=$dir/nginx-niced"
fi

# gated_conf FILE STATE_DIR NAME CERTS [VAR]: a portal-gated.conf with
# e1..e3, the staging nginx, and certificate NAME whose pair goes to
# CERTS/NAME; VAR set: the staging-var nginx too (reload=off)
gated_conf() {
    local var_line=""
    if [ -n "${5:-}" ]; then
        var_line="nginx              conf=$dir/staging-var/nginx.conf prefix=$dir/staging-var reload=off$nginx_binary;"
    fi
    mkdir -p "$2" "$4"
    cat > "$1" <<EOF
redis              $PORTAL_GATE_REDIS;
prefix             $PORTAL_GATE_PREFIX;
environments       production;
edge               unix:$dir/e1/api.sock:/portal-gate/;
edge               unix:$dir/e2/api.sock:/portal-gate/;
edge               unix:$dir/e3/api.sock:/portal-gate/;
reconcile_interval 2s;
log_level          info;
state_dir          $2;
nginx              conf=$dir/staging/nginx.conf pid=$dir/staging/nginx.pid prefix=$dir/staging$nginx_binary;
$var_line
certificate $3 {
    issuer    acme $pebble_directory;
    acme_ca   $pebble_ca;
    fullchain $4/$3/fullchain.pem;
    privkey   $4/$3/privkey.pem;
}
EOF
}

say "portal-gated with 3 edges and certificate $name"
gated_conf "$dir/gated.conf" "$dir/gated-state" "$name" "$dir/certs" var
"$gated_bin" -c "$dir/gated.conf" 2> "$dir/gated.log" &
gated_pid=$!
started portal-gated "$gated_pid"
wait_for 5 "$gated_pid" test -s "$dir/certs/$name/privkey.pem" \
    || fail "portal-gated wrote no placeholder"

# the staging vhost on HTTPS, with the pair portal-gated keeps
nginx_conf "$dir/staging" "
    server {
        listen 127.0.0.1:$https_port ssl;
        server_name $name;
        ssl_certificate $dir/certs/$name/fullchain.pem;
        ssl_certificate_key $dir/certs/$name/privkey.pem;
        location / {
            return 200 \"staging\\n\";
        }
    }"
start_nginx "$dir/staging"
staging_pid=${pids[-1]}

# staging-var: the same pair, read at each handshake through a variable
# (the nginx line's reload=off: no SIGHUP, keep-alive connections stay).
# Its workers read the key themselves: made theirs once, as an operator
# would; portal-gated's installs keep the owner.
if [ "$(id -u)" = 0 ]; then
    chmod 755 "$dir" "$dir/certs" "$dir/certs/$name"
    chown nobody:nogroup "$dir/certs/$name/privkey.pem"
fi
nginx_conf "$dir/staging-var" "
    map \$ssl_server_name \$staging_chain { default $dir/certs/$name/fullchain.pem; }
    map \$ssl_server_name \$staging_key { default $dir/certs/$name/privkey.pem; }
    server {
        listen 127.0.0.1:$https_var_port ssl;
        server_name $name;
        ssl_certificate \$staging_chain;
        ssl_certificate_key \$staging_key;
        location / {
            return 200 \"staging\\n\";
        }
    }"
start_nginx "$dir/staging-var"
staging_var_pid=${pids[-1]}

https_ok() {
    curl -sf -o /dev/null --cacert "$pebble_root" \
        --resolve "$name:$https_port:127.0.0.1" "https://$name:$https_port/"
}
wait_for 30 "$gated_pid" https_ok \
    || fail "the staging vhost does not serve pebble's certificate"
https_var_ok() {
    curl -sf -o /dev/null --cacert "$pebble_root" \
        --resolve "$name:$https_var_port:127.0.0.1" \
        "https://$name:$https_var_port/"
}
wait_for 10 "$gated_pid" https_var_ok \
    || fail "the staging-var vhost does not serve pebble's certificate"
wait_for 10 "$gated_pid" ctl -c "$dir/gated.conf" status \
    || fail "the edges are not in step: $(ctl -c "$dir/gated.conf" status 2>&1)"

# served_serial [PORT]: the serial the staging vhost (or PORT's) serves now
served_serial() {
    openssl s_client -connect "127.0.0.1:${1:-$https_port}" \
        -servername "$name" \
        < /dev/null 2> /dev/null | openssl x509 -noout -serial 2> /dev/null \
        | sed 's/^serial=//'
}

# ------------------------------------------------- 1. first issuance
# certbot_run I: prints its wall time in ms
certbot_run() {
    local cb="$dir/certbot/$1" host="certbot$1.bench.test" t0 t1
    mkdir -p "$cb"
    pebble_add_a "$host" 127.0.0.2 || fail "$pebble_error"
    t0=$(ms_now)
    REQUESTS_CA_BUNDLE=$pebble_ca certbot certonly --standalone \
        --http-01-address 127.0.0.2 --http-01-port "$port1" \
        --server "$pebble_directory" --config-dir "$cb/config" \
        --work-dir "$cb/work" --logs-dir "$cb/logs" --agree-tos \
        --register-unsafely-without-email --non-interactive -d "$host" \
        > "$cb/out.txt" 2>&1 || fail "certbot failed: $(tail -5 "$cb/out.txt")"
    t1=$(ms_now)
    openssl verify -CAfile "$pebble_root" \
        -untrusted "$cb/config/live/$host/fullchain.pem" \
        "$cb/config/live/$host/cert.pem" > /dev/null \
        || fail "certbot's certificate does not verify against pebble's root"
    echo $((t1 - t0))
}

# gated_run I: a new portal-gated, nothing of its own yet; prints "START
# ISSUED ACME" in ms: started -> issued, and the "starts" -> "issued" part
gated_run() {
    local g="$dir/first/$1" host="gated$1.bench.test" t0 pid line started
    local issued n
    mkdir -p "$g"
    gated_conf "$g/gated.conf" "$g/state" "$host" "$g/certs"
    t0=$(ms_now)
    "$gated_bin" -c "$g/gated.conf" 2> "$g/gated.log" &
    pid=$!
    for ((n = 0; n < 3000; n++)); do
        grep -q -E "certificate $host: (issued|failed)" "$g/gated.log" && break
        running "$pid" || break
        sleep 0.02
    done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
    line=$(grep -m1 "certificate $host: issued by" "$g/gated.log") \
        || fail "portal-gated did not issue $host: $(tail -5 "$g/gated.log")"
    issued=$(log_ms "$line")
    started=$(log_ms "$(grep -m1 "certificate $host: first issuance .* starts" \
                        "$g/gated.log")")
    openssl verify -CAfile "$pebble_root" \
        -untrusted "$g/certs/$host/fullchain.pem" \
        "$g/certs/$host/fullchain.pem" > /dev/null \
        || fail "portal-gated's certificate does not verify against the root"
    echo "$((issued - t0)) $((issued - started))"
}

# renew_run: the long-running daemon renews; prints "LOG CLI" in ms:
# "renewal asked" -> "issued" in its log, and the CLI's wall time
renew_run() {
    local t0 t1 from asked issued
    from=$(wc -l < "$dir/gated.log")
    t0=$(ms_now)
    ctl cert renew "$name" --wait 60 > "$dir/renew.out" 2>&1 \
        || fail "cert renew failed: $(cat "$dir/renew.out")"
    t1=$(ms_now)
    asked=$(log_ms "$(tail -n +"$((from + 1))" "$dir/gated.log" \
                      | grep -m1 "certificate $name: renewal asked")")
    issued=$(log_ms "$(tail -n +"$((from + 1))" "$dir/gated.log" \
                       | grep -m1 "certificate $name: issued by")")
    echo "$((issued - asked)) $((t1 - t0))"
}

say "1. first issuance: $runs runs each, interleaved"
cb_ms=()
pg_ms=()
pg_acme_ms=()
rn_ms=()
rn_cli_ms=()
for i in $(seq 1 "$runs"); do
    if [ $((i % 2)) = 1 ]; then
        cb=$(certbot_run "$i")
        pg=$(gated_run "$i")
    else
        pg=$(gated_run "$i")
        cb=$(certbot_run "$i")
    fi
    cb_ms+=("$cb")
    read -r a b <<< "$pg"
    pg_ms+=("$a")
    pg_acme_ms+=("$b")
    rn=$(renew_run)
    read -r a b <<< "$rn"
    rn_ms+=("$a")
    rn_cli_ms+=("$b")
    say "run $i: certbot ${cb_ms[-1]} ms, portal-gated ${pg_ms[-1]} ms" \
        "(ACME ${pg_acme_ms[-1]} ms), renewal ${rn_ms[-1]} ms" \
        "(cert renew --wait ${rn_cli_ms[-1]} ms)"
done
cb_med=$(median "${cb_ms[@]}")
pg_med=$(median "${pg_ms[@]}")
pg_acme_med=$(median "${pg_acme_ms[@]}")
rn_med=$(median "${rn_ms[@]}")
rn_cli_med=$(median "${rn_cli_ms[@]}")

# --------------------------------------------------- 2. HTTPS under load
# wrk_run OUT CONN EVENT: wrk against the staging vhost; CONN keepalive
# (wrk's way: one request in flight per connection, the next sent as soon
# as the answer is read) or close (Connection: close: a new TLS connection
# per request); EVENT none, renew (CERTS_RENEWALS x cert renew --wait) or
# reload (as many SIGHUPs to the staging nginx, the pair unchanged: what a
# reload alone does); renew-var: renew, against the staging-var nginx
# (reload=off). What the events did goes to OUT.events.
wrk_run() {
    local out=$1 conn=$2 event=$3 wpid gap hdr=() port=$https_port
    [ "$conn" = close ] && hdr=(-H 'Connection: close')
    [ "$event" = renew-var ] && port=$https_var_port
    echo "before $(served_serial "$port")" > "$out.events"
    wrk -t2 -c20 -d"${wrk_secs}s" "${hdr[@]}" \
        "https://127.0.0.1:$port/" > "$out" 2>&1 &
    wpid=$!
    if [ "$event" != none ]; then
        gap=$(perl -e 'printf "%.2f", $ARGV[0] / ($ARGV[1] + 1) / 2' \
                   "$wrk_secs" "$renewals")
        for _ in $(seq 1 "$renewals"); do
            sleep "$gap"
            if [ "$event" = reload ]; then
                kill -HUP "$staging_pid"
                sleep 0.3
                echo "ok $(served_serial "$port")" >> "$out.events"
            elif ctl cert renew "$name" --wait 60 >> "$out.events" 2>&1
            then
                echo "ok $(served_serial "$port")" >> "$out.events"
            else
                echo "FAILED" >> "$out.events"
            fi
            sleep "$gap"
        done
    fi
    wait "$wpid" || fail "wrk failed: $(cat "$out")"
    kill -0 "$staging_pid" 2>/dev/null || fail "the staging nginx died"
    kill -0 "$staging_var_pid" 2>/dev/null \
        || fail "the staging-var nginx died"
}

# wrk_row OUT LABEL: a row of the table, added to wrk_rows; sets row_ok=1
# when wrk saw no Non-2xx and no socket error, row_events (the events that
# ended well) and row_serials (new serials served after them)
wrk_row() {
    local req rps non sock before
    IFS='|' read -r req rps non sock < <(perl -ne '
        $req = $1 if /^\s*(\d+) requests in/;
        $rps = $1 if /^Requests\/sec:\s*([\d.]+)/;
        $non = $1 if /Non-2xx or 3xx responses:\s*(\d+)/;
        $sock = $1 if /Socket errors:\s*(.*)/;
        END { print join("|", $req // "?", $rps // "?", $non // 0,
                         $sock // "none"), "\n" }' "$1")
    before=$(awk '$1 == "before" { print $2 }' "$1.events")
    row_events=$(grep -c '^ok ' "$1.events" || true)
    row_serials=$(grep '^ok ' "$1.events" | awk '{ print $2 }' | sort -u \
                  | grep -c -v -x "$before" || true)
    row_ok=0
    if [ "$non" = 0 ] && [ "$sock" = none ]; then
        row_ok=1
    fi
    wrk_rows+="| $2 | $req | $rps | $non | $sock | $row_events"
    wrk_rows+=" | $row_serials |"$'\n'
}

say "2. wrk -t2 -c20 -d${wrk_secs}s https://127.0.0.1:$https_port/:" \
    "keep-alive and Connection: close, with and without renewals"
wrk_rows=""
for run in "keepalive none" "keepalive renew" "keepalive reload" \
           "keepalive renew-var" "close none" "close renew"; do
    read -r conn event <<< "$run"
    say "wrk: $conn, $event"
    wrk_run "$dir/wrk-$conn-$event.txt" "$conn" "$event"
    case $conn in
        keepalive) label="keep-alive" ;;
        close)     label="Connection: close" ;;
    esac
    case $event in
        none)   label+=", nothing else" ;;
        renew)  label+=", $renewals x \`cert renew --wait\`" ;;
        reload) label+=", $renewals x SIGHUP to nginx (the pair unchanged)" ;;
        renew-var)
            label+=", $renewals x \`cert renew --wait\`, vhost with"
            label+=" \`ssl_certificate \$var\` (\`reload=off\`)" ;;
    esac
    wrk_row "$dir/wrk-$conn-$event.txt" "$label"
    case $run in
        "keepalive renew")
            keepalive_ok=$row_ok ;;
        "keepalive renew-var")
            keepalive_var_ok=0
            if [ "$row_ok" = 1 ] && [ "$row_events" = "$renewals" ] \
               && [ "$row_serials" = "$renewals" ]; then
                keepalive_var_ok=1
            fi ;;
        "close renew")
            close_ok=0
            if [ "$row_ok" = 1 ] && [ "$row_events" = "$renewals" ] \
               && [ "$row_serials" = "$renewals" ]; then
                close_ok=1
            fi ;;
    esac
done

# ---------------------------------- 3. kill propagation, orders in flight
say "3. kill propagation: $kills rounds in $blocks blocks, idle and renewing"
cc -O2 -Wall -Wextra -o "$dir/propagation-probe" \
    "$top/bench/propagation-probe.c"

edge_args=()
for e in 1 2 3; do
    edge_args+=(--edge "${ports[$((e - 1))]}:${edge_pids[e]}")
done

# the background loop: cert renew --wait, again and again, until told
renew_loop() {
    while [ ! -e "$dir/loop.stop" ]; do
        ctl cert renew "$name" --wait 60 > /dev/null 2>&1 \
            || echo "renewal failed" >> "$dir/loop.err"
    done
}

: > "$dir/rounds.txt"
: > "$dir/loop.err"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
for b in $(seq 1 "$blocks"); do
    if [ $((b % 2)) = 0 ]; then
        mode=renewing
        rm -f "$dir/loop.stop"
        renew_loop &
        loop_pid=$!
        sleep 0.5
    else
        mode=idle
    fi
    say "block $b/$blocks: $((kills / blocks)) kills, $mode"
    "$dir/propagation-probe" --workers "$workers" "${edge_args[@]}" \
        --company 42 --pause 20:60 --mode kill --rounds $((kills / blocks)) \
        --path /portal/ \
        --on "$ctl_bin --actor bench on customer_portal" \
        --off "$ctl_bin --actor bench kill customer_portal" \
        2>> "$dir/probe.err" | sed "s/^round kill /round $mode /" \
        >> "$dir/rounds.txt" || fail "the kill probe failed"
    if [ -n "$loop_pid" ]; then
        touch "$dir/loop.stop"
        wait "$loop_pid"
        loop_pid=""
    fi
done
t_rounds=$(($(date +%s) - t_start))
load1=$(cut -d' ' -f1-3 /proc/loadavg)
loop_failed=$(wc -l < "$dir/loop.err")

# Per mode: t0 -> t1 (the probe), and the daemon's view of the round from
# its log (ms resolution), as bench/propagation.sh reads it: t0 -> the new
# revision read, t0 -> the last edge's PUT answered, the slowest PUT, the
# last PUT -> t1. And the rounds whose t0 fell inside an order ("... starts"
# -> "issued"/"failed"); and per step of the renewal at t0 (its last log
# line before t0, less than 1 s before), the rounds, those over 10 ms and
# the slowest.
perl -MTime::Local=timelocal -e '
    use strict;
    my ($log, $rounds, $name) = @ARGV;
    my (@orders, $open, @steps, @read, @applied);
    open my $l, "<", $log or die "$log: $!";
    while (<$l>) {
        next unless m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+)\.(\d+) };
        my $ms = timelocal($6, $5, $4, $3, $2 - 1, $1) * 1000 + $7;
        push @read, [$ms, $1] if /revision (\d+) read(?: from its change messages)?:/;
        push @applied, [$ms, $1, $2] if /revision (\d+) applied in ([\d.]+) ms/;
        next unless /certificate \Q$name\E: (.*)$/;
        my $what = $1;
        if ($what =~ / starts$/) {
            $open = $ms;
            push @steps, [$ms, "1 ACME: account, new order"];
        } elsif ($what =~ /^acme: order /) {
            push @steps, [$ms, "2 ACME: challenge to the edges, validation"];
        } elsif ($what =~ /^acme: \S+ authorized/) {
            push @steps, [$ms, "3 ACME: finalize, download"];
        } elsif ($what =~ /^acme: certificate issued/) {
            push @steps, [$ms, "4 install: pair check, files, nginx -t, SIGHUP"];
        } elsif ($what =~ /^(issued|failed)/) {
            push @steps, [$ms, "5 issued: the staging nginx reloads"];
            push @orders, [$open, $ms] if defined $open;
            undef $open;
        }
    }
    my (%v, %n, %step);
    open my $r, "<", $rounds or die;
    while (<$r>) {
        my @f = split;
        next unless $f[0] eq "round";
        my ($m, $start, $t0, $t1, $prop) =
            ($f[1], $f[3] / 1000, $f[4] / 1000, $f[5] / 1000, $f[7]);
        push @{ $v{$m}{prop} }, $prop;
        $n{$m}{inside}++
            if grep { $t0 >= $_->[0] && $t0 <= $_->[1] } @orders;
        $n{$m}{over}++ if $prop > 10;
        my ($step) = grep { $_->[0] <= $t0 } reverse @steps;
        my $tag = "0 no renewal";
        $tag = $step->[1] if $step && $t0 - $step->[0] < 1000;
        $step{$m}{$tag}{n}++;
        $step{$m}{$tag}{over}++ if $prop > 10;
        $step{$m}{$tag}{max} = $prop if $prop > ($step{$m}{$tag}{max} // 0);
        my ($rd) = grep { $_->[0] >= int($start) } @read;
        next unless $rd;
        my @ap = grep { $_->[1] == $rd->[1] } @applied;
        next unless @ap;
        my ($last, $put) = (0, 0);
        for (@ap) {
            $last = $_->[0] if $_->[0] > $last;
            $put = $_->[2] if $_->[2] > $put;
        }
        my $late = $rd->[0] - $t0;
        $step{$m}{$tag}{read} = $late
            if $late > ($step{$m}{$tag}{read} // -1e9);
        $step{$m}{$tag}{put} = $put if $put > ($step{$m}{$tag}{put} // 0);
        push @{ $v{$m}{read} }, $rd->[0] - $t0;
        push @{ $v{$m}{applied} }, $last - $t0;
        push @{ $v{$m}{put} }, $put;
        push @{ $v{$m}{after} }, $t1 - $last;
    }
    sub pct {
        my ($p, @x) = @_;
        @x = sort { $a <=> $b } @x;
        my $i = int($p / 100 * @x + 0.999999) - 1;
        return $x[$i < 0 ? 0 : $i];
    }
    for my $m (qw(idle renewing)) {
        for my $k (qw(prop read applied put after)) {
            my @x = @{ $v{$m}{$k} || [0] };
            printf "%s %s %d %.1f / %.1f / %.1f\n", $m, $k, scalar @x,
                pct(50, @x), pct(99, @x), pct(100, @x);
        }
        printf "%s n_%s %d\n", $m, $_, $n{$m}{$_} // 0 for qw(inside over);
        for my $t (sort keys %{ $step{$m} || {} }) {
            my $s = $step{$m}{$t};
            (my $label = $t) =~ s/^\d //;
            printf "%s step | %s | %d | %d | %.1f | %.1f | %.1f |\n", $m,
                $label, $s->{n}, $s->{over} // 0, $s->{max}, $s->{read} // 0,
                $s->{put} // 0;
        }
    }
    printf "orders %d\n", scalar @orders;
' "$dir/gated.log" "$dir/rounds.txt" "$name" > "$dir/stats.txt"
# figure MODE KEY: "p50 / p99 / max" (or the count, the list)
figure() {
    awk -v m="$1" -v k="$2" '$1 == m && $2 == k {
        $1 = ""; $2 = ""; if (k ~ /^(prop|read|applied|put|after)$/) $3 = "";
        sub(/^ +/, ""); print; f = 1 } END { if (!f) print "-" }' \
        "$dir/stats.txt"
}
orders=$(awk '$1 == "orders" { print $2 }' "$dir/stats.txt")
ren_p99=$(awk '$1 == "renewing" && $2 == "prop" { print $6 }' \
          "$dir/stats.txt")

bad_lines=$(cat "$dir"/e*/error.log "$dir/staging/error.log" \
                "$dir/staging-var/error.log" \
                "$dir/gated.log" \
            | grep -c -E '\[(alert|crit|emerg)\]' || true)

# ------------------------------------------------------------------ report
verdict() { perl -e 'print $ARGV[0] ? "met" : "MISSED"' "$1"; }
first_ok=$(perl -e 'print $ARGV[0] <= $ARGV[1] ? 1 : 0' "$pg_med" "$cb_med")
kill_ok=$(perl -e 'print $ARGV[0] <= 10 ? 1 : 0' "$ren_p99")

cat <<EOF

## Staging certificates against pebble ($(date -u '+%Y-%m-%d %H:%M UTC'))

$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); niceness $(nice)${CERTS_TEST_NICE:+, nginx -t at $CERTS_TEST_NICE}; nginx $($nginx -v 2>&1 | cut -d/ -f2); pebble $(dpkg-query -W -f='${Version}' pebble 2>/dev/null || echo '?') (PEBBLE_VA_NOSLEEP=1, PEBBLE_AUTHZREUSE=0, 5% bad nonces); certbot $(certbot --version 2>&1 | awk '{ print $2 }'); git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown). No CPU pinning.

**1. First issuance, side by side, $runs runs each (interleaved), medians:**

| client, from nothing (new account, key and name) | median | runs (s) |
| --- | --- | --- |
| certbot certonly --standalone: start -> exit | **$(secs "$cb_med") s** | $(list_secs "${cb_ms[@]}") |
| portal-gated: start -> "issued ... installed and nginx reloaded" | **$(secs "$pg_med") s** | $(list_secs "${pg_ms[@]}") |
| portal-gated, the issuance alone ("starts" -> "issued") | $(secs "$pg_acme_med") s | $(list_secs "${pg_acme_ms[@]}") |
| portal-gated renewal (account kept): "renewal asked" -> "issued" | $(secs "$rn_med") s | $(list_secs "${rn_ms[@]}") |
| the same, \`cert renew NAME --wait\` wall time (polls every 0.2 s) | $(secs "$rn_cli_med") s | $(list_secs "${rn_cli_ms[@]}") |

Target "portal-gated no slower than certbot": **$(verdict "$first_ok")** (certbot / portal-gated: $(perl -e 'printf "%.1f", $ARGV[0] / $ARGV[1]' "$cb_med" "$pg_med") x).

**2. HTTPS while the certificate rotates** (\`wrk -t2 -c20 -d${wrk_secs}s https://127.0.0.1:PORT/\` against the staging vhost, 2 workers; one run after the other):

| run | requests | req/s | Non-2xx | socket errors | events ok | new serials served |
| --- | ---: | ---: | ---: | --- | ---: | ---: |
${wrk_rows}
Target "0 failed HTTPS requests while a certificate rotates": **$(verdict "$close_ok")** with a new connection per request; with keep-alive: **$(verdict "$keepalive_ok")** (see the SIGHUP row: the read errors, if any, are nginx's graceful reload closing keep-alive connections, whatever the pair); with keep-alive and \`reload=off\` (no reload at all): **$(verdict "$keepalive_var_ok")**.

**3. Kill propagation to 3 edges (t0 -> t1, as bench/propagation.sh), orders in flight**, $kills rounds in $blocks alternating blocks, ${t_rounds} s, $orders orders in all; loadavg before/after: $load0 / $load1:

| ms, p50 / p99 / max | idle blocks | \`cert renew --wait\` in a loop |
| --- | --- | --- |
| **t0 -> t1: kill command returned -> every worker answers off** | $(figure idle prop) | **$(figure renewing prop)** |
| t0 -> the daemon has read the new revision (its log) | $(figure idle read) | $(figure renewing read) |
| t0 -> the last edge's PUT answered | $(figure idle applied) | $(figure renewing applied) |
| the slowest edge's PUT, as the daemon timed it | $(figure idle put) | $(figure renewing put) |
| the last PUT answered -> t1 | $(figure idle after) | $(figure renewing after) |
| rounds over 10 ms | $(figure idle n_over) | $(figure renewing n_over) |
| rounds with an order in flight at t0 | $(figure idle n_inside) | $(figure renewing n_inside) |

The renewing blocks' rounds by what the renewal was doing at t0 (its last log line, less than 1 s before):

| step | rounds | over 10 ms | slowest t0 -> t1, ms | latest read by the daemon, ms after t0 | slowest PUT, ms |
| --- | ---: | ---: | ---: | ---: | ---: |
$(awk '$1 == "renewing" && $2 == "step" { $1 = ""; $2 = ""; sub(/^ +/, ""); print }' "$dir/stats.txt")

Target "kill p99 <= 10 ms while an order is in flight": **$(verdict "$kill_ok")**; renewals that failed in the loop: $loop_failed. [alert]/[crit]/[emerg] lines in the logs: $bad_lines. Percentiles are nearest-rank.
EOF
