#!/bin/bash
# bench/instructions.sh: what the gate and its metrics cost a request, in
# instructions (valgrind's callgrind), not in requests per second: a count
# that does not move with what else runs on the machine, so two configs or
# two builds compare to a fraction of a percent on a loaded shared host,
# where wrk's figures swing by 5x between rounds (bench/RESULTS.md).
#
# For each module build given, two nginx, each one process under callgrind
# (`master_process off`), with the snapshot of bench/metrics.sh (10,000
# allowed companies in customer_portal, 20 more flags, two environments):
#
#   A   location / { return 200 "ok\n"; }                (plain nginx)
#   B   A behind `portal_gate customer_portal;`, company 42 allowed
#   Bm  B in the nginx that also has `portal_gate_metrics;` (every decision
#       and answer counted), and Am, that nginx's plain server
#
# Each config: BENCH_WARM requests, then BENCH_WINDOWS windows of: the
# counters zeroed (callgrind_control -z), BENCH_REQUESTS keep-alive
# requests from one client, a dump (callgrind_control -d); the least
# window's instructions per request, in user space. The kernel's share (sockets, epoll) is not
# counted, so a ratio of these is a lower bound of the throughput ratio
# when the difference is user-space code, as the gate's is:
# (U + K) / (U + d + K) >= U / (U + d).
#
#   BENCH_MODULES="now:build/ngx_http_portal_gate_module.so [NAME:PATH...]"
#   BENCH_REQUESTS=20000 BENCH_WARM=2000 BENCH_WINDOWS=3 BENCH_KEEP=1
#
# Needs valgrind, nginx, curl, perl (make bench installs them).

set -euo pipefail

# shellcheck source=bench/metrics-rig.sh
. "$(dirname "$0")/metrics-rig.sh"

top=$(cd "$(dirname "$0")/.." && pwd)
modules=${BENCH_MODULES:-now:$top/build/ngx_http_portal_gate_module.so}
requests=${BENCH_REQUESTS:-20000}
warm=${BENCH_WARM:-2000}

for tool in /usr/sbin/nginx valgrind callgrind_control curl perl; do
    command -v "$tool" > /dev/null \
        || { echo "bench: $tool is missing: run make bench" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/portal-gate-bench-instr.XXXXXX)
chmod 755 "$dir"

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

port() { perl -MIO::Socket::INET -e 'print IO::Socket::INET->new(Listen => 1,
    LocalAddr => "127.0.0.1", LocalPort => 0)->sockport'; }

# N keep-alive GETs of / on PORT as company 42, each answer read whole
client() {
    perl -MIO::Socket::INET -e '
        my ($port, $n) = @ARGV;
        my $s = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                                      PeerPort => $port) or die "connect: $!\n";
        my $req = "GET / HTTP/1.1\r\nHost: x\r\nX-Company-Id: 42\r\n\r\n";
        my $buf = "";
        for (1 .. $n) {
            print {$s} $req;
            while (1) {
                if ($buf =~ /^HTTP\/1\.1 (\d+)[^\r]*\r\n(.*?)\r\n\r\n/s) {
                    my ($code, $head, $hlen) = ($1, $2, $+[0]);
                    my ($len) = $head =~ /Content-Length: (\d+)/i;
                    my $need = $hlen + ($len // 0);
                    if (length $buf >= $need) {
                        die "answered $code\n" unless $code == 200;
                        substr($buf, 0, $need, "");
                        last;
                    }
                }
                sysread($s, $buf, 65536, length $buf) or die "closed\n";
            }
        }' "$1" "$2"
}

metrics_snapshot "$dir/snapshot.json"

# NAME MODULE METRICS(0|1): an nginx under callgrind in $dir/NAME; writes
# "PID PLAIN_PORT GATE_PORT" to $dir/NAME.info
start_nginx() {
    local name=$1 module=$2 metrics=$3 d="$dir/$1" p_plain p_gate p_api extra=""
    mkdir -p "$d/tmp" "$d/state"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$d/tmp" "$d/state"
    p_plain=$(port); p_gate=$(port); p_api=$(port)
    [ "$metrics" = 1 ] && extra="location = /metrics { portal_gate_metrics; }"
    cat > "$d/nginx.conf" <<CONF
load_module $module;
daemon off;
master_process off;
pid $d/nginx.pid;
error_log $d/error.log notice;
events { worker_connections 1024; }
CONF
    metrics_http "$d" "$p_plain" "$p_gate" "$p_api" "$extra" >> "$d/nginx.conf"
    valgrind -q --tool=callgrind --callgrind-out-file="$d/cg.%p" \
        /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" > "$d/stdout" 2> "$d/valgrind.log" &
    local pid=$!
    pids+=("$pid")
    for _ in $(seq 300); do
        curl -s -o /dev/null "http://127.0.0.1:$p_api/portal-gate/status" && break
        sleep 0.1
    done
    code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT \
           --data-binary @"$dir/snapshot.json" \
           "http://127.0.0.1:$p_api/portal-gate/snapshot")
    [ "$code" = 200 ] || { echo "bench: $name: PUT answered $code" >&2;
                           cat "$d/error.log" >&2; exit 1; }
    echo "$pid $p_plain $p_gate" > "$d.info"
}

