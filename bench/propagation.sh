#!/bin/bash
# bench/propagation.sh: how fast a kill switch reaches every nginx worker
# of 3 edges, next to the reload-based approach it replaces; and what
# portal-gated costs at idle. With PROP_ALLOW or PROP_BUILDS (below): what a
# kill costs against the size of another flag's allow list, for one build
# or for several side by side (issue 14).
#
# Setup, all on loopback under a mktemp scratch folder: one redis-server,
# 3 nginx edges (separate nginx processes, 2 workers each, `listen ...
# reuseport` so that each keep-alive connection stays with one worker) and
# the optimised build/portal-gated with the 3 edges (API on a unix socket
# each, reconcile_interval 2s, log_level info). Every gated answer carries
# `X-Pid: $pid`, so the probe knows which worker answered and proves that it
# covers every one of them.
#
#   kill:   location /portal/ { portal_gate customer_portal; return 200; }
#           a round: `portal-gatectl on customer_portal`, wait until every
#           worker answers 200; pause; `portal-gatectl kill customer_portal`.
#   reload: map $http_x_company_id $portal_on { include DIR/portal.map; }
#           location /mapped/ { if ($portal_on = 0) { return 404; } ... }
#           a round: write the map include ("default 1;", atomic rename),
#           `nginx -s reload` each edge in turn, wait until every worker
#           answers 200 and the old workers are gone; pause; the same with
#           "default 0;".
#
# bench/propagation-probe.c does the rounds and the timing (its header says
# exactly what t0 and t1 are). Kill and reload rounds run in interleaved
# blocks, so that both see the same machine.
#
#   PROP_KILLS=200     kill rounds (with PROP_ALLOW: per size and build)
#   PROP_RELOADS=100   reload rounds
#   PROP_BLOCKS=10     blocks of kill rounds and reload rounds, interleaved
#   PROP_FLAGS=30      flags in the store
#   PROP_IDLE=20       seconds of idle for the daemon's RSS and CPU
#   PROP_STATE=disk    where the edges' state file lives: disk (the scratch
#                      folder, as in production), tmpfs (/dev/shm: fsync
#                      costs nothing) or none (no state=): to see what the
#                      state file's fsync adds to a PUT
#   PROP_KEEP=1        keep the scratch folder
#
# Issue 14's table, the kill against the size of another flag's allow list:
#
#   PROP_ALLOW="0 10000 100000"
#                      for each size in turn: the flag bulk_allow (not the
#                      killed one) is made to allow exactly that many
#                      companies (ids 1000000...), through portal-gatectl
#                      allow/unallow in batches; every edge must hold it
#                      before that size's PROP_KILLS kill rounds start. One
#                      table row per size and build. No reload rounds, no
#                      idle figures in this mode.
#   PROP_BUILDS="A:DIR B:DIR"
#                      the builds to compare: each DIR holds portal-gated,
#                      portal-gatectl and ngx_http_portal_gate_module.so
#                      (a build/ folder). The CLI belongs to the build: it
#                      writes the change message the daemon reads. Each
#                      build gets its own redis-server, 3 edges and
#                      portal-gated, all running at once; the kill rounds
#                      alternate between builds block by block (A B, B A,
#                      ...), so that both see the same machine, and the
#                      ratios to the first build are printed. Without it:
#                      one build, build/. PROP_BUILDS alone means
#                      PROP_ALLOW=0.
#   PROP_BATCH=10000   companies per portal-gatectl allow/unallow command
#                      while seeding
#   PROP_ZONE          the edges' zone size (portal_gate_zone): 4m, and
#                      16m with PROP_ALLOW or PROP_BUILDS (today a 100,000-
#                      company snapshot takes 2.2 MB of 4m; 16m leaves room
#                      for a zone layout that needs more)
#
# Prints a results block for bench/RESULTS.md at the end. Everything it
# starts is stopped on exit. Run it under `nice -n 19` on a shared machine.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
nginx=/usr/sbin/nginx

