#!/bin/bash
# bench/put-compare.sh: a full PUT of 100,000 companies into an edge, for
# one module or several side by side (issue 14: "a full PUT of 100,000
# companies no slower than today"). It runs bench/run.sh's PUT part
# (BENCH_ONLY=put: a fresh nginx, a 10k PUT, then a series of 100k PUTs
# with the body in a temp file and a series with it in memory) for each
# module in turn, PUT_REPEAT times, the order alternating (A B, B A, ...),
# and prints the median over all of each module's PUTs. On a machine whose
# neighbours swing a PUT's time by 3x from one minute to the next, only
# modules measured in the same minutes compare.
#
#   PUT_BUILDS="A:PATH B:PATH"  PATH: a module (.so) or a folder holding
#                               ngx_http_portal_gate_module.so; default
#                               "build:build"
#   PUT_REPEAT=4                runs of bench/run.sh per module
#   BENCH_PUTS=5                PUTs per series in each run (run.sh's knob)
#   BENCH_ZONE=4m               (run.sh's knob)
#
# Run it under `nice -n 19` on a shared machine.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
repeat=${PUT_REPEAT:-4}
builds=${PUT_BUILDS:-build:$top/build}
export BENCH_PUTS=${BENCH_PUTS:-5}

labels=()
mods=()
for b in $builds; do
    if [[ $b != *:* ]] || [ -z "${b%%:*}" ] || [ -z "${b#*:}" ]; then
        echo "put-compare: PUT_BUILDS takes LABEL:PATH ..., not \"$b\"" >&2
        exit 1
    fi
    m=${b#*:}
    [ -d "$m" ] && m="$m/ngx_http_portal_gate_module.so"
    if [ ! -f "$m" ]; then
        echo "put-compare: $m is missing" >&2
        exit 1
    fi
    labels+=("${b%%:*}")
    mods+=("$m")
done
n=${#labels[@]}

out=$(mktemp -d /tmp/portal-gate-put.XXXXXX)
trap 'rm -rf "$out"' EXIT

load0=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$SECONDS
for r in $(seq 1 "$repeat"); do
    order=$(seq 0 $((n - 1)))
    if [ $((r % 2)) = 0 ]; then
        order=$(seq $((n - 1)) -1 0)
    fi
    for k in $order; do
        echo "== run $r/$repeat: ${labels[$k]}" >&2
        BENCH_ONLY=put BENCH_MODULE="${mods[$k]}" "$top/bench/run.sh" \
            > "$out/$k-$r.txt" 2>&1 \
            || { tail -20 "$out/$k-$r.txt" >&2; exit 1; }
        # run.sh prints "time_total (s): ..." for the temp-file series,
        # then for the in-memory one
        grep '^time_total (s):' "$out/$k-$r.txt" | sed -n 1p | cut -d: -f2 \
            >> "$out/$k-file.txt"
        grep '^time_total (s):' "$out/$k-$r.txt" | sed -n 2p | cut -d: -f2 \
            >> "$out/$k-mem.txt"
        # and "worker CPU per PUT (ms): X", the series' mean, likewise
        grep '^worker CPU per PUT (ms):' "$out/$k-$r.txt" | sed -n 1p \
            | cut -d: -f2 >> "$out/$k-file-cpu.txt"
        grep '^worker CPU per PUT (ms):' "$out/$k-$r.txt" | sed -n 2p \
            | cut -d: -f2 >> "$out/$k-mem-cpu.txt"
    done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)

# stats FILE: "median p90 min max count" in ms of the times (s) in FILE
stats() {
    # shellcheck disable=SC2046 # a list of numbers
    perl -e '
        my @v = sort { $a <=> $b } map { $_ * 1000 } @ARGV;
        my $n = @v;
        my $med = $n % 2 ? $v[$n / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2;
        my $p90 = $v[int(0.9 * $n + 0.999999) - 1];
        printf "%.1f %.1f %.1f %.1f %d\n", $med, $p90, $v[0], $v[-1], $n;
    ' $(cat "$1")
}
# median FILE: the median of the numbers in FILE
median() {
    # shellcheck disable=SC2046 # a list of numbers
    perl -e '@v = sort { $a <=> $b } @ARGV; $n = @v;
             printf "%.1f", $n % 2 ? $v[$n / 2] : ($v[$n / 2 - 1] + $v[$n / 2]) / 2' \
        $(cat "$1")
}
ratio() { perl -e 'printf "%.3f", $ARGV[0] / $ARGV[1]' "$1" "$2"; }

echo
echo "## A full PUT of 100,000 companies, side by side ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$(nproc) CPUs; bench/run.sh BENCH_ONLY=put, $repeat runs per module" \
     "alternating, $BENCH_PUTS PUTs per series and run (the first PUT of" \
     "each run's temp-file series replaces the 10k snapshot), zone" \
     "${BENCH_ZONE:-4m} with a state file; run at nice" \
     "$(awk '{ print $19 }' /proc/$$/stat); $((SECONDS - t0)) s;" \
     "loadavg before/after: $load0 / $load1."
echo
for k in $(seq 0 $((n - 1))); do
    echo "- **${labels[$k]}**: ${mods[$k]}, sha256" \
         "$(sha256sum "${mods[$k]}" | cut -c1-16)"
done
echo
echo "| module | body | median (ms) | p90 | min | max | PUTs | median / ${labels[0]}'s | worker CPU per PUT (ms, median of the runs' means) | CPU / ${labels[0]}'s |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for body in file mem; do
    read -r base _ < <(stats "$out/0-$body.txt")
    cpu_base=$(median "$out/0-$body-cpu.txt")
    for k in $(seq 0 $((n - 1))); do
        read -r med p90 min max cnt < <(stats "$out/$k-$body.txt")
        case $body in
            file) what="temp file (default client_body_buffer_size)" ;;
            mem)  what="in memory (client_body_buffer_size 2m)" ;;
        esac
        cpu=$(median "$out/$k-$body-cpu.txt")
        echo "| ${labels[$k]} | $what | **$med** | $p90 | $min | $max | $cnt" \
             "| $(ratio "$med" "$base") | $cpu | $(ratio "$cpu" "$cpu_base") |"
    done
done