# PID PORT: instructions per request, the least of BENCH_WINDOWS windows:
# what varies between windows is only ever added (a second's time strings
# rebuilt, an epoll wake-up that finds nothing), so the least is the cost
windows=${BENCH_WINDOWS:-3}
measure() {
    local pid=$1 port=$2 total best="" w
    client "$port" "$warm"
    for w in $(seq "$windows"); do
        callgrind_control -z "$pid" > /dev/null 2>&1
        client "$port" "$requests"
        callgrind_control -d "$pid" > /dev/null 2>&1
        # the newest dump of this pid
        total=$(perl -e '
            my ($pid) = @ARGV[0]; shift;
            my ($f) = sort { -M $a <=> -M $b } grep { /cg\.\Q$pid\E\.\d+$/ } @ARGV;
            open my $fh, "<", $f or die "no dump of $pid\n";
            while (<$fh>) { if (/^(?:summary|totals): (\d+)/) { print $1; exit } }
            die "no totals in $f\n";' "$pid" "$dir"/*/cg.*)
        total=$(perl -e 'printf "%.0f", $ARGV[0] / $ARGV[1]' "$total" "$requests")
        [ -z "$best" ] || [ "$total" -lt "$best" ] && best=$total
        sleep 1.1
    done
    echo "$best"
}

declare -A ir
names=()
for spec in $modules; do
    name=${spec%%:*}; module=${spec#*:}
    [ "$module" = "${module#/}" ] && module="$top/$module"
    [ -f "$module" ] || { echo "bench: $module is missing" >&2; exit 1; }
    names+=("$name")
    start_nginx "$name" "$module" 0
    read -r pid a b < "$dir/$name.info"
    ir[$name.A]=$(measure "$pid" "$a")
    ir[$name.B]=$(measure "$pid" "$b")
    if grep -q portal_gate_metrics "$module"; then
        start_nginx "$name-m" "$module" 1
        read -r pid am bm < "$dir/$name-m.info"
        ir[$name.Am]=$(measure "$pid" "$am")
        ir[$name.Bm]=$(measure "$pid" "$bm")
    else
        ir[$name.Am]=""         # a build from before portal_gate_metrics
        ir[$name.Bm]=""
    fi
    echo "$name: A ${ir[$name.A]} B ${ir[$name.B]} Am ${ir[$name.Am]} Bm ${ir[$name.Bm]} instructions per request" >&2
done

if grep -E '\[(alert|emerg|crit)\]' "$dir"/*/error.log; then
    echo "bench: bad lines in an error log" >&2; exit 1
fi

ratio() { [ -n "$1" ] && [ -n "$2" ] && perl -e 'printf "%.4f", $ARGV[0] / $ARGV[1]' "$1" "$2" || echo "n/a"; }

echo
echo "## Instructions per request (bench/instructions.sh, $(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "callgrind, nginx in one process, the least of $windows windows of $requests keep-alive requests per config after $warm;" \
     "git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)."
echo
# two nginx processes differ by a few hundred instructions per request
# for the same answer (seen: A alone moves 3 % between runs), so metrics'
# cost is taken within the metrics nginx, against its own plain server
# (Am), and the gate's within the other: metrics cost (Bm - Am) - (B - A)
cost() { [ -n "$3" ] && perl -e 'printf "%.0f", ($ARGV[3] - $ARGV[2]) - ($ARGV[1] - $ARGV[0])' "$@" || echo "n/a"; }
echo "| build | A plain | B gate | Am plain, metrics nginx | Bm gate + metrics | A/B | metrics' own, instructions | B/(B + metrics') | A/(B + metrics') |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in "${names[@]}"; do
    m=$(cost "${ir[$n.A]}" "${ir[$n.B]}" "${ir[$n.Am]}" "${ir[$n.Bm]}")
    bm=""; [ "$m" != n/a ] && bm=$((ir[$n.B] + m))
    echo "| $n | ${ir[$n.A]} | ${ir[$n.B]} | ${ir[$n.Am]} | ${ir[$n.Bm]} |" \
         "$(ratio "${ir[$n.A]}" "${ir[$n.B]}") | $m | $(ratio "${ir[$n.B]}" "$bm") |" \
         "$(ratio "${ir[$n.A]}" "$bm") |"
done
if [ "${#names[@]}" -gt 1 ]; then
    echo
    echo "| gate (B) against ${names[0]}'s | instructions ratio |"
    echo "| --- | ---: |"
    for n in "${names[@]:1}"; do
        echo "| $n | $(ratio "${ir[${names[0]}.B]}" "${ir[$n.B]}") |"
    done
fi
echo
echo "A ratio X/Y is Y's requests per X's in user-space instructions: a lower"
echo "bound of Y's throughput over X's (the kernel's share is not counted)."
