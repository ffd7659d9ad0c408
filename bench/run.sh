#!/bin/bash
# make bench: portal-gate's benchmarks, all on loopback, in one nginx.
#
#   A  location / { return 200 "ok\n"; }                     (plain)
#   B  A behind `portal_gate customer_portal;`, an allowed company
#   Br B with a company that is let in by the rollout bucket (not allowed)
#   C  no gate, `map $portal_flag_customer_portal $answer` + return
#   D  the peer: libnginx-mod-http-lua, a lua_shared_dict of the allowed
#      companies, checked by set_by_lua_block in the rewrite phase
#
# The snapshot has 20 production flags; customer_portal allows 10,000
# companies, rollout 25. Each config runs BENCH_ROUNDS rounds interleaved
# (A B Br C D, then D C Br B A, ...) of `wrk -t1 -cBENCH_CONNECTIONS
# -dBENCH_DURATION`; the median requests/s per config and the ratios to A
# are what we quote. Many short rounds rather than a few long ones: on a
# shared machine a slow spell of a few seconds then spoils one sample of
# each config, not the median. Then: PUT of a 100,000-company snapshot
# (~1 MB) into the 4 MiB zone, timed by curl; the zone's memory for 10k and
# 100k; and the output of build/bench-eval when it exists.
#
#   BENCH_ROUNDS=10 BENCH_DURATION=3 BENCH_CONNECTIONS=32 BENCH_PUTS=5
#   BENCH_KEEP=1     keep the scratch folder (nginx.conf, error.log, wrk output)
#   BENCH_ONLY=put   only the PUTs of the 100,000-company snapshot (and the
#                    answers checked before and after them): no bench-eval,
#                    no lua peer, no throughput rounds, none of the other
#                    benchmarks; prints its own short results block. For
#                    the baseline of issue 14 ("a full PUT of 100,000
#                    companies no slower than today"); two modules compare
#                    by alternating runs, each with its BENCH_MODULE.
#   BENCH_MODULE=build/ngx_http_portal_gate_module.so   the module to load
#   BENCH_ZONE=4m    the zone's size (portal_gate_zone)
#
# nginx runs with one worker on CPU 0 and wrk with one thread on CPU 1
# (taskset), so the two do not fight for a core. Everything lives in a
# scratch folder that is removed at the end, and everything started here is
# stopped, even on failure.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module=${BENCH_MODULE:-$top/build/ngx_http_portal_gate_module.so}
bench_eval="$top/build/bench-eval"
gen="$top/bench/gen-snapshot.pl"

rounds=${BENCH_ROUNDS:-10}
duration=${BENCH_DURATION:-3}
conns=${BENCH_CONNECTIONS:-32}
puts=${BENCH_PUTS:-5}
only=${BENCH_ONLY:-}
zone=${BENCH_ZONE:-4m}

case $only in
    ""|put) ;;
    *) echo "bench: BENCH_ONLY is put or nothing" >&2; exit 1 ;;
esac

lua_dir=/usr/lib/nginx/modules
lua_ndk="$lua_dir/ndk_http_module.so"
lua_mod="$lua_dir/ngx_http_lua_module.so"

for tool in /usr/sbin/nginx wrk curl perl; do
    if ! command -v "$tool" > /dev/null; then
        echo "bench: $tool is missing: run make bench" >&2
        exit 1
    fi
done

if [ ! -f "$module" ]; then
    echo "bench: $module is missing: run make module" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/portal-gate-bench.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/state" "$dir/tmp" "$dir/snapshots" "$dir/wrk"
if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$dir/state" "$dir/tmp"
fi

# nginx loads a private copy, so that the figures belong to the module that
# was there when the run began, whatever is rebuilt meanwhile
cp "$module" "$dir/ngx_http_portal_gate_module.so"
module_src=$module
module="$dir/ngx_http_portal_gate_module.so"

nginx_pid=""

stop() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        wait "$nginx_pid" 2>/dev/null || true
    fi
    if [ -n "${BENCH_KEEP:-}" ]; then
        echo "bench: kept $dir (BENCH_KEEP)" >&2
    else
        rm -rf "$dir"
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

say() { echo "== $*"; }

# nginx on CPU 0, wrk and curl on CPU 1, when there are two CPUs to pin to
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

# ---------------------------------------------------------------- bench-eval
eval_out=""
if [ "$only" = put ]; then
    eval_out="(BENCH_ONLY=put: skipped)"