kills=${PROP_KILLS:-200}
reloads=${PROP_RELOADS:-100}
blocks=${PROP_BLOCKS:-10}
nflags=${PROP_FLAGS:-30}
idle=${PROP_IDLE:-20}
state=${PROP_STATE:-disk}
batch=${PROP_BATCH:-10000}
nedges=3
workers=2

# sync: issue 14's mode (PROP_ALLOW or PROP_BUILDS given)
sync=0
sizes=""
if [ -n "${PROP_ALLOW:-}" ] || [ -n "${PROP_BUILDS:-}" ]; then
    sync=1
    sizes=${PROP_ALLOW:-0}
    zone=${PROP_ZONE:-16m}
else
    zone=${PROP_ZONE:-4m}
fi

# the builds: labels and folders, index k = 0, 1, ...
blabel=()
bdir=()
if [ -n "${PROP_BUILDS:-}" ]; then
    for b in $PROP_BUILDS; do
        if [[ $b != *:* ]] || [ -z "${b%%:*}" ] || [ -z "${b#*:}" ]; then
            echo "propagation: PROP_BUILDS takes LABEL:DIR ..., not \"$b\"" >&2
            exit 1
        fi
        blabel+=("${b%%:*}")
        bdir+=("${b#*:}")
    done
else
    blabel=(build)
    bdir=("$top/build")
fi
nb=${#blabel[@]}

for tool in "$nginx" redis-server redis-cli cc curl perl; do
    if ! command -v "$tool" > /dev/null; then
        echo "propagation: $tool is missing: run make bench" >&2
        exit 1
    fi
done
for k in $(seq 0 $((nb - 1))); do
    for f in ngx_http_portal_gate_module.so portal-gated portal-gatectl; do
        if [ ! -f "${bdir[$k]}/$f" ]; then
            echo "propagation: ${bdir[$k]}/$f is missing: run make module" \
                 "ctl gated" >&2
            exit 1
        fi
    done
done
case $state in
    disk|none) ;;
    tmpfs) [ -d /dev/shm ] || { echo "propagation: no /dev/shm" >&2; exit 1; } ;;
    *) echo "propagation: PROP_STATE is disk, tmpfs or none" >&2; exit 1 ;;
esac
if [ $((kills % blocks)) != 0 ] || [ $((reloads % blocks)) != 0 ]; then
    echo "propagation: PROP_KILLS and PROP_RELOADS must be multiples of" \
         "PROP_BLOCKS" >&2
    exit 1
fi
for n in $sizes; do
    # PG_LIST_MAX (include/portal_gate.h): at most 100,000 in one list
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -gt 100000 ]; then
        echo "propagation: PROP_ALLOW takes sizes from 0 to 100000, not" \
             "\"$n\"" >&2
        exit 1
    fi
done
if ! [[ $batch =~ ^[0-9]+$ ]] || [ "$batch" -lt 1 ]; then
    echo "propagation: PROP_BATCH is a positive number" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/portal-gate-prop.XXXXXX)
chmod 755 "$dir"

# per build k: its folder s$k, private copies of its binaries (the figures
# belong to the binaries there at the start)
sdir=()
module=()
gated_bin=()
ctl_bin=()
for k in $(seq 0 $((nb - 1))); do
    sdir[k]="$dir/s$k"
    mkdir -p "${sdir[$k]}/bin"
    for f in ngx_http_portal_gate_module.so portal-gated portal-gatectl; do
        cp "${bdir[$k]}/$f" "${sdir[$k]}/bin/"
    done
    module[k]="${sdir[$k]}/bin/ngx_http_portal_gate_module.so"
    gated_bin[k]="${sdir[$k]}/bin/portal-gated"
    ctl_bin[k]="${sdir[$k]}/bin/portal-gatectl"
done

shm=""
if [ "$state" = tmpfs ]; then
    shm=$(mktemp -d /dev/shm/portal-gate-prop.XXXXXX)
    chmod 755 "$shm"
fi

# per build k: redis_pid[k], gated_pid[k]; edge e (1..3) of build k is
# index k * 3 + e - 1 in nginx_pid and eport
redis_pid=()
gated_pid=()
nginx_pid=()
helper_pids=()

