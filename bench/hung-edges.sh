#!/bin/bash
# bench/hung-edges.sh: how fast a kill switch reaches the healthy edges
# when portal-gated also has edges that hang and Redis holds a broken value
# (issue 7, item 2; the target is under 250 ms).
#
# Setup, all on loopback under a mktemp scratch folder: one redis-server
# whose store holds 30 flags and one broken value (`HSET
# P:flags:production x "{broken"`, a value that was never valid, so the
# daemon has no good version of it); 3 listeners that accept TCP and never
# answer (a hung nginx); 3 healthy nginx edges (2 workers each, `listen
# ... reuseport`, API on a unix socket, state file on disk); and
# portal-gated with the 3 hung edges listed first, then the healthy ones
# (reconcile_interval 2s, log_level info).
#
# The rounds are bench/propagation-probe.c's kill rounds, as in
# bench/propagation.sh (its header says what start, t0 and t1 are): `on`,
# wait until every worker of the healthy edges answers 200, a random pause
# of 20-60 ms, then `portal-gatectl kill customer_portal`, timed until
# every worker answers 404.
#
#   HUNG_KILLS=50      kill rounds
#   HUNG_GATED=PATH    the portal-gated binary to measure (default: the
#                      optimised build/portal-gated); e.g. one built from an
#                      older commit, to compare
#   HUNG_KEEP=1        keep the scratch folder
#
# Prints a results block for bench/RESULTS.md at the end. Everything it
# starts is stopped on exit.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
gated_bin="${HUNG_GATED:-$top/build/portal-gated}"
ctl_bin="$top/build/portal-gatectl"
nginx=/usr/sbin/nginx

kills=${HUNG_KILLS:-50}
nflags=30
workers=2
target_ms=250

for tool in "$nginx" redis-server redis-cli cc curl perl; do
    if ! command -v "$tool" > /dev/null; then
        echo "hung-edges: $tool is missing: run make bench" >&2
        exit 1
    fi
done
for f in "$module" "$gated_bin" "$ctl_bin"; do
    if [ ! -f "$f" ]; then
        echo "hung-edges: $f is missing: run make module ctl gated" >&2
        exit 1
    fi
done

dir=$(mktemp -d /tmp/portal-gate-hung.XXXXXX)
chmod 755 "$dir"

# private copies: the figures belong to the binaries there at the start
cp "$module" "$dir/ngx_http_portal_gate_module.so"
cp "$gated_bin" "$dir/portal-gated"
cp "$ctl_bin" "$dir/portal-gatectl"
module="$dir/ngx_http_portal_gate_module.so"
gated_bin="$dir/portal-gated"
ctl_bin="$dir/portal-gatectl"

redis_pid=""
gated_pid=""
hung_pid=""
nginx_pids=()

stop() {
    local pid
    if [ -n "$gated_pid" ] && kill -0 "$gated_pid" 2>/dev/null; then
        kill -TERM "$gated_pid"
        wait "$gated_pid" 2>/dev/null || true
    fi
    for pid in "${nginx_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -QUIT "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ -n "$hung_pid" ] && kill -0 "$hung_pid" 2>/dev/null; then
        kill -TERM "$hung_pid"
        wait "$hung_pid" 2>/dev/null || true
    fi
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill -TERM "$redis_pid"
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "${HUNG_KEEP:-}" ]; then
        echo "hung-edges: kept $dir (HUNG_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { echo "== $*" >&2; }

fail() {
    echo "hung-edges: $*" >&2
    for f in "$dir"/probe.err "$dir"/gated.log "$dir"/edge*/error.log; do
        [ -f "$f" ] || continue
        echo "--- $f" >&2
        tail -15 "$f" >&2 || true
    done
    exit 1
}

say "building the probe"
cc -O2 -Wall -Wextra -o "$dir/propagation-probe" \
    "$top/bench/propagation-probe.c"

# ------------------------------------------------------------ free ports
read -r redis_port port1 port2 port3 < <(perl -MIO::Socket::INET -e '
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 1, ReuseAddr => 1)
            or die "hung-edges: no free port: $!\n"
    } 1 .. 4;
    print join(" ", map { $_->sockport } @s), "\n"')
ports=("$port1" "$port2" "$port3")

