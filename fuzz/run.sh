#!/bin/bash
# Run libFuzzer targets one after the other (see fuzz/README.md).
#
#   fuzz/run.sh [--smoke] SECONDS TARGET...
#
# Each target runs SECONDS over its seeds (fuzz/corpus/NAME, and
# build/fuzz/seeds/NAME when the build made some), under `nice -n 19`.
# What it finds that is new goes to build/fuzz/corpus/NAME, which a later
# long run starts from; with --smoke it goes to a scratch folder that is
# emptied first, so the smoke run depends on the repository alone. A
# crash, a sanitizer report, a failed check or a 10 s hang stops that
# target; its input is saved as build/fuzz/artifacts/NAME-crash-... and
# the run fails at the end, after the other targets have run.
#
# One line per target: executions, exec/s, corpus, cov and ft, as
# libFuzzer counts them; its whole output is in build/fuzz/log/NAME.log
# (build/fuzz/smoke/NAME.log with --smoke, so a smoke run of make test
# never writes into the log of a long run going on beside it).

set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build="$top/build/fuzz"

smoke=0
if [ "${1:-}" = --smoke ]; then
    smoke=1
    shift
fi

if [ $# -lt 2 ]; then
    echo "usage: fuzz/run.sh [--smoke] SECONDS TARGET..." >&2
    exit 2
fi

seconds=$1
shift

# the dictionary each target uses, if any
dict_of() {
    case $1 in
        snapshot|flag|state) echo "$top/fuzz/snapshot.dict" ;;
        conf)                echo "$top/fuzz/conf.dict" ;;
        redis_url)           echo "$top/fuzz/redis_url.dict" ;;
        token)               echo "$top/fuzz/token.dict" ;;
    esac
}

mkdir -p "$build/log" "$build/artifacts"
failed=""

for name in "$@"; do
    bin="$build/fuzz_$name"

    if [ ! -x "$bin" ]; then
        echo "fuzz: $bin is missing: run make fuzz" >&2
        failed="$failed $name"
        continue
    fi

    if [ $smoke = 1 ]; then
        work="$build/smoke/$name"
        log="$build/smoke/$name.log"
        rm -rf "$work"
    else
        work="$build/corpus/$name"
        log="$build/log/$name.log"
    fi

    mkdir -p "$work" "$(dirname "$log")"
    dirs=("$work" "$top/fuzz/corpus/$name")

    if [ -d "$build/seeds/$name" ]; then
        dirs+=("$build/seeds/$name")
    fi

    opts=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048
          -print_final_stats=1 -artifact_prefix="$build/artifacts/$name-")
    dict=$(dict_of "$name")

    if [ -n "$dict" ]; then
        opts+=(-dict="$dict")
    fi

    nice -n 19 "$bin" "${opts[@]}" "${dirs[@]}" > "$log" 2>&1
    rc=$?

    # "#123 DONE cov: 456 ft: 789 corp: 12/3456b ..." and the final stats
    last=$(grep -a -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -1)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<< "$last")

    printf 'fuzz %-10s %ss execs %s exec/s %s corpus %s cov %s ft %s: %s\n' \
        "$name" "$seconds" "${execs:-?}" "${speed:-?}" "${corp:-?}" \
        "${cov:-?}" "${ft:-?}" "$([ $rc = 0 ] && echo ok || echo FAILED)"

    if [ $rc != 0 ]; then
        grep -a -E -A12 \
            '^==[0-9]+==ERROR|runtime error|fuzz: .*check failed|^SUMMARY' \
            "$log" | head -40 >&2
        grep -a -E 'Test unit written to' "$log" >&2
        failed="$failed $name"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed (logs beside $log)" >&2
    exit 1
fi