stop() {
    local pid
    for pid in "${helper_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${gated_pid[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${nginx_pid[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -QUIT "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    for pid in "${redis_pid[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            wait "$pid" 2>/dev/null || true
        fi
    done
    if [ -n "${PROP_KEEP:-}" ]; then
        echo "propagation: kept $dir (PROP_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
    if [ -n "$shm" ]; then
        rm -rf "$shm"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { echo "== $*" >&2; }

fail() {
    echo "propagation: $*" >&2
    for f in "$dir"/probe.err "$dir"/s*/gated.log "$dir"/s*/edge*/error.log
    do
        [ -f "$f" ] || continue
        echo "--- $f" >&2
        tail -15 "$f" >&2 || true
    done
    exit 1
}

# ------------------------------------------------------------------ probe
say "building the probe"
cc -O2 -Wall -Wextra -o "$dir/propagation-probe" \
    "$top/bench/propagation-probe.c"
# for the idle figure: what libcurl (and the daemon's other libraries) cost
# a process that does nothing else
cat > "$dir/rss-curl.c" <<'EOF'
#include <curl/curl.h>
#include <unistd.h>
int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl_multi_init();
    pause();
    return 0;
}
EOF
echo 'int main(void) { for (;;) { pause(); } }' \
    | sed '1i #include <unistd.h>' > "$dir/rss-plain.c"
cc -O2 -o "$dir/rss-curl" "$dir/rss-curl.c" -lcurl -lhiredis -ljansson -lm
cc -O2 -o "$dir/rss-plain" "$dir/rss-plain.c"

# ------------------------------------------------------------ free ports
# per build: redis, then edge 1, 2, 3
read -r -a ports < <(perl -MIO::Socket::INET -e '
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 1, ReuseAddr => 1)
            or die "propagation: no free port: $!\n"
    } 1 .. $ARGV[0];
    print join(" ", map { $_->sockport } @s), "\n"' $((4 * nb)))
rport=()
eport=()
for k in $(seq 0 $((nb - 1))); do
    rport[k]=${ports[$((4 * k))]}
    for e in 1 2 3; do
        eport[k * 3 + e - 1]=${ports[$((4 * k + e))]}
    done
done

export PORTAL_GATE_PREFIX="bench:"
export PORTAL_GATE_ENV=production

redis_url() { echo "redis://127.0.0.1:${rport[$1]}/0"; }

# ctl K ARGS...: build K's portal-gatectl against build K's Redis
ctl() {
    local k=$1
    shift
    PORTAL_GATE_REDIS=$(redis_url "$k") "${ctl_bin[$k]}" --actor bench "$@" \
        > /dev/null
}

# ------------------------------------------------------------ a build's stack
# redis-server, the store, 3 edges and portal-gated of build K
stack_up() {
    local k=$1 s=${sdir[$1]} e ed sd zone_state i f

    say "${blabel[$k]}: redis-server on 127.0.0.1:${rport[$k]}"
    redis-server --port "${rport[$k]}" --bind 127.0.0.1 --save '' \
        --appendonly no --dir "$s" --logfile "$s/redis.log" &
    redis_pid[k]=$!

    for _ in $(seq 100); do
        if ctl "$k" init 2> /dev/null; then
            break
        fi
        kill -0 "${redis_pid[$k]}" 2>/dev/null \
            || fail "redis-server did not start"
        sleep 0.05
    done
    ctl "$k" list || fail "the store was not initialised"

    # ------------------------------------------------------------ the store
    say "${blabel[$k]}: seeding $nflags flags"
    ctl "$k" create customer_portal
    ctl "$k" rollout customer_portal 100
    for i in $(seq 2 "$nflags"); do
        f=$(printf 'flag_%02d' "$i")
        ctl "$k" create "$f"
        ctl "$k" rollout "$f" $((i * 3 % 100))
        ctl "$k" allow "$f" $((1000 + i)) $((2000 + i)) $((3000 + i))
    done
    if [ "$sync" = 1 ]; then
        # the other flag, whose allow list grows (bulk_set)
        ctl "$k" create bulk_allow
        ctl "$k" rollout bulk_allow 10
    fi

    # --------------------------------------------------------------- edges
    echo "default 1;" > "$s/portal.map"

    for e in 1 2 3; do
        ed="$s/edge$e"
        case $state in
            disk)  sd="$ed/state"; zone_state=" state=$sd/state.json" ;;
            tmpfs) sd="$shm/s$k-edge$e"; zone_state=" state=$sd/state.json" ;;
            none)  sd="$ed/state"; zone_state="" ;;
        esac
        mkdir -p "$sd" "$ed/tmp"
        if [ "$(id -u)" = 0 ]; then
            chown nobody:nogroup "$sd" "$ed/tmp"
        fi
        cat > "$ed/nginx.conf" <<EOF