# ------------------------------------------------------------ hung edges
# three listeners that accept and hold every connection, and never answer;
# they print their ports, then serve until killed
perl -MIO::Socket::INET -MIO::Select -e '
    $| = 1;
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 128, ReuseAddr => 1) or die "$!\n"
    } 1 .. 3;
    print join(" ", map { $_->sockport } @s), "\n";
    my $sel = IO::Select->new(@s);
    my @held;
    while (1) {
        for my $l ($sel->can_read) { my $c = $l->accept; push @held, $c if $c }
    }' > "$dir/hung.ports" &
hung_pid=$!
for _ in $(seq 100); do
    [ -s "$dir/hung.ports" ] && break
    sleep 0.02
done
read -r hung1 hung2 hung3 < "$dir/hung.ports" \
    || fail "the hung listeners did not start"

# ------------------------------------------------------------------ redis
say "redis-server on 127.0.0.1:$redis_port"
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
    --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
redis_pid=$!

export PORTAL_GATE_REDIS="redis://127.0.0.1:$redis_port/0"
export PORTAL_GATE_PREFIX="bench:"
export PORTAL_GATE_ENV=production

for _ in $(seq 100); do
    if "$ctl_bin" --actor bench init > /dev/null 2>&1; then
        break
    fi
    kill -0 "$redis_pid" 2>/dev/null || fail "redis-server did not start"
    sleep 0.05
done
"$ctl_bin" list > /dev/null || fail "the store was not initialised"

say "seeding $nflags flags and one broken value"
ctl() { "$ctl_bin" --actor bench "$@" > /dev/null; }
ctl create customer_portal
ctl rollout customer_portal 100
for i in $(seq 2 "$nflags"); do
    f=$(printf 'flag_%02d' "$i")
    ctl create "$f"
    ctl rollout "$f" $((i * 3 % 100))
done
redis-cli -p "$redis_port" HSET "${PORTAL_GATE_PREFIX}flags:production" \
    x '{broken' > /dev/null

# ------------------------------------------------------------------- edges
for e in 1 2 3; do
    ed="$dir/edge$e"
    mkdir -p "$ed/state" "$ed/tmp"
    if [ "$(id -u)" = 0 ]; then
        chown nobody:nogroup "$ed/state" "$ed/tmp"
    fi
    cat > "$ed/nginx.conf" <<EOF
load_module $module;

daemon off;
master_process on;
worker_processes $workers;
pid $ed/nginx.pid;
error_log $ed/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $ed/tmp/body;
    proxy_temp_path $ed/tmp/proxy;
    fastcgi_temp_path $ed/tmp/fastcgi;
    uwsgi_temp_path $ed/tmp/uwsgi;
    scgi_temp_path $ed/tmp/scgi;
    default_type text/plain;
    keepalive_timeout 600s;
    keepalive_requests 100000000;

    portal_gate_zone zone=portal_gate:4m state=$ed/state/state.json;
    portal_gate_company \$http_x_company_id;

    server {
        listen 127.0.0.1:${ports[$((e - 1))]} reuseport;

        location /portal/ {
            portal_gate customer_portal;
            add_header X-Pid \$pid always;
            return 200 "on\n";
        }
    }

    server {
        listen unix:$ed/api.sock;
        location /portal-gate/ {
            portal_gate_api;
        }
    }
}
EOF
    "$nginx" -p "$ed/" -c "$ed/nginx.conf" 2>> "$ed/stderr.log" &
    nginx_pids+=($!)
done

for e in 1 2 3; do
    for _ in $(seq 100); do
        if curl -s -o /dev/null --unix-socket "$dir/edge$e/api.sock" \
                http://edge/portal-gate/status; then
            break
        fi
        kill -0 "${nginx_pids[$((e - 1))]}" 2>/dev/null \
            || fail "nginx edge$e did not start"
        sleep 0.05
    done
done

# -------------------------------------------------------------- portal-gated
{
    echo "redis              $PORTAL_GATE_REDIS;"
    echo "prefix             $PORTAL_GATE_PREFIX;"
    echo "environments       production;"
    for p in "$hung1" "$hung2" "$hung3"; do
        echo "edge               http://127.0.0.1:$p/portal-gate/;"
    done
    for e in 1 2 3; do
        echo "edge               unix:$dir/edge$e/api.sock:/portal-gate/;"
    done
    echo "reconcile_interval 2s;"
    echo "log_level          info;"
} > "$dir/gated.conf"

say "portal-gated with 3 hung edges and 3 healthy ones"
"$gated_bin" -c "$dir/gated.conf" 2> "$dir/gated.log" &
gated_pid=$!

