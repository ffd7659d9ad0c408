#!/bin/bash
# make bench-token: what trusted company identity (portal_gate_company_token)
# costs, side by side in one nginx, against the plain gate.
#
#   A   location / { return 200 "ok\n"; }                       (no gate)
#   G   the plain gate: portal_gate customer_portal, the company from
#       X-Company-Id (an allowed company)
#   Gk  G's request with the ES256 token's cookie beside, unused: the same
#       bytes on the wire as E's, so that E/Gk and H/Gk are what verifying
#       and caching cost, and G/Gk what carrying a 200-byte cookie costs
#   H   the same gate, the company from an HS256 token in a cookie (one
#       token: each request after the first is a hit in the worker's cache)
#   E   the same with an ES256 token (cache warm)
#   Ec  ES256, 10,000 tokens taken in turn (wrk's Lua script), more than the
#       cache's 4,096: every request verifies its token (cache cold)
#
# The snapshot is bench/run.sh's: 20 flags, customer_portal allows 10,000
# companies (1000000..1009999), rollout 25; every token names an allowed
# company. Each config runs TOKEN_ROUNDS rounds interleaved (A G H E Ec, then
# Ec E H G A, ...) of `wrk -t1 -cTOKEN_CONNECTIONS -dTOKEN_DURATION`; the
# median requests/s per config and the ratios to G (the targets: H/G and
# E/G >= 0.97) are what we quote. On a machine shared with other work the
# requests/s of a round swing with its neighbours; the worker's CPU time
# per request (its utime + stime over the round, from /proc, divided by
# wrk's count) does not, so each config's median of it, and G's over each
# config's, are given beside: the throughput that the same CPU would give
# to each. Then the same configs once more, each in an nginx of its own
# (master_process off) under valgrind's callgrind: the instructions per
# request, from two runs of 500 and 2,500 requests over one keepalive
# connection (the difference over 2,000: start, stop and the first
# request's verification cancel out). They count user space only, not the
# kernel's share of a request, but no neighbour moves them. Then
# build/bench-token: one cold ES256 verification, one HS256, one cache
# hit, timed in the core.
#
#   TOKEN_ROUNDS=10 TOKEN_DURATION=3 TOKEN_CONNECTIONS=32
#   TOKEN_KEEP=1     keep the scratch folder (nginx.conf, error.log, wrk output)
#   TOKEN_CALLGRIND=0   skip the instruction counts
#
# nginx runs with one worker on CPU 0 and wrk with one thread on CPU 1
# (taskset). Everything lives in a scratch folder that is removed at the
# end, and everything started here is stopped, even on failure.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
bench_token="$top/build/bench-token"
gen="$top/bench/gen-snapshot.pl"

rounds=${TOKEN_ROUNDS:-10}
duration=${TOKEN_DURATION:-3}
conns=${TOKEN_CONNECTIONS:-32}
cold_tokens=10000

for tool in /usr/sbin/nginx wrk curl perl; do
    if ! command -v "$tool" > /dev/null; then
        echo "token bench: $tool is missing: run make bench-token" >&2
        exit 1
    fi
done

for f in "$module" "$bench_token"; do
    if [ ! -x "$f" ] && [ ! -f "$f" ]; then
        echo "token bench: $f is missing: run make bench-token" >&2
        exit 1
    fi
done