load_module ${module[$k]};

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
    # the probe's connections live for the whole run
    keepalive_timeout 600s;
    keepalive_requests 100000000;

    portal_gate_zone zone=portal_gate:$zone$zone_state;
    portal_gate_company \$http_x_company_id;

    # the reload-based approach: the switch is a map include
    map \$http_x_company_id \$portal_on {
        include $s/portal.map;
    }

    server {
        # reuseport: one listen socket per worker; a connection stays with
        # the worker that the kernel hashed it to
        listen 127.0.0.1:${eport[$((k * 3 + e - 1))]} reuseport;

        location /portal/ {
            portal_gate customer_portal;
            add_header X-Pid \$pid always;
            return 200 "on\n";
        }

        location /mapped/ {
            add_header X-Pid \$pid always;
            if (\$portal_on = 0) {
                return 404;
            }
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
        nginx_pid[k * 3 + e - 1]=$!
    done

    for e in 1 2 3; do
        for _ in $(seq 100); do
            if curl -s -o /dev/null --unix-socket "$s/edge$e/api.sock" \
                    http://edge/portal-gate/status; then
                break
            fi
            kill -0 "${nginx_pid[$((k * 3 + e - 1))]}" 2>/dev/null \
                || fail "nginx edge$e of ${blabel[$k]} did not start"
            sleep 0.05
        done
    done

    # -------------------------------------------------------- portal-gated
    {
        echo "redis              $(redis_url "$k");"
        echo "prefix             $PORTAL_GATE_PREFIX;"
        echo "environments       production;"
        for e in 1 2 3; do
            echo "edge               unix:$s/edge$e/api.sock:/portal-gate/;"
        done
        echo "reconcile_interval 2s;"
        echo "log_level          info;"
    } > "$s/gated.conf"

    say "${blabel[$k]}: portal-gated with $nedges edges"
    "${gated_bin[$k]}" -c "$s/gated.conf" 2> "$s/gated.log" &
    gated_pid[k]=$!
}

# edge_get K E PATH: GET http://edge/portal-gate/PATH on edge E of build K
edge_get() {
    curl -s --unix-socket "${sdir[$1]}/edge$2/api.sock" \
        "http://edge/portal-gate/$3"
}

# edge_field K E KEY [SUBKEY]: a field of the edge's GET status, "" if none
edge_field() {
    edge_get "$1" "$2" status | perl -MJSON::PP -0 -e '
        my $j = eval { JSON::PP->new->decode(scalar <STDIN>) } or exit;
        $j = $j->{$_} // {} for @ARGV[0 .. $#ARGV - 1];
        my $v = ref $j eq "HASH" ? $j->{$ARGV[-1]} : undef;
        print $v // "", "\n"' -- "${@:3}"
}

# synced K SECONDS: wait until every edge of build K is at the store's
# revision
synced() {
    local k=$1 want r e ok=0 end=$((SECONDS + $2))
    want=$(redis-cli -p "${rport[$k]}" --raw GET \
           "${PORTAL_GATE_PREFIX}revision" 2>/dev/null || true)
    while [ "$SECONDS" -le "$end" ]; do
        ok=1
        for e in 1 2 3; do
            r=$(edge_field "$k" "$e" revision)
            if [ -z "$r" ] || [ -z "$want" ] || [ "$r" -lt "$want" ]; then
                ok=0
            fi
        done
        [ "$ok" = 1 ] && return 0
        kill -0 "${gated_pid[$k]}" 2>/dev/null \
            || fail "portal-gated of ${blabel[$k]} exited"
        sleep 0.05
    done
    fail "the edges of ${blabel[$k]} did not reach revision $want in $2 s"
}

for k in $(seq 0 $((nb - 1))); do
    stack_up "$k"
done
for k in $(seq 0 $((nb - 1))); do
    synced "$k" 10
done

# probe K ARGS...: the probe on build K's edges, with build K's Redis for
# the commands it runs
probe() {
    local k=$1 e args=()
    shift
    for e in 1 2 3; do
        args+=(--edge "${eport[$((k * 3 + e - 1))]}:${nginx_pid[$((k * 3 + e - 1))]}")
    done
    PORTAL_GATE_REDIS=$(redis_url "$k") "$dir/propagation-probe" \
        --workers "$workers" "${args[@]}" --company 42 --pause 20:60 "$@" \
        2>> "$dir/probe.err"
}

# kill_probe K ROUNDS: that many kill rounds on build K
kill_probe() {
    probe "$1" --mode kill --rounds "$2" --path /portal/ \
        --on "${ctl_bin[$1]} --actor bench on customer_portal" \
        --off "${ctl_bin[$1]} --actor bench kill customer_portal"
}

# --------------------------------------------------------------- the figures
# daemon_view LOG ROUNDS: the daemon's own view of each kill round, from
# its log (ms resolution): when it had read the new revision, and when
# each edge's PUT answered.
daemon_view() {
    perl -MTime::Local=timelocal -e '
        my ($log, $rounds) = @ARGV;
        my (@read, @applied);
        open my $l, "<", $log or die "$log: $!";
        while (<$l>) {
            next unless m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+)\.(\d+) };
            my $ms = timelocal($6, $5, $4, $3, $2 - 1, $1) * 1000 + $7;
            # "read:" after a full read; "read from its change messages" after a
            # delta (issue 14)
            push @read, [$ms, $1] if /revision (\d+) read(:| from)/;
            push @applied, [$ms, $1, $2] if /revision (\d+) applied in ([\d.]+) ms/;
        }
        open my $r, "<", $rounds or die "$rounds: $!";
        while (<$r>) {
            my @f = split;
            next unless $f[1] eq "kill";
            my ($start, $t0, $t1) = map { $_ / 1000 } @f[3, 4, 5];
            # the first revision read at or after the kill started
            my ($rd) = grep { $_->[0] >= int($start) } @read;
            next unless $rd;
            my @ap = grep { $_->[1] == $rd->[1] } @applied;
            next unless @ap;
            my ($last, $put) = (0, 0);
            for (@ap) {
                $last = $_->[0] if $_->[0] > $last;
                $put = $_->[2] if $_->[2] > $put;
            }
            printf "%d %.3f %.3f %.3f %.3f\n", $f[2], $rd->[0] - $t0,
                   $last - $t0, $put, $t1 - $last;
        }
    ' "$1" "$2"
}