edge_rev() {
    curl -s --unix-socket "$dir/edge$1/api.sock" \
        http://edge/portal-gate/status | perl -MJSON::PP -0 -ne '
        my $j = eval { JSON::PP->new->decode($_) } or exit;
        print $j->{revision} // "", "\n"'
}
want=$(redis-cli -p "$redis_port" --raw GET "${PORTAL_GATE_PREFIX}revision")
ok=0
for _ in $(seq 300); do
    ok=1
    for e in 1 2 3; do
        r=$(edge_rev "$e")
        if [ -z "$r" ] || [ "$r" -lt "$want" ]; then
            ok=0
        fi
    done
    [ "$ok" = 1 ] && break
    kill -0 "$gated_pid" 2>/dev/null || fail "portal-gated exited"
    sleep 0.05
done
[ "$ok" = 1 ] || fail "the healthy edges did not reach revision $want"

# ------------------------------------------------------------------ rounds
edge_args=()
for e in 1 2 3; do
    edge_args+=(--edge "${ports[$((e - 1))]}:${nginx_pids[$((e - 1))]}")
done

say "$kills kill rounds"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
"$dir/propagation-probe" --mode kill --rounds "$kills" --workers "$workers" \
    "${edge_args[@]}" --company 42 --pause 20:60 --timeout 30 \
    --path /portal/ \
    --on "$ctl_bin --actor bench on customer_portal" \
    --off "$ctl_bin --actor bench kill customer_portal" \
    > "$dir/rounds.txt" 2>> "$dir/probe.err" || fail "the probe failed"
t_rounds=$(( $(date +%s) - t_start ))
load1=$(cut -d' ' -f1-3 /proc/loadavg)

hung_said=$(grep -c -E "127\.0\.0\.1:($hung1|$hung2|$hung3)/" \
            "$dir/gated.log" || true)
broken_said=$(grep -c 'flag "x" in production' "$dir/gated.log" || true)

# ------------------------------------------------------------- the figures
# nearest rank: the smallest value with at least p% of them at or below
stats() {   # COLUMN (1-based, of the round lines)
    awk -v c="$1" '$1 == "round" { print $c }' "$dir/rounds.txt" \
        | perl -e '
            my @x = sort { $a <=> $b } map { chomp; $_ } <STDIN>;
            sub pct { my $i = int($_[0] / 100 * @x + 0.999999) - 1;
                      $x[$i < 0 ? 0 : $i] }
            printf "%.1f / %.1f / %.1f", pct(50), pct(99), pct(100)'
}
p99=$(awk '$1 == "round" { print $8 }' "$dir/rounds.txt" \
      | perl -e 'my @x = sort { $a <=> $b } <STDIN>;
                 my $i = int(0.99 * @x + 0.999999) - 1;
                 printf "%.1f", $x[$i < 0 ? 0 : $i]')
over=$(awk -v t="$target_ms" '$1 == "round" && $8 >= t' "$dir/rounds.txt" \
       | wc -l)
n=$(grep -c '^round' "$dir/rounds.txt")
flaps=$(awk '$1 == "round" { s += $15 } END { print s + 0 }' "$dir/rounds.txt")
if perl -e 'exit !($ARGV[0] < $ARGV[1])' "$p99" "$target_ms"; then
    verdict="met"
else
    verdict="MISSED"
fi

cat <<EOF

## Kill switch with 3 hung edges and a broken value ($(date -u '+%Y-%m-%d %H:%M UTC'))

$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); nginx $($nginx -v 2>&1 | cut -d/ -f2); redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'); git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown); portal-gated: ${HUNG_GATED:-build/portal-gated}.
3 hung edges (listed first) + 3 healthy edges x $workers workers, $nflags flags and \`x = "{broken"\` in the store; $n kill rounds in ${t_rounds} s; loadavg before/after: $load0 / $load1.

| ms, p50 / p99 / max | kill (portal-gated) |
| --- | --- |
| t0 -> t1: kill returned -> every worker of the healthy edges answers off | **$(stats 8)** |
| start -> t1: kill started -> every worker answers off | $(stats 9) |
| the command itself (start -> t0) | $(stats 7) |

p99 target t0 -> t1 < $target_ms ms: **$verdict** ($p99 ms); rounds at or over $target_ms ms: $over of $n; a worker answered on again after off: $flaps. Log lines naming a hung edge: $hung_said; naming the broken value: $broken_said.
EOF
