#!/bin/bash
# bench/propagation.sh: how fast a kill switch reaches every nginx worker of
# 3 edges, next to the reload-based approach it replaces; and what
# portal-gated costs at idle.
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
#   PROP_KILLS=200     kill rounds
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
# Prints a results block for bench/RESULTS.md at the end. Everything it
# starts is stopped on exit.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
gated_bin="$top/build/portal-gated"
ctl_bin="$top/build/portal-gatectl"
nginx=/usr/sbin/nginx

kills=${PROP_KILLS:-200}
reloads=${PROP_RELOADS:-100}
blocks=${PROP_BLOCKS:-10}
nflags=${PROP_FLAGS:-30}
idle=${PROP_IDLE:-20}
state=${PROP_STATE:-disk}
nedges=3
workers=2

for tool in "$nginx" redis-server cc curl perl; do
    if ! command -v "$tool" > /dev/null; then
        echo "propagation: $tool is missing: run make bench" >&2
        exit 1
    fi
done
for f in "$module" "$gated_bin" "$ctl_bin"; do
    if [ ! -f "$f" ]; then
        echo "propagation: $f is missing: run make module ctl gated" >&2
        exit 1
    fi
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

dir=$(mktemp -d /tmp/portal-gate-prop.XXXXXX)
chmod 755 "$dir"

# private copies: the figures belong to the binaries there at the start
cp "$module" "$gated_bin" "$ctl_bin" "$dir/"
module="$dir/ngx_http_portal_gate_module.so"
gated_bin="$dir/portal-gated"
ctl_bin="$dir/portal-gatectl"

shm=""
if [ "$state" = tmpfs ]; then
    shm=$(mktemp -d /dev/shm/portal-gate-prop.XXXXXX)
    chmod 755 "$shm"
fi

redis_pid=""
gated_pid=""
nginx_pids=()
helper_pids=()

stop() {
    local pid
    for pid in "${helper_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
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
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill -TERM "$redis_pid"
        wait "$redis_pid" 2>/dev/null || true
    fi
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
    for f in "$dir"/probe.err "$dir"/gated.log "$dir"/edge*/error.log; do
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
read -r redis_port port1 port2 port3 < <(perl -MIO::Socket::INET -e '
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 1, ReuseAddr => 1)
            or die "propagation: no free port: $!\n"
    } 1 .. 4;
    print join(" ", map { $_->sockport } @s), "\n"')
ports=("$port1" "$port2" "$port3")

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

# ---------------------------------------------------------------- the store
say "seeding $nflags flags"
ctl() { "$ctl_bin" --actor bench "$@" > /dev/null; }
ctl create customer_portal
ctl rollout customer_portal 100
for i in $(seq 2 "$nflags"); do
    f=$(printf 'flag_%02d' "$i")
    ctl create "$f"
    ctl rollout "$f" $((i * 3 % 100))
    ctl allow "$f" $((1000 + i)) $((2000 + i)) $((3000 + i))
done

# ------------------------------------------------------------------- edges
echo "default 1;" > "$dir/portal.map"

for e in 1 2 3; do
    ed="$dir/edge$e"
    case $state in
        disk)  sd="$ed/state"; zone_state=" state=$sd/state.json" ;;
        tmpfs) sd="$shm/edge$e"; zone_state=" state=$sd/state.json" ;;
        none)  sd="$ed/state"; zone_state="" ;;
    esac
    mkdir -p "$sd" "$ed/tmp"
    if [ "$(id -u)" = 0 ]; then
        chown nobody:nogroup "$sd" "$ed/tmp"
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
    # the probe's connections live for the whole run
    keepalive_timeout 600s;
    keepalive_requests 100000000;

    portal_gate_zone zone=portal_gate:4m$zone_state;
    portal_gate_company \$http_x_company_id;

    # the reload-based approach: the switch is a map include
    map \$http_x_company_id \$portal_on {
        include $dir/portal.map;
    }

    server {
        # reuseport: one listen socket per worker; a connection stays with
        # the worker that the kernel hashed it to
        listen 127.0.0.1:${ports[$((e - 1))]} reuseport;

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
    for e in 1 2 3; do
        echo "edge               unix:$dir/edge$e/api.sock:/portal-gate/;"
    done
    echo "reconcile_interval 2s;"
    echo "log_level          info;"
} > "$dir/gated.conf"

say "portal-gated with $nedges edges"
"$gated_bin" -c "$dir/gated.conf" 2> "$dir/gated.log" &
gated_pid=$!

# every edge at the store's revision
edge_rev() {
    curl -s --unix-socket "$dir/edge$1/api.sock" \
        http://edge/portal-gate/status | perl -MJSON::PP -0 -ne '
        my $j = eval { JSON::PP->new->decode($_) } or exit;
        print $j->{revision} // "", "\n"'
}
want=$(redis-cli -p "$redis_port" --raw GET "${PORTAL_GATE_PREFIX}revision" \
       2>/dev/null || true)