# stats ROUNDS DAEMON: "MODE KEY COUNT P50 P99 MAX" and "MODE n_KEY N" lines
stats() {
    perl -e '
        use strict;
        my ($rounds, $daemon) = @ARGV;
        my (%v, %n);
        open my $r, "<", $rounds or die;
        while (<$r>) {
            my @f = split;
            next unless $f[0] eq "round";
            my $m = $f[1];
            push @{ $v{$m}{cmd} }, $f[6];
            push @{ $v{$m}{prop} }, $f[7];
            push @{ $v{$m}{total} }, $f[8];
            push @{ $v{$m}{"e$_"} }, $f[8 + $_] for 1 .. 3;
            $n{$m}{wrong} += $f[12];
            $n{$m}{answers} += $f[13];
            $n{$m}{flaps} += $f[14];
            $n{$m}{lost} += $f[15];
            push @{ $v{$m}{gone} }, $f[17] if $f[17] >= 0;
            push @{ $v{$m}{first} }, $f[18];
            $n{$m}{rounds}++;
        }
        open my $d, "<", $daemon or die;
        while (<$d>) {
            my @f = split;
            push @{ $v{daemon}{read} }, $f[1];
            push @{ $v{daemon}{applied} }, $f[2];
            push @{ $v{daemon}{put} }, $f[3];
            push @{ $v{daemon}{after} }, $f[4];
            $n{daemon}{rounds}++;
        }
        # nearest rank: the smallest value with at least p% of them at or below
        sub pct {
            my ($p, @x) = @_;
            @x = sort { $a <=> $b } @x;
            my $i = int($p / 100 * @x + 0.999999) - 1;
            $i = 0 if $i < 0;
            return $x[$i];
        }
        for my $m (sort keys %v) {
            for my $k (sort keys %{ $v{$m} }) {
                my @x = @{ $v{$m}{$k} };
                printf "%s %s %d %.3f %.3f %.3f\n", $m, $k, scalar @x,
                    pct(50, @x), pct(99, @x), pct(100, @x);
            }
            for my $k (sort keys %{ $n{$m} }) {
                printf "%s n_%s %d\n", $m, $k, $n{$m}{$k};
            }
        }
    ' "$1" "$2"
}

