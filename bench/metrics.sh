#!/bin/bash
# make bench-metrics: what portal_gate_metrics costs the gate, and a scrape.
#
#   A   location / { return 200 "ok\n"; }                (plain nginx)
#   B   A behind `portal_gate customer_portal;`          (no metrics)
#   Bm  B in an nginx that has `portal_gate_metrics;`   (every decision and
#       answer counted)
#
# Counting is on for a whole nginx once a portal_gate_metrics location
# exists, so B and Bm are two nginx instances, each with one worker on
# CPU 0; A is served by B's. wrk runs on CPU 1. Each config runs
# BENCH_ROUNDS interleaved rounds (A B Bm, then Bm B A, ...) of
# `wrk -t1 -cBENCH_CONNECTIONS -dBENCH_DURATION`; medians and ratios are
# quoted. Then the scrape: the metrics nginx holds a snapshot of 20 flags
# in 2 environments, each pair decided on and off (80 decision series and
# their answers); BENCH_SCRAPES scrapes are timed by curl while wrk keeps
# the gate busy.
#
#   BENCH_ROUNDS=10 BENCH_DURATION=3 BENCH_CONNECTIONS=32 BENCH_SCRAPES=50
#   BENCH_KEEP=1     keep the scratch folder

set -euo pipefail

# shellcheck source=bench/metrics-rig.sh
. "$(dirname "$0")/metrics-rig.sh"

top=$(cd "$(dirname "$0")/.." && pwd)
module=${BENCH_MODULE:-$top/build/ngx_http_portal_gate_module.so}
rounds=${BENCH_ROUNDS:-10}
duration=${BENCH_DURATION:-3}
conns=${BENCH_CONNECTIONS:-32}
scrapes=${BENCH_SCRAPES:-50}

for tool in /usr/sbin/nginx wrk curl perl; do
    command -v "$tool" > /dev/null \
        || { echo "bench: $tool is missing: run make bench" >&2; exit 1; }
done
[ -f "$module" ] || { echo "bench: $module is missing: run make module" >&2; exit 1; }

dir=$(mktemp -d /tmp/portal-gate-bench-metrics.XXXXXX)
chmod 755 "$dir"
cp "$module" "$dir/module.so"