dir=$(mktemp -d /tmp/portal-gate-bench-token.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/state" "$dir/tmp" "$dir/wrk"
if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$dir/state" "$dir/tmp"
fi

# a private copy: the figures belong to the module there when the run began
cp "$module" "$dir/ngx_http_portal_gate_module.so"
module="$dir/ngx_http_portal_gate_module.so"

nginx_pid=""

stop() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        wait "$nginx_pid" 2>/dev/null || true
    fi
    if [ -n "${TOKEN_KEEP:-}" ]; then
        echo "token bench: kept $dir (TOKEN_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { echo "== $*"; }

fail() {
    echo "token bench: $*" >&2
    if [ -f "$dir/error.log" ]; then
        echo "--- error.log" >&2
        tail -20 "$dir/error.log" >&2 || true
    fi
    exit 1
}

pin_nginx=()
pin_client=()
if command -v taskset > /dev/null && [ "$(nproc)" -ge 2 ]; then
    pin_nginx=(taskset -c 0)
    pin_client=(taskset -c 1)
    pinning="nginx on CPU 0, wrk on CPU 1 (taskset)"
else
    pinning="no pinning (taskset missing or a single CPU)"
fi

median() {
    perl -e '@v = sort { $a <=> $b } @ARGV; $n = @v;
             printf "%.6g\n", $n % 2 ? $v[$n / 2]
                                     : ($v[$n / 2 - 1] + $v[$n / 2]) / 2' "$@"
}

ratio() { perl -e 'printf "%.3f", $ARGV[0] / $ARGV[1]' "$1" "$2"; }

# ------------------------------------------------------------ the core alone
say "build/bench-token (the core, pinned to CPU 1)"
core_out=$("${pin_client[@]}" "$bench_token")
echo "$core_out"
core() { echo "$core_out" | awk -v k="$1" '$1 == k { print $2 }'; }

# ---------------------------------------------------------- keys and tokens
say "keys and tokens"
"$bench_token" keygen hs256 bench-hs > "$dir/hs.jwk"
"$bench_token" keygen es256 bench-es > "$dir/es.jwk"
# signer.json for the application's side, keys.json (no "d") for the edge
perl -MJSON::PP -e '
    local $/;
    my $dir = shift;
    my @k = map { open my $f, "<", $_ or die "$_: $!"; decode_json(<$f>) } @ARGV;
    my $j = JSON::PP->new->canonical;
    open my $p, ">", "$dir/signer.json" or die "$dir/signer.json: $!";
    print {$p} $j->encode({keys => \@k});
    delete $_->{d} for @k;
    open my $e, ">", "$dir/keys.json" or die "$dir/keys.json: $!";
    print {$e} $j->encode({keys => \@k});
' "$dir" "$dir/hs.jwk" "$dir/es.jwk"

company=1000000
hs_token=$("$bench_token" mint "$dir/signer.json" bench-hs 1 7200 "$company")
es_token=$("$bench_token" mint "$dir/signer.json" bench-es 1 7200 "$company")
"$bench_token" mint "$dir/signer.json" bench-es "$cold_tokens" 7200 "$company" \
    > "$dir/cold-tokens.txt"
echo "HS256 token ${#hs_token} bytes, ES256 ${#es_token} bytes," \
     "$(wc -l < "$dir/cold-tokens.txt") ES256 tokens for the cold config"

cat > "$dir/cold.lua" <<EOF
-- each request the next of the cold tokens, in turn
local tokens = {}
for line in io.lines("$dir/cold-tokens.txt") do
    tokens[#tokens + 1] = line
end
local i = 0
request = function()
    i = i % #tokens + 1
    return wrk.format(nil, nil, { ["Cookie"] = "pg_company=" .. tokens[i] })
end
EOF

# ------------------------------------------------------------------- nginx
read -r port_a port_g port_t port_api < <(perl -MIO::Socket::INET -e '
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 1, ReuseAddr => 1)
            or die "token bench: no free port: $!\n"
    } 1 .. 4;
    print join(" ", map { $_->sockport } @s), "\n"')

cat > "$dir/nginx.conf" <<EOF
load_module $module;

daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log notice;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type text/plain;
    keepalive_requests 1000000;

    portal_gate_zone zone=portal_gate:4m state=$dir/state/state.json;
    portal_gate_company \$http_x_company_id;

    server {
        listen 127.0.0.1:$port_a;
        location / { return 200 "ok\n"; }
    }

    server {
        listen 127.0.0.1:$port_g;
        location / {
            portal_gate customer_portal;
            return 200 "ok\n";
        }
    }

    server {
        listen 127.0.0.1:$port_t;
        location / {
            portal_gate_company_token \$cookie_pg_company
                                      keys=$dir/keys.json;
            portal_gate customer_portal;
            return 200 "ok\n";
        }
    }

    server {
        listen 127.0.0.1:$port_api;
        location /portal-gate/ {
            portal_gate_api;
            client_body_buffer_size 2m;
        }
    }
}
EOF

"${pin_nginx[@]}" /usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" &
nginx_pid=$!

api="http://127.0.0.1:$port_api/portal-gate"
for _ in $(seq 100); do
    if curl -s -o /dev/null "$api/status"; then
        break
    fi
    kill -0 "$nginx_pid" 2>/dev/null || fail "nginx did not start"
    sleep 0.1
done

perl "$gen" 1 10000 > "$dir/snapshot.json"
code=$(curl -s -o "$dir/put.out" -w '%{http_code}' -X PUT \
            --data-binary "@$dir/snapshot.json" "$api/snapshot")
[ "$code" = 200 ] || fail "PUT snapshot answered $code: $(cat "$dir/put.out")"