# the stats file that stat_of and n_of read
stats_file="$dir/stats.txt"

stat_of() {   # MODE KEY FIELD(count|p50|p99|max)
    awk -v m="$1" -v k="$2" -v f="$3" '
        $1 == m && $2 == k {
            i = (f == "count") ? 3 : (f == "p50") ? 4 : (f == "p99") ? 5 : 6
            print $i; found = 1 }
        END { if (!found) print "-" }' "$stats_file"
}
n_of() {
    awk -v m="$1" -v k="n_$2" '$1 == m && $2 == k { print $3; f = 1 }
        END { if (!f) print 0 }' "$stats_file"
}
fmt() {
    if [ "$1" = - ]; then echo -; else perl -e 'printf "%.1f", $ARGV[0]' -- "$1"; fi
}
trio() { echo "$(fmt "$(stat_of "$1" "$2" p50)") / $(fmt "$(stat_of "$1" "$2" p99)") / $(fmt "$(stat_of "$1" "$2" max)")"; }
ratio() { perl -e 'printf "%.1f", $ARGV[1] > 0 ? $ARGV[0] / $ARGV[1] : 0' -- "$1" "$2"; }

bad_lines() {
    cat "$dir"/s*/edge*/error.log "$dir"/s*/gated.log \
        | grep -c -E '\[(alert|crit|emerg|error)\]' || true
}

machine_line() {
    echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); nginx $($nginx -v 2>&1 | cut -d/ -f2); redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'); git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)."
}

if [ "$sync" = 1 ]; then
    # shellcheck source=bench/propagation-sync.sh
    . "$top/bench/propagation-sync.sh"
    exit 0
fi

# ---------------------------------------------------------------- idle cost
# /proc/PID/schedstat: time on CPU in ns (exact, unlike utime's 10 ms
# ticks), sampled every 50 ms; a "burst" is a run of samples where it grew
idle_sample() {
    perl -MTime::HiRes=sleep,time -e '
        my ($pid, $secs) = @ARGV;
        sub rd { open my $f, "<", $_[0] or die "$_[0]: $!"; local $/; <$f> }
        sub cpu_ns { (split " ", rd("/proc/$pid/schedstat"))[0] }
        sub ticks { my @f = split " ", (rd("/proc/$pid/stat") =~ /\)\s(.*)/s)[0];
                    $f[11] + $f[12] }
        sub status { my ($k) = @_; rd("/proc/$pid/status") =~ /^$k:\s+(\d+)/m; $1 }
        my ($n0, $t0, $c0) = (cpu_ns(), ticks(), status("voluntary_ctxt_switches"));
        my ($prev, $bursts, $active, $in) = ($n0, 0, 0, 0);
        my $end = time + $secs;
        while (time < $end) {
            sleep 0.05;
            my $n = cpu_ns();
            if ($n > $prev) { $active++; $bursts++ unless $in; $in = 1 }
            else { $in = 0 }
            $prev = $n;
        }
        my $cpu_ms = (cpu_ns() - $n0) / 1e6;
        printf "%.3f %d %d %d %d %d %d %d %d %d\n", $cpu_ms,
            (ticks() - $t0) * 10, $bursts, $active, status("VmRSS"),
            status("VmHWM"), status("voluntary_ctxt_switches") - $c0,
            $secs / 0.05, status("RssAnon"), status("RssFile");
    ' "$@"
}