elif [ -x "$bench_eval" ]; then
    say "build/bench-eval"
    if eval_out=$("${pin_client[@]}" "$bench_eval" 2>&1); then
        echo "$eval_out"
    else
        rc=$?
        echo "$eval_out"
        eval_out="(build/bench-eval failed: exit status $rc)"
        echo "bench: $eval_out" >&2
    fi
else
    eval_out="(build/bench-eval does not exist: skipped)"
    say "$eval_out"
fi

# --------------------------------------------------------------- free ports
read -r port_a port_b port_c port_d port_api port_api_buf < <(perl \
    -MIO::Socket::INET -e '
    my @s = map {
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                              Listen => 1, ReuseAddr => 1)
            or die "bench: no free port: $!\n"
    } 1 .. 6;
    print join(" ", map { $_->sockport } @s), "\n"')

# ------------------------------------------------------- can lua load here?
lua=0
lua_note=""
if [ "$only" = put ]; then
    lua_note="BENCH_ONLY=put"
elif [ -f "$lua_ndk" ] && [ -f "$lua_mod" ]; then
    cat > "$dir/lua-probe.conf" <<EOF
load_module $lua_ndk;
load_module $lua_mod;
load_module $module;
pid $dir/lua-probe.pid;
error_log $dir/lua-probe.log notice;
events { }
http {
    lua_shared_dict probe 1m;
    init_by_lua_block { ngx.shared.probe:set("x", true) }
}
EOF
    if probe=$(/usr/sbin/nginx -t -p "$dir" -c "$dir/lua-probe.conf" 2>&1)
    then
        lua=1
    else
        lua_note="the lua module does not load into this nginx: $(echo \
            "$probe" | grep -m1 -E 'emerg|error' || echo "$probe" | head -1)"
    fi
else
    lua_note="$lua_mod or $lua_ndk is missing (libnginx-mod-http-lua)"
fi

if [ "$lua" = 1 ]; then
    say "D (lua peer): $lua_mod loads"
else
    say "D (lua peer) SKIPPED: $lua_note"
fi

# ---------------------------------------------------------------- snapshots
say "generating snapshots"
perl "$gen" 1 10000 > "$dir/snapshots/10k.json"
for i in $(seq 1 $((2 * puts))); do
    perl "$gen" $((i + 1)) 100000 > "$dir/snapshots/100k-$i.json"
done
size_10k=$(stat -c %s "$dir/snapshots/10k.json")
size_100k=$(stat -c %s "$dir/snapshots/100k-1.json")
echo "10k snapshot: $size_10k bytes, 100k snapshot: $size_100k bytes"

# ------------------------------------------------------------------- nginx
lua_load=""
lua_http=""
lua_server=""
if [ "$lua" = 1 ]; then
    lua_load="load_module $lua_ndk;
load_module $lua_mod;"
    # the same 10,000 allowed companies as the snapshot: 1000000..1009999
    lua_http="lua_shared_dict portal_companies 8m;
    init_by_lua_block {
        local dict = ngx.shared.portal_companies
        for i = 0, 9999 do
            local ok, err = dict:set(tostring(1000000 + i), true)
            if not ok then error(\"lua_shared_dict: \" .. err) end
        end
    }"
    # set_by_lua runs inside the rewrite module's script, in order with
    # `return`; rewrite_by_lua and access_by_lua would run after `return`
    # and never gate (the trap DESIGN.md describes for the access phase)
    lua_server="server {
        listen 127.0.0.1:$port_d;
        location / {
            set_by_lua_block \$lua_gate {
                local id = ngx.var.http_x_company_id
                if id and ngx.shared.portal_companies:get(id) then
                    return \"1\"
                end
                return \"0\"
            }
            if (\$lua_gate != 1) {
                return 404;
            }
            return 200 \"ok\\n\";
        }
    }"
fi