# check URL EXPECTED-STATUS CURL-ARGS...
check() {
    local url=$1 want=$2 got
    shift 2
    got=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$got" = "$want" ] || fail "$url $*: expected $want, got $got"
}

say "checking the answers"
check "http://127.0.0.1:$port_g/" 200 -H "X-Company-Id: $company"
check "http://127.0.0.1:$port_t/" 200 -H "Cookie: pg_company=$hs_token"
check "http://127.0.0.1:$port_t/" 200 -H "Cookie: pg_company=$es_token"
check "http://127.0.0.1:$port_t/" 200 \
    -H "Cookie: pg_company=$(tail -1 "$dir/cold-tokens.txt")"
check "http://127.0.0.1:$port_t/" 404 -H "X-Company-Id: $company"
echo "G lets company $company in by X-Company-Id; the token server only" \
     "by its tokens (X-Company-Id alone: 404)"

# ------------------------------------------------------------ throughput
# the worker's CPU time so far, in clock ticks (utime + stime)
worker_pid=$(pgrep -P "$nginx_pid" | head -1)
[ -n "$worker_pid" ] || fail "no nginx worker"
hz=$(getconf CLK_TCK)
worker_ticks() { awk '{ print $14 + $15 }' "/proc/$worker_pid/stat"; }

configs=(A G Gk H E Ec)
declare -A url args label
url[A]="http://127.0.0.1:$port_a/"
args[A]=""
label[A]="A no gate, return 200"
url[G]="http://127.0.0.1:$port_g/"
args[G]="X-Company-Id: $company"
label[G]="G plain gate, X-Company-Id"
url[Gk]="http://127.0.0.1:$port_g/"
args[Gk]="X-Company-Id: $company"
label[Gk]="Gk plain gate, X-Company-Id and the ES256 cookie (unused)"
url[H]="http://127.0.0.1:$port_t/"
args[H]="Cookie: pg_company=$hs_token"
label[H]="H gate, HS256 token (cache warm)"
url[E]="http://127.0.0.1:$port_t/"
args[E]="Cookie: pg_company=$es_token"
label[E]="E gate, ES256 token (cache warm)"
url[Ec]="http://127.0.0.1:$port_t/"
args[Ec]=""
label[Ec]="Ec gate, ES256, $cold_tokens tokens in turn (cache cold)"

say "throughput: $rounds rounds x ${#configs[@]} configs," \
    "wrk -t1 -c$conns -d${duration}s, $pinning"

cpu_ticks() { awk '/^cpu / { print $2+$3+$4+$5+$6+$7+$8+$9, $9 }' /proc/stat; }
read -r ticks0 steal0 < <(cpu_ticks)
load0=$(cut -d' ' -f1-3 /proc/loadavg)