say "portal-gated at idle: settle 3 s, then ${idle} s of samples"
sleep 3
read -r idle_cpu_ms idle_ticks_ms idle_bursts idle_active idle_rss \
        idle_hwm idle_ctxsw idle_samples idle_anon idle_file \
        < <(idle_sample "${gated_pid[0]}" "$idle")

rss_of() {
    "$1" &
    local pid=$!
    helper_pids+=("$pid")
    sleep 0.3
    perl -ne 'print "$1\n" if /^VmRSS:\s+(\d+)/' "/proc/$pid/status"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}
rss_curl=$(rss_of "$dir/rss-curl")
rss_plain=$(rss_of "$dir/rss-plain")

# ------------------------------------------------------------------ rounds
s=${sdir[0]}
reload_cmds=()
for e in 1 2 3; do
    reload_cmds+=(--on "$nginx -p $s/edge$e/ -c $s/edge$e/nginx.conf -s reload"
                  --off "$nginx -p $s/edge$e/ -c $s/edge$e/nginx.conf -s reload")
done

: > "$dir/rounds.txt"
t_start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for b in $(seq 1 "$blocks"); do
    say "block $b/$blocks: $((kills / blocks)) kills, $((reloads / blocks)) reloads"
    kill_probe 0 $((kills / blocks)) >> "$dir/rounds.txt" \
        || fail "the kill probe failed"
    probe 0 --mode reload --rounds $((reloads / blocks)) --path /mapped/ \
        --map "$s/portal.map" "${reload_cmds[@]}" \
        >> "$dir/rounds.txt" || fail "the reload probe failed"
done
t_rounds=$(( $(date +%s) - t_start ))
load1=$(cut -d' ' -f1-3 /proc/loadavg)

rss_after=$(perl -ne 'print "$1\n" if /^VmRSS:\s+(\d+)/' \
            "/proc/${gated_pid[0]}/status")
hwm_after=$(perl -ne 'print "$1\n" if /^VmHWM:\s+(\d+)/' \
            "/proc/${gated_pid[0]}/status")

bad_lines=$(bad_lines)

daemon_view "$s/gated.log" "$dir/rounds.txt" > "$dir/daemon.txt"
stats "$dir/rounds.txt" "$dir/daemon.txt" > "$dir/stats.txt"

kp99=$(stat_of kill prop p99)
if perl -e 'exit !($ARGV[0] <= 10)' "$kp99"; then
    verdict="met"
else
    verdict="MISSED"
fi
rss_mib=$(perl -e 'printf "%.2f", $ARGV[0] / 1024' "$idle_rss")
ticks=$(perl -e 'printf "%d", $ARGV[0] / 2' "$idle")

cat <<EOF

## Kill-switch propagation to 3 edges ($(date -u '+%Y-%m-%d %H:%M UTC'))

$(machine_line)
3 edges x $workers workers, state file: $state, $(stat_of kill prop count) kill rounds and $(stat_of reload prop count) reload rounds in $blocks interleaved blocks, ${t_rounds} s; loadavg before/after the rounds: $load0 / $load1.