cat > "$dir/nginx.conf" <<EOF
$lua_load
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
    # fewer reconnects during a run: less noise, the same for every config
    keepalive_requests 1000000;

    portal_gate_zone zone=portal_gate:$zone state=$dir/state/state.json;
    portal_gate_company \$http_x_company_id;

    map \$portal_flag_customer_portal \$answer {
        1        "v2";
        default  "legacy";
    }

    $lua_http

    server {
        listen 127.0.0.1:$port_a;
        location / {
            return 200 "ok\n";
        }
    }

    server {
        listen 127.0.0.1:$port_b;
        location / {
            portal_gate customer_portal;
            return 200 "ok\n";
        }
    }

    server {
        listen 127.0.0.1:$port_c;
        location / {
            return 200 "\$answer\n";
        }
    }

    $lua_server

    # the API as production has it: default client_body_buffer_size, so a
    # 1 MB body spills into a temp file
    server {
        listen 127.0.0.1:$port_api;
        location /portal-gate/ {
            portal_gate_api;
        }
    }

    # the same API with the body kept in memory, for comparison
    server {
        listen 127.0.0.1:$port_api_buf;
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
api_buf="http://127.0.0.1:$port_api_buf/portal-gate"

for _ in $(seq 100); do
    if curl -s -o /dev/null "$api/status"; then
        break
    fi
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
        echo "bench: nginx did not start:" >&2
        cat "$dir/error.log" >&2 || true
        exit 1
    fi
    sleep 0.1
done

# PUT FILE [API]: prints "STATUS TIME_TOTAL"; the body goes to $dir/put.out
put() {
    "${pin_client[@]}" curl -s -o "$dir/put.out" \
        -w '%{http_code} %{time_total}\n' -X PUT \
        -H 'Content-Type: application/json' \
        --data-binary "@$1" "${2:-$api}/snapshot"
}

# zone_field NAME: the zone's NAME from GET status
zone_field() {
    curl -s "$api/status" | perl -MJSON::PP -0 -ne \
        'print JSON::PP->new->decode($_)->{zone}{'"$1"'}, "\n"'
}

fail() {
    echo "bench: $*" >&2
    echo "--- error.log" >&2
    tail -20 "$dir/error.log" >&2 || true
    exit 1
}

used_empty=$(zone_field used)

say "PUT the 10,000-company snapshot (revision 1)"
read -r code secs < <(put "$dir/snapshots/10k.json")
[ "$code" = 200 ] || fail "PUT 10k answered $code: $(cat "$dir/put.out")"
used_10k=$(zone_field used)
snap_10k=$(zone_field snapshot_bytes)
zone_size=$(zone_field size)
echo "applied in ${secs}s; zone used $used_10k of $zone_size," \
     "snapshot_bytes $snap_10k"

# a company that is not allowed but inside the 25% bucket (bucket < 2500)
rollout_company=""
for id in $(seq 2000000 2000200); do
    answer=$(curl -s "$api/eval?flag=customer_portal&company=$id")
    if [[ $answer == *'"reason":"rollout"'* && $answer == *'"decision":"on"'* ]]
    then
        rollout_company=$id
        echo "rollout company $id: $answer"
        break
    fi
done
[ -n "$rollout_company" ] || fail "no company found in the rollout bucket"

out_company=""
for id in $(seq 3000000 3000200); do
    answer=$(curl -s "$api/eval?flag=customer_portal&company=$id")
    if [[ $answer == *'"decision":"off"'* ]]; then
        out_company=$id
        break
    fi
done
[ -n "$out_company" ] || fail "no company found outside the rollout bucket"

allowed_company=1000000

# check URL HEADER-COMPANY EXPECTED-STATUS [EXPECTED-BODY]
check() {
    local got
    if [ $# -ge 4 ]; then
        got=$(curl -s -w ' %{http_code}' -H "X-Company-Id: $2" "$1" \
              | tr -d '\n')
    else
        got=$(curl -s -o /dev/null -w ' %{http_code}' -H "X-Company-Id: $2" "$1")
    fi
    if [ "$got" != "${4:-} $3" ]; then
        fail "$1 with company $2: expected \"$4 $3\", got \"$got\""
    fi
}

say "checking the answers"
check "http://127.0.0.1:$port_a/" "$allowed_company" 200 ok
check "http://127.0.0.1:$port_b/" "$allowed_company" 200 ok
check "http://127.0.0.1:$port_b/" "$rollout_company" 200 ok
check "http://127.0.0.1:$port_b/" "$out_company" 404
check "http://127.0.0.1:$port_c/" "$allowed_company" 200 v2
check "http://127.0.0.1:$port_c/" "$rollout_company" 200 v2
check "http://127.0.0.1:$port_c/" "$out_company" 200 legacy
if [ "$lua" = 1 ]; then
    check "http://127.0.0.1:$port_d/" "$allowed_company" 200 ok
    check "http://127.0.0.1:$port_d/" "$out_company" 404
fi
echo "A, B, C$( [ "$lua" = 1 ] && echo ", D") answer as expected" \
     "(B 404s a company outside the rollout, C answers legacy to it)"

# ------------------------------------------------------------ throughput
# (not with BENCH_ONLY=put)
if [ "$only" != put ]; then
    configs=(A B Br C)
    declare -A url company label
    url[A]="http://127.0.0.1:$port_a/"; company[A]=$allowed_company
    label[A]="A plain return 200"
    url[B]="http://127.0.0.1:$port_b/"; company[B]=$allowed_company
    label[B]="B portal_gate, allowed company"
    url[Br]="http://127.0.0.1:$port_b/"; company[Br]=$rollout_company
    label[Br]="B portal_gate, rollout-bucket company"
    url[C]="http://127.0.0.1:$port_c/"; company[C]=$allowed_company
    label[C]="C map \$portal_flag_customer_portal"
    if [ "$lua" = 1 ]; then
        configs+=(D)
        url[D]="http://127.0.0.1:$port_d/"; company[D]=$allowed_company
        label[D]="D lua_shared_dict (set_by_lua_block)"
    fi

    say "throughput: $rounds rounds x ${#configs[@]} configs," \
        "wrk -t1 -c$conns -d${duration}s, $pinning"

    # the host's steal time (cpu line of /proc/stat: user nice system idle
    # iowait irq softirq steal), to tell a noisy neighbour from a real change
    cpu_ticks() { awk '/^cpu / { print $2+$3+$4+$5+$6+$7+$8+$9, $9 }' /proc/stat; }
    read -r ticks0 steal0 < <(cpu_ticks)
    load0=$(cut -d' ' -f1-3 /proc/loadavg)

    declare -A rps rps_at
    bad=""
    for round in $(seq 1 "$rounds"); do
        # odd rounds run A B Br C D, even rounds D C Br B A: a drift in the
        # machine's speed during a round then weighs on every config alike
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
            "${pin_client[@]}" wrk -t1 -c"$conns" -d"${duration}s" \
                -H "X-Company-Id: ${company[$cfg]}" "${url[$cfg]}" > "$out" 2>&1 \
                || fail "wrk failed for $cfg: $(cat "$out")"
            r=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
            [ -n "$r" ] || fail "no Requests/sec from wrk for $cfg: $(cat "$out")"
            if grep -q 'exited on signal' "$dir/error.log"; then
                fail "an nginx worker died during $cfg round $round:" \
                     "$(grep -m1 'exited on signal' "$dir/error.log")"
            fi
            perl -e 'exit !($ARGV[0] > 0)' "$r" \
                || fail "$cfg round $round served nothing: $(cat "$out")"
            if grep -q -E 'Non-2xx|Socket errors' "$out"; then
                bad+="$cfg round $round: $(grep -E 'Non-2xx|Socket errors' "$out" \
                      | tr '\n' ' ')"$'\n'
            fi
            rps[$cfg]+="$r "
            rps_at[$cfg,$round]=$r
            line+=" $cfg $r"
        done
        echo "$line"
    done

    read -r ticks1 steal1 < <(cpu_ticks)
    load1=$(cut -d' ' -f1-3 /proc/loadavg)
    steal=$(perl -e 'printf "%.1f", $ARGV[2] > $ARGV[0]
                         ? 100 * ($ARGV[3] - $ARGV[1]) / ($ARGV[2] - $ARGV[0]) : 0' \
                 "$ticks0" "$steal0" "$ticks1" "$steal1")
    echo "CPU steal time during the runs: $steal%"

    if [ -n "$bad" ]; then
        echo "WARNING: errors or non-2xx answers during the runs:"
        echo -n "$bad"
    fi

    ratio() {
        perl -e 'printf "%.3f", $ARGV[0] / $ARGV[1]' "$1" "$2"
    }

    # the quoted figures: median req/s per config and their ratio to A's; as a
    # cross-check, the median of the per-round ratios (each config against the
    # A of the same round) and their range
    declare -A med paired spread
    for cfg in "${configs[@]}"; do
        # shellcheck disable=SC2086 # a list of numbers
        med[$cfg]=$(median ${rps[$cfg]})
        ratios=""
        for round in $(seq 1 "$rounds"); do
            ratios+="$(ratio "${rps_at[$cfg,$round]}" "${rps_at[A,$round]}") "
        done
        # shellcheck disable=SC2086
        paired[$cfg]=$(perl -e 'printf "%.3f", $ARGV[0]' "$(median $ratios)")
        # shellcheck disable=SC2086
        spread[$cfg]=$(perl -e '@v = sort { $a <=> $b } @ARGV;
                                printf "%.2f-%.2f", $v[0], $v[-1]' $ratios)
    done
fi

# ------------------------------------------------------------- PUT 100k
put_series() {
    local base=$1 target=$2 times="" code secs i
    for i in $(seq 1 "$puts"); do
        read -r code secs < <(put "$dir/snapshots/100k-$((base + i)).json" \
                                  "$target")
        [ "$code" = 200 ] \
            || fail "PUT 100k (file $((base + i))) answered $code:" \
                    "$(cat "$dir/put.out")"
        times+="$secs "
    done
    echo "$times"
}

# worker_cpu: CPU time (ns) of nginx's worker so far, every thread's (the
# state file is written in a thread): what a PUT costs, which the
# machine's neighbours swing much less than its time
worker_cpu() {
    perl -e '
        my $t = 0;
        for my $f (glob "/proc/[0-9]*/stat") {
            open my $h, "<", $f or next;
            my $st = <$h> // next;
            my ($pid, $ppid) = $st =~ /^(\d+) .*\) \S+ (\d+)/s or next;
            next unless $ppid == $ARGV[0];
            for my $s (glob "/proc/$pid/task/*/schedstat") {
                open my $g, "<", $s or next;
                $t += (split " ", scalar <$g>)[0];
            }
        }
        print "$t\n";
    ' "$nginx_pid"
}
# cpu_per_put NS0 NS1: ms per PUT of the series
cpu_per_put() { perl -e 'printf "%.1f", ($ARGV[1] - $ARGV[0]) / 1e6 / $ARGV[2]' "$1" "$2" "$puts"; }

put_load0=$(cut -d' ' -f1-3 /proc/loadavg)
say "PUT the 100,000-company snapshot, $puts times, increasing revision," \
    "default client_body_buffer_size (body in a temp file)"
cpu0=$(worker_cpu)
put_times=$(put_series 0 "$api")
put_cpu=$(cpu_per_put "$cpu0" "$(worker_cpu)")
echo "time_total (s): $put_times"
echo "worker CPU per PUT (ms): $put_cpu"
# shellcheck disable=SC2086
put_med=$(median $put_times)

# the first gated request after a PUT copies the new snapshot into the
# worker (one memcpy of the blob under the slab mutex); the next one does not
first_req=$(curl -s -o /dev/null -w '%{time_total}' \
                 -H "X-Company-Id: $allowed_company" "http://127.0.0.1:$port_b/")
next_req=$(curl -s -o /dev/null -w '%{time_total}' \
                -H "X-Company-Id: $allowed_company" "http://127.0.0.1:$port_b/")
echo "first gated request after the PUT: ${first_req}s, the next: ${next_req}s"

used_100k=$(zone_field used)
snap_100k=$(zone_field snapshot_bytes)
echo "zone used $used_100k of $zone_size, snapshot_bytes $snap_100k"

say "the same with client_body_buffer_size 2m (body in memory)"
cpu0=$(worker_cpu)
put_buf_times=$(put_series "$puts" "$api_buf")
put_buf_cpu=$(cpu_per_put "$cpu0" "$(worker_cpu)")
echo "time_total (s): $put_buf_times"
echo "worker CPU per PUT (ms): $put_buf_cpu"
# shellcheck disable=SC2086
put_buf_med=$(median $put_buf_times)

status_100k=$(curl -s "$api/status")
echo "GET status: $status_100k"

revision=$(echo "$status_100k" | perl -MJSON::PP -0 -ne \
    'print JSON::PP->new->decode($_)->{revision}')
[ "$revision" = $((2 * puts + 1)) ] \
    || fail "revision is $revision after the PUTs, expected $((2 * puts + 1))"

# a 100k snapshot still gates: the first allowed company, and one beyond 10k
check "http://127.0.0.1:$port_b/" 1099999 200 ok
check "http://127.0.0.1:$port_b/" "$out_company" 404

log_bad=$(grep -c -E '\[(alert|crit|emerg)\]' "$dir/error.log" || true)
put_load1=$(cut -d' ' -f1-3 /proc/loadavg)

ms() { perl -e 'printf "%.1f", $ARGV[0] * 1000' "$1"; }
ms_list() { for t in "$@"; do printf '%s ' "$(ms "$t")"; done; }

if [ "$only" = put ]; then
    # shellcheck disable=SC2086 # lists of numbers
    cat <<EOF

## A full PUT of 100,000 companies, BENCH_ONLY=put ($(date -u '+%Y-%m-%d %H:%M UTC'))

$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); nginx $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2); $pinning; run at nice $(awk '{ print $19 }' /proc/$$/stat).
Module: $module_src, sha256 $(sha256sum "$module" | cut -c1-16); bench scripts from git $(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown). Zone $zone with a state file (write + fsync at every PUT). Snapshot $size_100k B (gen-snapshot.pl, 20 + 20 flags, customer_portal allows 100,000). $puts PUTs per series, each replacing a 100k snapshot (the first replaces the 10k one), curl's time_total; loadavg before/after the PUTs: $put_load0 / $put_load1.

| API location | times (ms), in order | median | worker CPU per PUT (every thread) |
| --- | --- | ---: | ---: |
| default client_body_buffer_size: the body spills into a temp file | $(ms_list $put_times)| **$(ms "$put_med") ms** | $put_cpu ms |
| client_body_buffer_size 2m: the body stays in memory | $(ms_list $put_buf_times)| $(ms "$put_buf_med") ms | $put_buf_cpu ms |

Zone used after the 100k PUTs: $used_100k B of $zone_size (snapshot_bytes $snap_100k). First gated request after a PUT: $(ms "$first_req") ms (next: $(ms "$next_req") ms). [alert]/[crit]/[emerg] lines in error.log: $log_bad.
EOF
    exit 0
fi

# ------------------------------------------------------------------ summary
per_company=$(perl -e 'printf "%.1f", ($ARGV[0] - $ARGV[1]) / 90000' \
                   "$snap_100k" "$snap_10k")
fixed=$(perl -e 'printf "%d", $ARGV[0] - 100000 * ($ARGV[0] - $ARGV[1]) / 90000' \
             "$snap_100k" "$snap_10k")
# The blob's layout (include/pg_blob.h) gives the rule: per list, each
# company costs 5 + its id's length, plus a table of 4-byte slots, a power
# of two >= 2 * count. Check it on both snapshots (ids here are 7 bytes):
# what is left over is the same fixed part (flags, names, small lists).
list_bytes() {
    perl -e '$n = $ARGV[0]; $s = 1; $s *= 2 while $s < 2 * $n;
             print $n * (5 + 7) + 4 * $s' "$1"
}
rest_10k=$((snap_10k - $(list_bytes 10000)))
rest_100k=$((snap_100k - $(list_bytes 100000)))
# two 100k blobs side by side in the zone (a swap keeps the old blob until
# the new one is in), or must the swap free the old one first?
if [ $((used_empty + 2 * (used_100k - used_empty))) -le "$zone_size" ]; then
    two_fit="yes"
else
    two_fit="no: a swap frees the old blob first"
fi
used_per_company=$(perl -e 'printf "%.1f", ($ARGV[0] - $ARGV[1]) / 90000' \
                        "$used_100k" "$used_10k")
mib() { perl -e 'printf "%.2f", $ARGV[0] / 1048576' "$1"; }

echo
echo "## portal-gate benchmark ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- \
    | sed 's/^ *//'); nginx $(/usr/sbin/nginx -v 2>&1 | cut -d/ -f2);" \
     "$pinning; wrk -t1 -c$conns -d${duration}s, $rounds rounds interleaved;" \
     "CPU steal time during the runs: $steal%."
echo
echo "Module: sha256 $(sha256sum "$module" | cut -c1-16), built from git" \
     "$(git -C "$top" describe --always --dirty 2>/dev/null || echo unknown);" \
     "loadavg before/after the runs: $load0 / $load1."
echo
echo "| config | median req/s | ratio to A | per-round ratio: median (range) |"
echo "| --- | ---: | ---: | --- |"
for cfg in "${configs[@]}"; do
    echo "| ${label[$cfg]} | ${med[$cfg]} | $(ratio "${med[$cfg]}" "${med[A]}")" \
         "| ${paired[$cfg]} (${spread[$cfg]}) |"
done
if [ "$lua" != 1 ]; then
    echo "| D lua peer | skipped | | $lua_note |"
fi
echo
echo "| measure | figure | target |"
echo "| --- | --- | --- |"
echo "| gate overhead B/A (allowed) | $(ratio "${med[B]}" "${med[A]}") | >= 0.97 |"
echo "| gate overhead B/A (rollout path) | $(ratio "${med[Br]}" "${med[A]}") | >= 0.97 |"
# what bench-eval predicts: one evaluation per request, on top of A's cost
eval_ns=$(echo "$eval_out" | awk '$1 == "eval_allow_10k_ns" { print $2 }')
if [ -n "$eval_ns" ]; then
    echo "| B/A predicted from eval_allow_10k_ns ($eval_ns ns) and A's" \
         "$(perl -e 'printf "%.1f", 1e6 / $ARGV[0]' "${med[A]}") us/request" \
         "| $(perl -e 'printf "%.4f", 1 / (1 + $ARGV[0] * 1e-9 * $ARGV[1])' \
                   "$eval_ns" "${med[A]}") | |"
fi
echo "| \$portal_flag_ routing C/A | $(ratio "${med[C]}" "${med[A]}") | |"
if [ "$lua" = 1 ]; then
    echo "| lua peer D/A | $(ratio "${med[D]}" "${med[A]}") | |"
fi
echo "| PUT 100k companies ($size_100k B), temp-file body, median of $puts" \
     "| $(ms "$put_med") ms | < 200 ms |"
echo "| PUT 100k companies, client_body_buffer_size 2m, median of $puts" \
     "| $(ms "$put_buf_med") ms | < 200 ms |"
echo "| zone used, 10k snapshot | $used_10k B of $zone_size" \
     "(snapshot_bytes $snap_10k) | |"
echo "| zone used, 100k snapshot | $used_100k B of $zone_size" \
     "($(mib "$used_100k") MiB; snapshot_bytes $snap_100k) | 4 MiB zone holds 100k |"
echo "| snapshot bytes per company (10k -> 100k, 7-byte ids) | $per_company B" \
     "+ $fixed B fixed | |"
echo "| zone used per company (10k -> 100k) | $used_per_company B | |"
echo "| zone used, empty (slab pool's own pages) | $used_empty B | |"
echo "| layout rule: n * (5 + id length) + 4 * pow2(>= 2n) per list;" \
     "fixed part left over at 10k / 100k | $rest_10k B / $rest_100k B | equal |"
echo "| two 100k snapshots side by side in the $(mib "$zone_size") MiB zone" \
     "| $two_fit | |"
echo "| first gated request after a 100k PUT (worker copies the blob)" \
     "| $(ms "$first_req") ms (next: $(ms "$next_req") ms) | |"
echo "| [alert]/[crit]/[emerg] lines in error.log | $log_bad | 0 |"
echo
echo "PUT times (s), temp-file body: $put_times"
echo "PUT times (s), in-memory body: $put_buf_times"
echo
echo "Requests/s per round (run order alternates):"
echo
for cfg in "${configs[@]}"; do
    echo "- $cfg: ${rps[$cfg]% }"
done
if [ -n "$bad" ]; then
    echo
    echo "WARNING: errors or non-2xx answers during the runs:"
    echo "$bad"
fi
echo
echo "build/bench-eval:"
echo
echo '```'
echo "$eval_out"
echo '```'

# ------------------------------------------------- kill-switch propagation
# its own scratch folder, redis-server, 3 edges and portal-gated; it prints
# its own results block (PROP_* knobs: see its header)
echo
"$top/bench/propagation.sh"

# ----------------------------------- kill switch with hung edges (issue 7)
# 3 hung edges, 3 healthy ones and a broken value; its own results block
# (HUNG_* knobs: see its header)
echo
"$top/bench/hung-edges.sh"

# --------------------------------- break-glass kill --direct (issue 8)
# 3 edges, Redis and portal-gated down; its own results block (DIRECT_*
# knobs: see its header)
echo
"$top/bench/direct-kill.sh"

# ------------------------- staging certificates against pebble (issue 9)
# first issuance beside certbot, HTTPS under wrk while the pair rotates,
# kill propagation with orders in flight; its own results block (CERTS_*
# knobs: see its header)
echo
"$top/bench/certs.sh"