declare -A rps rps_at cpu cpu_at
bad=""
for round in $(seq 1 "$rounds"); do
    order=("${configs[@]}")
    if [ $((round % 2)) = 0 ]; then
        order=()
        for ((i = ${#configs[@]} - 1; i >= 0; i--)); do
            order+=("${configs[$i]}")
        done
    fi
    line="round $round:"
    for cfg in "${order[@]}"; do
        out="$dir/wrk/$cfg-$round.txt"
        t0=$(worker_ticks)
        if [ "$cfg" = Ec ]; then
            "${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
                -s "$dir/cold.lua" "${url[$cfg]}" > "$out" 2>&1 \
                || fail "wrk failed for $cfg: $(cat "$out")"
        elif [ "$cfg" = Gk ]; then
            "${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
                -H "${args[$cfg]}" -H "Cookie: pg_company=$es_token" \
                "${url[$cfg]}" > "$out" 2>&1 \
                || fail "wrk failed for $cfg: $(cat "$out")"
        elif [ -n "${args[$cfg]}" ]; then
            "${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
                -H "${args[$cfg]}" "${url[$cfg]}" > "$out" 2>&1 \
                || fail "wrk failed for $cfg: $(cat "$out")"
        else
            "${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
                "${url[$cfg]}" > "$out" 2>&1 \
                || fail "wrk failed for $cfg: $(cat "$out")"
        fi
        t1=$(worker_ticks)
        r=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
        [ -n "$r" ] || fail "no Requests/sec from wrk for $cfg: $(cat "$out")"
        n=$(awk '/ requests in / { print $1 }' "$out")
        c=$(perl -e 'printf "%.2f", ($ARGV[1] - $ARGV[0]) * 1e6 / $ARGV[2]
                                    / $ARGV[3]' "$t0" "$t1" "$hz" "$n")
        cpu[$cfg]+="$c "
        cpu_at[$cfg,$round]=$c
        if grep -q 'exited on signal' "$dir/error.log"; then
            fail "an nginx worker died during $cfg round $round"
        fi
        if grep -q -E 'Non-2xx|Socket errors' "$out"; then
            bad+="$cfg round $round: $(grep -E 'Non-2xx|Socket errors' "$out" \
                  | tr '\n' ' ')"$'\n'
        fi
        rps[$cfg]+="$r "
        rps_at[$cfg,$round]=$r
        line+=" $cfg $r (${c}us)"
    done
    echo "$line"
done

read -r ticks1 steal1 < <(cpu_ticks)
load1=$(cut -d' ' -f1-3 /proc/loadavg)
steal=$(perl -e 'printf "%.1f", $ARGV[2] > $ARGV[0]
                     ? 100 * ($ARGV[3] - $ARGV[1]) / ($ARGV[2] - $ARGV[0]) : 0' \
             "$ticks0" "$steal0" "$ticks1" "$steal1")

declare -A med paired spread cpu_med
for cfg in "${configs[@]}"; do
    # shellcheck disable=SC2086 # a list of numbers
    med[$cfg]=$(median ${rps[$cfg]})
    # shellcheck disable=SC2086
    cpu_med[$cfg]=$(median ${cpu[$cfg]})
    ratios=""
    for round in $(seq 1 "$rounds"); do
        ratios+="$(ratio "${rps_at[$cfg,$round]}" "${rps_at[G,$round]}") "
    done
    # shellcheck disable=SC2086
    paired[$cfg]=$(perl -e 'printf "%.3f", $ARGV[0]' "$(median $ratios)")
    # shellcheck disable=SC2086
    spread[$cfg]=$(perl -e '@v = sort { $a <=> $b } @ARGV;
                            printf "%.2f-%.2f", $v[0], $v[-1]' $ratios)
done

log_bad=$(grep -c -E '\[(alert|crit|emerg)\]' "$dir/error.log" || true)

# ------------------------------------------------ instructions (callgrind)
declare -A instr
cg_configs=()
if [ "${TOKEN_CALLGRIND:-1}" != 0 ] && command -v valgrind > /dev/null; then
    kill -QUIT "$nginx_pid"
    wait "$nginx_pid" 2>/dev/null || true
    nginx_pid=""

    sed 's/^daemon off;/daemon off;\nmaster_process off;/' \
        "$dir/nginx.conf" > "$dir/callgrind.conf"

    # curl's config for Ec: each request the next cold token
    for n in 500 2500; do
        head -"$n" "$dir/cold-tokens.txt" | awk -v u="http://127.0.0.1:$port_t/" \
            '{ if (NR > 1) print "next"; print "url = \"" u "\"";
               print "header = \"Cookie: pg_company=" $0 "\"";
               print "output = \"/dev/null\"" }' > "$dir/cold-$n.curl"
    done

    # cg_run NAME N: nginx under callgrind, N requests of config NAME over
    # one connection; prints the instructions of the whole run
    cg_run() {
        local name=$1 n=$2 pid out="$dir/callgrind.$1.$2"
        valgrind --tool=callgrind --callgrind-out-file="$out" \
            /usr/sbin/nginx -p "$dir" -c "$dir/callgrind.conf" \
            > "$out.log" 2>&1 &
        pid=$!
        for _ in $(seq 300); do
            curl -s -o /dev/null "http://127.0.0.1:$port_a/" && break
            kill -0 "$pid" 2>/dev/null || fail "nginx under callgrind died"
            sleep 0.1
        done
        case $name in
            Ec) curl -s -K "$dir/cold-$n.curl" ;;
            G)  curl -s -o /dev/null -H "${args[G]}" \
                    "${url[G]}?[1-$n]" ;;
            Gk) curl -s -o /dev/null -H "${args[Gk]}" \
                    -H "Cookie: pg_company=$es_token" "${url[Gk]}?[1-$n]" ;;
            *)  curl -s -o /dev/null -H "${args[$name]}" \
                    "${url[$name]}?[1-$n]" ;;
        esac
        kill -QUIT "$pid"
        wait "$pid" 2>/dev/null || true
        sed -n 's/^summary: //p' "$out" | head -1
    }

    say "instructions per request (callgrind)"
    for cfg in G Gk H E Ec; do
        i1=$(cg_run "$cfg" 500)
        i2=$(cg_run "$cfg" 2500)
        [ -n "$i1" ] && [ -n "$i2" ] || fail "callgrind gave nothing for $cfg"
        instr[$cfg]=$(( (i2 - i1) / 2000 ))
        cg_configs+=("$cfg")
        echo "$cfg ${instr[$cfg]}"
    done
fi

# ------------------------------------------------------------------ summary
echo
echo "## company tokens benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- \
    | sed 's/^ *//'); nginx $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2);" \
     "$pinning; wrk -t1 -c$conns -d${duration}s, $rounds rounds interleaved;" \
     "CPU steal time during the runs: $steal%; loadavg before/after:" \
     "$load0 / $load1."
echo
echo "Module: sha256 $(sha256sum "$module" | cut -c1-16), built from git" \
     "$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown)."
echo
echo "| config | median req/s | ratio to G | per-round ratio to G: median (range) | ratio to Gk | worker CPU us/request (median) | G's CPU / this one's | Gk's CPU / this one's |"
echo "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"
for cfg in "${configs[@]}"; do
    echo "| ${label[$cfg]} | ${med[$cfg]}" \
         "| $(ratio "${med[$cfg]}" "${med[G]}")" \
         "| ${paired[$cfg]} (${spread[$cfg]})" \
         "| $(ratio "${med[$cfg]}" "${med[Gk]}") | ${cpu_med[$cfg]}" \
         "| $(ratio "${cpu_med[G]}" "${cpu_med[$cfg]}")" \
         "| $(ratio "${cpu_med[Gk]}" "${cpu_med[$cfg]}") |"
done
echo
echo "| measure | figure | target |"
echo "| --- | --- | --- |"
echo "| HS256-gated / plain gate, req/s (H/G; H/Gk, same bytes)" \
     "| $(ratio "${med[H]}" "${med[G]}"); $(ratio "${med[H]}" "${med[Gk]}") | >= 0.97 |"
echo "| ES256-gated, cache warm / plain gate, req/s (E/G; E/Gk)" \
     "| $(ratio "${med[E]}" "${med[G]}"); $(ratio "${med[E]}" "${med[Gk]}") | >= 0.97 |"
echo "| the same from the worker's CPU per request (G's / H's, G's / E's;" \
     "Gk's / H's, Gk's / E's)" \
     "| $(ratio "${cpu_med[G]}" "${cpu_med[H]}")," \
     "$(ratio "${cpu_med[G]}" "${cpu_med[E]}");" \
     "$(ratio "${cpu_med[Gk]}" "${cpu_med[H]}")," \
     "$(ratio "${cpu_med[Gk]}" "${cpu_med[E]}") | >= 0.97 |"
echo "| ES256, cache cold / plain gate (Ec/G), req/s | $(ratio "${med[Ec]}" "${med[G]}") | (what the cache saves) |"
if [ ${#cg_configs[@]} -gt 0 ]; then
    echo "| instructions per request, user space (callgrind): G, Gk, H, E, Ec" \
         "| ${instr[G]}, ${instr[Gk]}, ${instr[H]}, ${instr[E]}, ${instr[Ec]} | |"
    echo "| the same as ratios: Gk / H, Gk / E (the token's work), G / E" \
         "(and its cookie's bytes) | $(ratio "${instr[Gk]}" "${instr[H]}")," \
         "$(ratio "${instr[Gk]}" "${instr[E]}"), $(ratio "${instr[G]}" "${instr[E]}")" \
         "| |"
fi
echo "| one ES256 verification, cold (core) | $(core verify_es256_cold_us) us" \
     "(the first in a process: $(core verify_es256_first_us) us) | |"
echo "| one HS256 verification (core) | $(core verify_hs256_cold_us) us | |"
echo "| one cache hit: hash + compare of a $(core token_es256_bytes)-byte token" \
     "(core) | $(core cache_hit_ns) ns | |"
echo "| [alert]/[crit]/[emerg] lines in error.log | $log_bad | 0 |"
echo
echo "Requests/s per round (run order alternates), then the worker's CPU us"
echo "per request:"
echo
for cfg in "${configs[@]}"; do
    echo "- $cfg: ${rps[$cfg]% }"
done
echo
for cfg in "${configs[@]}"; do
    echo "- $cfg: ${cpu[$cfg]% }"
done
if [ -n "$bad" ]; then
    echo
    echo "WARNING: errors or non-2xx answers during the runs:"
    echo "$bad"
fi