| ms, p50 / p99 / max | kill (portal-gated) | reload (map + nginx -s reload x3) | reload / kill (p50, p99) |
| --- | --- | --- | --- |
| t0 -> t1: command returned -> every worker answers off | **$(trio kill prop)** | $(trio reload prop) | $(ratio "$(stat_of reload prop p50)" "$(stat_of kill prop p50)") x, $(ratio "$(stat_of reload prop p99)" "$(stat_of kill prop p99)") x |
| start -> t1: command started -> every worker answers off | $(trio kill total) | $(trio reload total) | $(ratio "$(stat_of reload total p50)" "$(stat_of kill total p50)") x, $(ratio "$(stat_of reload total p99)" "$(stat_of kill total p99)") x |
| the command itself (start -> t0) | $(trio kill cmd) | $(trio reload cmd) | |
| t0 -> edge 1 / 2 / 3 all off (p50) | $(fmt "$(stat_of kill e1 p50)") / $(fmt "$(stat_of kill e2 p50)") / $(fmt "$(stat_of kill e3 p50)") | $(fmt "$(stat_of reload e1 p50)") / $(fmt "$(stat_of reload e2 p50)") / $(fmt "$(stat_of reload e3 p50)") | |
| t0 -> every edge has at least one worker answering off | $(trio kill first) | $(trio reload first) | |
| t0 -> the last old worker gone | | $(trio reload gone) | |
| answers "on" after t0, per round (mean) | $(perl -e 'printf "%.1f", $ARGV[0] / ($ARGV[1] || 1)' "$(n_of kill wrong)" "$(n_of kill rounds)") | $(perl -e 'printf "%.1f", $ARGV[0] / ($ARGV[1] || 1)' "$(n_of reload wrong)" "$(n_of reload rounds)") | |
| requests lost (connection closed before the answer) | $(n_of kill lost) | $(n_of reload lost) | |
| a worker answered on again after off (must be 0) | $(n_of kill flaps) | $(n_of reload flaps) | |

p99 target t0 -> t1 <= 10 ms to 3 edges: **$verdict** ($(fmt "$kp99") ms); kill rounds over 10 ms: $(awk '$2 == "kill" && $8 > 10' "$dir/rounds.txt" | wc -l) of $(stat_of kill prop count). Percentiles are nearest-rank.

Where the kill's time goes, from portal-gated's log (ms resolution), p50 / p99 / max over $(stat_of daemon read count) rounds:

| step | ms |
| --- | --- |
| t0 -> the daemon has read the new revision (negative: before the CLI exited) | $(trio daemon read) |
| t0 -> the last edge's PUT answered 200 | $(trio daemon applied) |
| the slowest edge's PUT, as the daemon timed it ("applied in X ms") | $(trio daemon put) |
| the last PUT answered -> t1 (the probe saw every worker off) | $(trio daemon after) |

portal-gated at idle ($nflags flags in production, $nedges edges, reconcile_interval 2s, ${idle} s after 3 s to settle):

| measure | figure | target |
| --- | --- | --- |
| RSS (VmRSS) | **$rss_mib MiB** ($idle_rss kB; VmHWM $idle_hwm kB) | < 16 MiB |
| of which anonymous (RssAnon: heap, stacks) / file-backed (RssFile: the shared libraries' pages) | $idle_anon kB / $idle_file kB | |
| RSS after all the rounds | $rss_after kB (VmHWM $hwm_after kB) | |
| a process that only links the same libraries and calls curl_global_init + curl_multi_init | $rss_curl kB (a bare C program: $rss_plain kB) | |
| CPU over ${idle} s (schedstat) | $(fmt "$idle_cpu_ms") ms, $(perl -e 'printf "%.2f", $ARGV[0] / $ARGV[1]' "$idle_cpu_ms" "$ticks") ms per tick ($ticks ticks); utime+stime $idle_ticks_ms ms | |
| 50-ms samples in which it used CPU | $idle_active of $idle_samples, in $idle_bursts bursts ($ticks ticks expected) | no CPU between ticks |
| voluntary context switches over ${idle} s | $idle_ctxsw | |

[alert]/[crit]/[emerg]/[error] lines in the edges' and the daemon's logs: $bad_lines.
EOF