for _ in $(seq 200); do
    ok=1
    for e in 1 2 3; do
        r=$(edge_rev "$e")
        if [ -z "$r" ] || [ -z "$want" ] || [ "$r" -lt "$want" ]; then
            ok=0
        fi
    done
    [ "$ok" = 1 ] && break
    kill -0 "$gated_pid" 2>/dev/null || fail "portal-gated exited"
    sleep 0.05
done
[ "$ok" = 1 ] || fail "the edges did not reach revision $want"

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
        < <(idle_sample "$gated_pid" "$idle")

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
edge_args=()
reload_cmds=()
for e in 1 2 3; do
    edge_args+=(--edge "${ports[$((e - 1))]}:${nginx_pids[$((e - 1))]}")
    reload_cmds+=(--on "$nginx -p $dir/edge$e/ -c $dir/edge$e/nginx.conf -s reload"
                  --off "$nginx -p $dir/edge$e/ -c $dir/edge$e/nginx.conf -s reload")
done

probe() {
    "$dir/propagation-probe" --workers "$workers" "${edge_args[@]}" \
        --company 42 --pause 20:60 "$@" 2>> "$dir/probe.err"
}

: > "$dir/rounds.txt"
t_start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
for b in $(seq 1 "$blocks"); do
    say "block $b/$blocks: $((kills / blocks)) kills, $((reloads / blocks)) reloads"
    probe --mode kill --rounds $((kills / blocks)) --path /portal/ \
        --on "$ctl_bin --actor bench on customer_portal" \
        --off "$ctl_bin --actor bench kill customer_portal" \
        >> "$dir/rounds.txt" || fail "the kill probe failed"
    probe --mode reload --rounds $((reloads / blocks)) --path /mapped/ \
        --map "$dir/portal.map" "${reload_cmds[@]}" \
        >> "$dir/rounds.txt" || fail "the reload probe failed"
done
t_rounds=$(( $(date +%s) - t_start ))
load1=$(cut -d' ' -f1-3 /proc/loadavg)

rss_after=$(perl -ne 'print "$1\n" if /^VmRSS:\s+(\d+)/' \
            "/proc/$gated_pid/status")
hwm_after=$(perl -ne 'print "$1\n" if /^VmHWM:\s+(\d+)/' \
            "/proc/$gated_pid/status")

bad_lines=$(cat "$dir"/edge*/error.log "$dir/gated.log" \
            | grep -c -E '\[(alert|crit|emerg|error)\]' || true)

# --------------------------------------------------------------- the figures
# The daemon's own view of each kill round, from its log (ms resolution):
# when it had read the new revision, and when each edge's PUT answered.
perl -MTime::Local=timelocal -e '
    my ($log, $rounds) = @ARGV;
    my (@read, @applied);
    open my $l, "<", $log or die "$log: $!";
    while (<$l>) {
        next unless m{^(\d+)/(\d+)/(\d+) (\d+):(\d+):(\d+)\.(\d+) };
        my $ms = timelocal($6, $5, $4, $3, $2 - 1, $1) * 1000 + $7;
        push @read, [$ms, $1] if /revision (\d+) read:/;
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
' "$dir/gated.log" "$dir/rounds.txt" > "$dir/daemon.txt"

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
    sub s3 { my @x = @_; sprintf "%.1f / %.1f / %.1f", pct(50, @x), pct(99, @x), pct(100, @x) }
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
' "$dir/rounds.txt" "$dir/daemon.txt" > "$dir/stats.txt"

stat_of() {   # MODE KEY FIELD(count|p50|p99|max)
    awk -v m="$1" -v k="$2" -v f="$3" '
        $1 == m && $2 == k {
            i = (f == "count") ? 3 : (f == "p50") ? 4 : (f == "p99") ? 5 : 6
            print $i; found = 1 }
        END { if (!found) print "-" }' "$dir/stats.txt"
}
n_of() {
    awk -v m="$1" -v k="n_$2" '$1 == m && $2 == k { print $3; f = 1 }
        END { if (!f) print 0 }' "$dir/stats.txt"
}
fmt() { perl -e 'printf "%.1f", $ARGV[0]' -- "$1"; }
trio() { echo "$(fmt "$(stat_of "$1" "$2" p50)") / $(fmt "$(stat_of "$1" "$2" p99)") / $(fmt "$(stat_of "$1" "$2" max)")"; }
ratio() { perl -e 'printf "%.1f", $ARGV[1] > 0 ? $ARGV[0] / $ARGV[1] : 0' -- "$1" "$2"; }

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

$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); nginx $($nginx -v 2>&1 | cut -d/ -f2); redis $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/'); git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown).
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