pids=()
stop() {
    for p in "${pids[@]}"; do
        kill -QUIT "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "bench: kept $dir (BENCH_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

pin_nginx=(); pin_client=(); pinning="no pinning"
if command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_nginx=(taskset -c 0); pin_client=(taskset -c 1)
    pinning="nginx on CPU 0, wrk on CPU 1 (taskset)"
fi

port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
    LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'; }

median() { perl -e '@v = sort { $a <=> $b } @ARGV; $n = @v;
    printf "%.2f", $n % 2 ? $v[$n/2] : ($v[$n/2-1] + $v[$n/2]) / 2' "$@"; }
ratio() { perl -e 'printf "%.3f", $ARGV[0] / $ARGV[1]' "$1" "$2"; }


# NAME METRICS(0|1): an nginx in $dir/NAME; its ports in $dir/NAME.ports
start_nginx() {
    local name=$1 metrics=$2 d="$dir/$1" p_plain p_gate p_api
    mkdir -p "$d/tmp" "$d/state"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$d/tmp" "$d/state"
    p_plain=$(port); p_gate=$(port); p_api=$(port)
    local extra=""
    if [ "$metrics" = 1 ]; then
        extra="location = /metrics { portal_gate_metrics; }
               location = /health { portal_gate_health; }"
    fi
    cat > "$d/nginx.conf" <<CONF
load_module $dir/module.so;
daemon off;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log notice;
events { worker_connections 1024; }
CONF
    metrics_http "$d" "$p_plain" "$p_gate" "$p_api" "$extra" >> "$d/nginx.conf"
    "${pin_nginx[@]}" /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" &
    pids+=($!)
    echo "$p_plain $p_gate $p_api" > "$d.ports"
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$p_api/portal-gate/status" && return 0
        sleep 0.1
    done
    echo "bench: nginx $name did not start" >&2; cat "$d/error.log" >&2; exit 1
}

start_nginx plain 0
start_nginx metrics 1
read -r a_port b_port api0 < "$dir/plain.ports"
read -r _ bm_port api1 < "$dir/metrics.ports"

metrics_snapshot "$dir/snapshot.json"

for api in "$api0" "$api1"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$dir/snapshot.json" \
           "http://127.0.0.1:$api/portal-gate/snapshot")
    [ "$code" = 200 ] || { echo "bench: PUT answered $code" >&2; exit 1; }
done

for p in "$b_port" "$bm_port"; do
    code=$(curl -s -o /dev/null -w '%{http_code}' -H 'X-Company-Id: 42' "http://127.0.0.1:$p/")
    [ "$code" = 200 ] || { echo "bench: the gate answered $code for company 42" >&2; exit 1; }
done

echo "== throughput: $rounds rounds x 3 configs, wrk -t1 -c$conns -d${duration}s, $pinning"
configs=(A B Bm)
declare -A url rps
url[A]="http://127.0.0.1:$a_port/"
url[B]="http://127.0.0.1:$b_port/"
url[Bm]="http://127.0.0.1:$bm_port/"
# the worker of each config's nginx: its CPU time (schedstat, ns) per
# request is the second figure, steadier than req/s when other work shares
# the CPUs (it does not count the time the worker waits for one)
worker_of() { pgrep -P "$(cat "$dir/$1/nginx.pid")" | head -1; }
declare -A worker cpu
worker[A]=$(worker_of plain); worker[B]=${worker[A]}; worker[Bm]=$(worker_of metrics)
cpu_ns() { cut -d' ' -f1 "/proc/$1/schedstat"; }
for round in $(seq 1 "$rounds"); do
    order=("${configs[@]}")
    [ $((round % 2)) = 0 ] && order=(Bm B A)
    line="round $round:"
    for cfg in "${order[@]}"; do
        c0=$(cpu_ns "${worker[$cfg]}")
        out=$("${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
              -H 'X-Company-Id: 42' "${url[$cfg]}")
        c1=$(cpu_ns "${worker[$cfg]}")
        if echo "$out" | grep -q -E 'Non-2xx|Socket errors'; then
            echo "bench: errors during $cfg: $out" >&2; exit 1
        fi
        r=$(echo "$out" | awk '/^Requests\/sec:/ { print $2 }')
        n=$(echo "$out" | awk '/requests in/ { print $1 }')
        ns=$(perl -e 'printf "%.0f", ($ARGV[1] - $ARGV[0]) / $ARGV[2]' "$c0" "$c1" "$n")
        rps[$cfg]+="$r "
        cpu[$cfg]+="$ns "
        line+=" $cfg $r ($ns ns)"
    done
    echo "$line"
done

declare -A med cmed
for cfg in "${configs[@]}"; do
    # shellcheck disable=SC2086
    med[$cfg]=$(median ${rps[$cfg]})
    # shellcheck disable=SC2086
    cmed[$cfg]=$(median ${cpu[$cfg]})
done

# the scrape's series: every (environment, flag) decided on and off
for env in production staging; do
    for i in $(seq 0 19); do
        for c in 1 2 3 4 5 6 7 8; do
            curl -s -o /dev/null -H "X-Env: $env" -H "X-Company-Id: $c" \
                 "http://127.0.0.1:$bm_port/f$i/"
        done
    done
done

curl -s "http://127.0.0.1:$bm_port/metrics" > "$dir/metrics.txt"
series=$(grep -c '^portal_gate_' "$dir/metrics.txt")
bytes=$(wc -c < "$dir/metrics.txt")

echo "== $scrapes scrapes of $series series ($bytes bytes) under wrk load"
"${pin_client[@]}" wrk -t1 -c"$conns" -d"$((scrapes / 10 + 5))s" \
    -H 'X-Company-Id: 42' "${url[Bm]}" > /dev/null &
wrk_pid=$!
sleep 1
times=""
for _ in $(seq "$scrapes"); do
    t=$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$bm_port/metrics")
    times+="$(perl -e 'printf "%.3f", $ARGV[0] * 1000' "$t") "
    sleep 0.05
done
wait "$wrk_pid" || true
# shellcheck disable=SC2086
scrape_med=$(median $times)
# shellcheck disable=SC2086
scrape_max=$(perl -e '@v = sort { $a <=> $b } @ARGV; print $v[-1]' $times)

if grep -E '\[(alert|emerg|crit)\]|exited on signal' "$dir"/*/error.log; then
    echo "bench: bad lines in an error log" >&2; exit 1
fi

echo
echo "## portal_gate_metrics: cost and scrape ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//');" \
     "$pinning; wrk -t1 -c$conns -d${duration}s, $rounds rounds interleaved;" \
     "module built from git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown);" \
     "loadavg after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| config | median req/s | the worker's CPU per request, median, ns |"
echo "| --- | ---: | ---: |"
echo "| A plain return 200 | ${med[A]} | ${cmed[A]} |"
echo "| B portal_gate, allowed company, no metrics | ${med[B]} | ${cmed[B]} |"
echo "| Bm B with portal_gate_metrics (counted) | ${med[Bm]} | ${cmed[Bm]} |"
echo
echo "| measure | by req/s | by CPU per request | target |"
echo "| --- | --- | --- | --- |"
echo "| metrics on / off, Bm/B | $(ratio "${med[Bm]}" "${med[B]}") | $(ratio "${cmed[B]}" "${cmed[Bm]}") | >= 0.99 |"
echo "| metrics on / plain nginx, Bm/A | $(ratio "${med[Bm]}" "${med[A]}") | $(ratio "${cmed[A]}" "${cmed[Bm]}") | >= 0.97 |"
echo "| scrape of 20 flags x 2 environments ($series series, $bytes bytes) under load, median (max) of $scrapes | $scrape_med ms ($scrape_max ms) | |"
