#!/bin/bash
# make demo: the rollout of the customer portal, end to end, on loopback,
# under a scratch folder:
#
#   redis-server     the store: flags, audit log, change channel
#   nginx "edge-a"   production and staging vhosts, API on a unix socket;
#                    the staging vhost on HTTPS too
#   nginx "edge-b"   the same (HTTP only), as a second edge
#   portal-gated     pushes every change in Redis to both edges, and gets
#                    the staging vhost's certificate from pebble
#   pebble           an ACME server (Debian's, for testing), with
#                    pebble-challtestsrv as its DNS (tools/pebble.sh)
#
# portal-gatectl seeds the scenario (below), then the demo prints the
# commands of each phase, ready to paste, and follows portal-gated's log.
# The certificate: portal-gated writes a self-signed placeholder at start
# (so that edge-a can start), then orders staging.portal.example.test from
# pebble; pebble checks http-01 on edge-a, which answers from its zone
# (portal_gate_acme_challenge on); the pair is installed and edge-a
# reloaded. Without pebble (not installed, and make demo could not install
# it) the demo says so and runs the rest.
#
#   DEMO_PORT=8080   base port: edge-a's vhosts on it, edge-b's on +1,
#                    Redis on +2, edge-a's staging HTTPS on +3, pebble on
#                    +4 (its management API, with its root, on +5), its
#                    DNS on +6 (TCP and UDP; management +7), portal-gated's
#                    /metrics, /healthz and status page on +8; the APIs are
#                    unix sockets: no port
#   DEMO_ONCE=1      run the printed checks (every phase, the kill switch
#                    with --wait, HTTPS verified against pebble's root and
#                    a renewal), then stop; t/60-examples.t does
#   PORTAL_GATECTL, PORTAL_GATED
#                    other builds of the controller (the tests use the
#                    ASan ones that `make test` builds)
#
# Ctrl-C, or any exit, stops everything it started and removes the
# scratch folder. So does kill -TERM: a demo that a script starts in the
# background (cmd &, no job control) ignores SIGINT, and bash cannot trap
# a signal ignored on entry.

set -euo pipefail

# The traps come first: a SIGINT that comes before them, while the shell
# waits for a command, is lost (bash exits on it only if that command dies
# of it too).
#
# A trap runs cleanup where the signal finds the shell, perhaps inside a
# function whose output goes to seed.log or /dev/null: cleanup writes to
# the demo's own stdout and stderr, kept here on 3 and 4. The services do
# not get these (3>&- 4>&-): a reader of the demo's output (a test) must
# not wait on a stray process.
exec 3>&1 4>&2

dir=""      # the scratch folder, once made
names=()    # what it started, in order: stopped in reverse
pids=()
logs=()     # where each logs, to show when it exits badly
term_ok=()  # the status it exits with on TERM: 0, but pebble's is 143

# Alive, and not a zombie that only waits to be reaped.
running() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# TERM to everything, newest first (the daemon before the edges it pushes
# to, Redis last); KILL what is still running after 5 s; reap each, so that
# no nginx worker is left when the folder goes. Each stops with status 0 on
# TERM (or INT), pebble with 143 (it does not catch TERM): any other status
# is shown with its log, before the folder and the log go, and makes the
# demo's own status 1.
cleanup() {
    local rc=$? i n pid alive status list="" bad=0
    set +e
    exec 1>&3 2>&4
    trap - INT TERM HUP
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null
    done
    for ((n = 0; n < 100; n++)); do
        alive=0
        for pid in "${pids[@]}"; do
            running "$pid" && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.05
    done
    for i in "${!pids[@]}"; do
        if running "${pids[i]}"; then
            echo "demo: ${names[i]} (pid ${pids[i]}) ignored TERM: KILL" >&2
            kill -KILL "${pids[i]}" 2>/dev/null
        fi
        wait "${pids[i]}" 2>/dev/null
        status=$?
        if [ "$status" != 0 ] && [ "$status" != "${term_ok[i]}" ] \
           && [ -n "${logs[i]}" ]; then
            echo "demo: ${names[i]} (pid ${pids[i]}) exited with status" \
                 "$status; the end of ${logs[i]}:" >&2
            tail -n 20 "${logs[i]}" >&2
            bad=1
        fi
    done
    [ -n "$dir" ] || return
    rm -rf "$dir"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        list+="${list:+, }${names[i]} (pid ${pids[i]})"
    done
    echo "demo: stopped ${list:-nothing}; removed $dir"
    if [ "$bad" = 1 ] && [ "$rc" = 0 ]; then
        exit 1
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
gatectl=${PORTAL_GATECTL:-$top/build/portal-gatectl}
gated=${PORTAL_GATED:-$top/build/portal-gated}

port=${DEMO_PORT:-8080}
if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || [ "$port" -gt 65527 ]; then
    echo "demo: DEMO_PORT=$port: expected a port from 1 to 65527" >&2
    exit 1
fi
declare -A edge_port=([edge-a]=$port [edge-b]=$((port + 1)))
declare -A edge_pid=()
redis_port=$((port + 2))
redis_url="redis://127.0.0.1:$redis_port/0"
https_port=$((port + 3))        # edge-a's staging vhost on HTTPS
http_url="http://127.0.0.1:$((port + 8))"   # portal-gated's listen

domain=portal.example.test      # production; staging is staging.$domain
cert_name=staging.$domain       # its certificate, from pebble
pilots=(1001 1002)              # phase 0: the first pilot companies
more_pilots=(1003 1004)         # phase 1
# phase 2, PCT:COMPANY: a company that the rollout takes in at PCT (its
# bucket for customer_portal is 95, 1459, 4121); company 42 (bucket 7541)
# waits for phase 3
phase2=(10:10 25:13 50:14)
late=42
subs=(calls appointments crm services staff analytics)  # customer_portal_*

for f in "$module" "$gatectl" "$gated"; do
    if [ ! -f "$f" ]; then
        echo "demo: $f is missing: run make" >&2
        exit 1
    fi
done

# shellcheck source-path=SCRIPTDIR source=pebble.sh
. "$top/tools/pebble.sh"
certs=1
certs_skipped=""
if ! pebble_available; then
    certs=0
    certs_skipped="$pebble_error; make demo installs it when run as root"
fi

# The demo's own store, prefix and environment are given on every command
# line: a PORTAL_GATE_* variable of the caller must never send a demo write
# to a real Redis.
unset PORTAL_GATE_REDIS PORTAL_GATE_PREFIX PORTAL_GATE_ENV

# /tmp rather than $TMPDIR: a unix socket's path is limited to 107 bytes.
dir=$(mktemp -d /tmp/portal-gate-demo.XXXXXX)
# nginx's workers run as nobody when the master is root: they must be able
# to enter the folder (and write their state and temp folders, below).
chmod 755 "$dir"
mkdir -m 700 "$dir/run"         # the API sockets: the folder guards them
mkdir "$dir/redis"
gated_conf="$dir/portal-gated.conf"
gated_log="$dir/portal-gated.log"
cert_dir="$dir/certs/$cert_name"

# started NAME PID [LOG [TERM_STATUS]]
started() {
    names+=("$1")
    pids+=("$2")
    logs+=("${3:-}")
    term_ok+=("${4:-0}")
}

# wait_for PID TEST...: until TEST succeeds, at most 5 s; gives up at once
# if PID has exited (a port in use, a bad config).
wait_for() {
    local pid=$1 n
    shift
    for ((n = 0; n < 100; n++)); do
        running "$pid" || return 1
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    return 1
}

# failed WHAT... LOG: say what did not start, with the end of its log, and
# exit 1. cleanup does not show that log a second time.
failed() {
    local i log=${*: -1}
    echo "demo: ${*:1:$#-1}; its log:" >&2
    tail -n 20 "$log" >&2 2>/dev/null || true
    for i in "${!logs[@]}"; do
        [ "${logs[i]}" != "$log" ] || logs[i]=""
    done
    exit 1
}
port_hint="a port in use? try DEMO_PORT=9090 make demo"

# A command as it can be pasted into a shell: an argument that has
# characters a shell would read is single-quoted.
shell_words() {
    local a out=()
    for a in "$@"; do
        if [[ $a =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=("$a")
        else
            out+=("'${a//\'/\'\\\'\'}'")
        fi
    done
    echo "${out[*]}"
}

# portal-gatectl on this demo's store; -c adds the edges for status and
# --wait.
ctl() {
    "$gatectl" -r "$redis_url" -c "$gated_conf" "$@"
}
ctl_words() {
    shell_words "$gatectl" -r "$redis_url" -c "$gated_conf" "$@"
}

# ---- Redis

# The answer must come from our redis-server, not from another one that
# holds the port: the demo writes to it.
redis_ours() {
    local info
    info=$(redis-cli -h 127.0.0.1 -p "$redis_port" info server) \
        && [[ $info == *$'\n'"process_id:$redis_pid"$'\r'* ]]
}

start_redis() {
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
                 --save '' --appendonly no --daemonize no \
                 --logfile "$dir/redis/redis.log" \
                 </dev/null >/dev/null 3>&- 4>&- &
    redis_pid=$!
    started redis-server "$redis_pid" "$dir/redis/redis.log"
}

# ---- the edges

# write_vhost EDGE ENV HOST [default_server]: one vhost of an edge. Each
# answer names the edge, the environment, the location, which application
# would serve it and why, so a curl shows the whole decision.
write_vhost() {
    local edge=$1 env=$2 host=$3 default=${4:-} sub
    local why='[company=$portal_gate_company'
    why+=' $portal_gate_flag=$portal_gate_decision $portal_gate_reason]'

    cat <<EOF

    server {
        listen 127.0.0.1:${edge_port[$edge]}${default:+ $default};
        server_name $host;
        portal_gate_env $env;
EOF
    [ "$env" = staging ] && staging_certs "$edge"
    cat <<EOF

        location / {
            return 200 "$edge $env \$uri -> legacy application\n";
        }

        # The portal: companies without the flag get the legacy pages.
        location /portal/ {
            portal_gate customer_portal off=@legacy;
            return 200 "$edge $env \$uri -> portal v2 $why\n";
EOF
    for sub in "${subs[@]}"; do
        cat <<EOF

            location /portal/$sub/ {
                portal_gate customer_portal_$sub off=@legacy;
                return 200 "$edge $env \$uri -> portal v2 $why\n";
            }
EOF
    done
    cat <<EOF
        }

        location @legacy {
            return 200 "$edge $env \$uri -> legacy $why\n";
        }
    }
EOF
}

# staging_certs EDGE: the staging vhost's certificate lines. Every edge
# answers the ACME challenges (the CA may ask any; pebble asks edge-a);
# edge-a serves HTTPS with the pair that portal-gated keeps.
staging_certs() {
    [ "$certs" = 1 ] || return 0
    cat <<EOF
        # http-01: /.well-known/acme-challenge/ answered from the zone,
        # before the gate and any return or rewrite
        portal_gate_acme_challenge on;
EOF
    [ "$1" = edge-a ] || return 0
    cat <<EOF
        # the pair portal-gated writes (a placeholder first) and renews
        listen 127.0.0.1:$https_port ssl;
        ssl_certificate $cert_dir/fullchain.pem;
        ssl_certificate_key $cert_dir/privkey.pem;
EOF
}

# write_edge_conf EDGE: the edge's nginx.conf, in its own folder: both
# vhosts on its port, its API on $dir/run/EDGE.sock.
write_edge_conf() {
    local edge=$1 d="$dir/$1"
    mkdir -p "$d/state" "$d/tmp"
    if [ "$(id -u)" = 0 ]; then
        # the workers (nobody) write the state file and temp files
        chown nobody:nogroup "$d/state" "$d/tmp"
    fi

    {
        cat <<EOF
# $edge of make demo: the shape of conf-examples/nginx.conf, with answers
# instead of upstreams.
load_module $module;

daemon off;
worker_processes 2;
pid $d/nginx.pid;
error_log $d/error.log notice;

events {
    worker_connections 256;
}

http {
    default_type text/plain;
    log_format portal '\$remote_addr "\$request" \$status host=\$host '
                      'company=\$portal_gate_company flag=\$portal_gate_flag '
                      'decision=\$portal_gate_decision '
                      'reason=\$portal_gate_reason';
    access_log $d/access.log portal;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    portal_gate_zone zone=portal_gate:4m state=$d/state/state.json;
    portal_gate_company \$http_x_company_id;
EOF
        write_vhost "$edge" production "$domain" default_server
        write_vhost "$edge" staging "staging.$domain"
        cat <<EOF

    # The API, for portal-gated (and portal-gatectl status, --wait), and
    # the edge's metrics and health; portal-gated's reconcile asks every
    # 2 s: not for the access log.
    server {
        listen unix:$dir/run/$edge.sock;
        access_log off;

        location /portal-gate/ {
            portal_gate_api;
        }
        location = /metrics { portal_gate_metrics; }
        location = /health  { portal_gate_health stale=30s; }
    }
}
EOF
    } > "$d/nginx.conf"
}

start_edge() {
    local edge=$1 d="$dir/$1"
    write_edge_conf "$edge"
    # -e: the error log before the config is read (Debian's default,
    # /var/log/nginx, is not writable by a normal user). Every message goes
    # there; stderr only repeats them.
    /usr/sbin/nginx -p "$d" -c "$d/nginx.conf" -e "$d/error.log" \
        </dev/null >/dev/null 2>"$d/stderr.log" 3>&- 4>&- &
    edge_pid[$edge]=$!
    started "nginx-$edge" $! "$d/error.log"
}

edge_up() {
    curl -sf -o /dev/null --unix-socket "$dir/run/$1.sock" \
         http://edge/portal-gate/status
}

# ---- the flags

# seed: the scenario, as an operator would type it (its output goes to
# $dir/seed.log: `list` shows the result better). In both environments
# customer_portal and its sub-features, each requiring it. Staging: all at
# rollout 100. Production: customer_portal for the pilots only (allow list,
# rollout 0), and the sub-features at rollout 100, so that they follow it:
# a later phase is one command on customer_portal, and the sub-features
# never roll out to a different set of companies (each flag's bucket has
# its own salt).
seed_ctl() {
    ctl --actor make-demo "$@"
}
seed() {
    local env sub
    seed_ctl init
    for env in production staging; do
        seed_ctl -e "$env" --reason "phase 0" create customer_portal \
            --description "the new customer portal"
        for sub in "${subs[@]}"; do
            seed_ctl -e "$env" --reason "phase 0" \
                create "customer_portal_$sub" --requires customer_portal
            seed_ctl -e "$env" --reason "follows customer_portal" \
                rollout "customer_portal_$sub" 100
        done
    done
    seed_ctl -e staging --reason "staging: everyone" \
        rollout customer_portal 100
    seed_ctl -e production --reason "phase 0: pilots" \
        allow customer_portal "${pilots[@]}"
}

write_gated_conf() {
    cat > "$gated_conf" <<EOF
# portal-gated of make demo: conf-examples/portal-gated.conf with this
# demo's Redis and both edges.
redis              $redis_url;
prefix             portal-gate:;
environments       production staging;
edge               unix:$dir/run/edge-a.sock:/portal-gate/;
edge               unix:$dir/run/edge-b.sock:/portal-gate/;
reconcile_interval 2s;
log_level          info;
listen             ${http_url#http://};
EOF
    [ "$certs" = 1 ] || return 0
    cat >> "$gated_conf" <<EOF

# The staging vhost's certificate, from the demo's pebble; edge-a is
# checked (nginx -t) and reloaded at each new pair.
state_dir          $dir/state;
nginx              conf=$dir/edge-a/nginx.conf pid=$dir/edge-a/nginx.pid prefix=$dir/edge-a;
certificate $cert_name {
    issuer    acme $pebble_directory;
    acme_ca   $pebble_ca;
    fullchain $cert_dir/fullchain.pem;
    privkey   $cert_dir/privkey.pem;
}
EOF
}

# ---- pebble

# tools/pebble.sh calls this as each process starts: pebble does not catch
# TERM (status 143), pebble-challtestsrv does (0)
pebble_started_hook() {
    if [ "$1" = pebble ]; then
        started "$1" "$2" "$3" 143
    else
        started "$1" "$2" "$3"
    fi
}

# pebble, asking edge-a's port for http-01; pebble-challtestsrv, its DNS,
# says 127.0.0.1 for every name
start_pebble() {
    pebble_dir="$dir/pebble"
    pebble_port=$((port + 4))
    pebble_mgmt_port=$((port + 5))
    pebble_dns_port=$((port + 6))
    pebble_dns_mgmt_port=$((port + 7))
    pebble_http_port=${edge_port[edge-a]}
    pebble_tls_port=$https_port
    pebble_started=pebble_started_hook
    if ! pebble_start; then
        if [[ $pebble_error == pebble-challtestsrv* ]]; then
            failed "$pebble_error on 127.0.0.1:$pebble_dns_port and" \
                   "$pebble_dns_mgmt_port ($port_hint)" \
                   "$pebble_dir/challtestsrv.log"
        fi
        failed "$pebble_error on 127.0.0.1:$pebble_port and" \
               "$pebble_mgmt_port ($port_hint)" "$pebble_dir/pebble.log"
    fi
}

# pebble's certificate is in place: cert status exits 0 (it exits 1 while
# the placeholder is, or after a failure)
cert_issued() {
    ctl cert status
}

# https_curl / https_words: the staging vhost on HTTPS, verified against
# pebble's root (and the name: --resolve, no /etc/hosts line needed)
https_curl=(curl --cacert "$dir/pebble/root.pem"
            --resolve "$cert_name:$https_port:127.0.0.1"
            -H "X-Company-Id: $late" "https://$cert_name:$https_port/portal/")
https_words() {
    shell_words "${https_curl[@]}"
}

# ---- start: Redis, edge-b and pebble at once, then the flags, then the
# daemon, which writes the staging placeholder at once, then edge-a, which
# serves it until pebble's certificate replaces it

echo "demo: starting redis-server, nginx edge-b$([ "$certs" = 1 ] \
     && echo ", pebble"), portal-gated, nginx edge-a in $dir"
start_redis
start_edge edge-b
if [ "$certs" = 1 ]; then
    start_pebble
fi

wait_for "$redis_pid" redis_ours \
    || failed "redis-server did not start on 127.0.0.1:$redis_port" \
              "($port_hint)" "$dir/redis/redis.log"

write_gated_conf
if ! seed >"$dir/seed.log" 2>&1; then
    echo "demo: seeding the flags with portal-gatectl failed:" >&2
    cat "$dir/seed.log" >&2
    exit 1
fi

"$gated" -c "$gated_conf" </dev/null >>"$gated_log" 2>&1 3>&- 4>&- &
gated_pid=$!
started portal-gated "$gated_pid" "$gated_log"
if [ "$certs" = 1 ]; then
    wait_for "$gated_pid" test -s "$cert_dir/privkey.pem" \
        || failed "portal-gated wrote no placeholder for $cert_name" \
                  "$gated_log"
fi

start_edge edge-a
for edge in edge-a edge-b; do
    wait_for "${edge_pid[$edge]}" edge_up "$edge" \
        || failed "nginx did not start on 127.0.0.1:${edge_port[$edge]}" \
                  "for $edge ($port_hint)" "$dir/$edge/error.log"
done

# the edges have every flag when the store and both edges are at one
# revision: `status` exits 0
wait_for "$gated_pid" ctl status \
    || failed "portal-gated did not bring both edges in step" "$gated_log"

# the first issuance: a second or so (30 s at most here). portal-gated
# orders once an edge answers, and sends the token again to an edge that
# is not up yet (edge-a starts once the placeholder is there) until it
# takes it, before pebble is told to look.
if [ "$certs" = 1 ]; then
    for ((n = 0; n < 600; n++)); do
        cert_issued >/dev/null 2>&1 && break
        grep -q "certificate $cert_name: failed" "$gated_log" && break
        running "$gated_pid" || break
        sleep 0.05
    done
    # an edge-a slower to listen than the order's 10 s wait for its token
    # (under valgrind, say): the next try is a minute away; the demo asks
    # for it now, as an operator would
    if ! cert_issued >/dev/null 2>&1 \
       && grep -q "certificate $cert_name: failed" "$gated_log"; then
        echo "demo: $cert_name: the first order failed; asking again:"
        echo "\$ $(ctl_words cert renew "$cert_name" --wait 30)"
        ctl cert renew "$cert_name" --wait 30 || true
    fi
    # the install ends with a SIGHUP: edge-a's new workers serve the pair
    # a moment later
    if cert_issued >/dev/null 2>&1 \
       && wait_for "${edge_pid[edge-a]}" "${https_curl[@]}"; then
        echo "demo: $cert_name: edge-a serves pebble's certificate" \
             "(portal-gated's self-signed placeholder until then)"
    else
        echo "demo: $cert_name: no certificate from pebble yet;" \
             "portal-gatectl cert status says:" >&2
        ctl cert status >&2 || true
        [ "${DEMO_ONCE:-}" = 1 ] && exit 1
    fi
fi

# ---- what to try

url_a="http://127.0.0.1:${edge_port[edge-a]}"
url_b="http://127.0.0.1:${edge_port[edge-b]}"
eval_url="http://edge/portal-gate/eval?env=production&flag=customer_portal"
eval_url+="&company=$late"

# curl_words EDGE_URL HOST COMPANY PATH
curl_words() {
    shell_words curl -H "Host: $2" -H "X-Company-Id: $3" "$1$4"
}

cat <<EOF

portal-gate demo, all on loopback:
$(for e in edge-a edge-b; do
    printf '  %-13s nginx (pid %s) on 127.0.0.1:%s: %s (production),\n' \
           "$e" "${edge_pid[$e]}" "${edge_port[$e]}" "$domain"
    printf '  %-13s staging.%s (staging); API unix:%s\n' \
           "" "$domain" "$dir/run/$e.sock"
    printf '  %-13s metrics, health: curl --unix-socket %s http://%s/metrics (or /health)\n' \
           "" "$dir/run/$e.sock" "$e"
    if [ "$e" = edge-a ] && [ "$certs" = 1 ]; then
        printf '  %-13s staging.%s on HTTPS too: 127.0.0.1:%s\n' \
               "" "$domain" "$https_port"
    fi
done)
  redis-server  (pid $redis_pid) on 127.0.0.1:$redis_port: the store
  portal-gated  (pid $gated_pid): pushes each change to both edges,
                reconciles every 2s; log $gated_log
                status page  $http_url/   (open it, then kill a flag)
                metrics      $http_url/metrics
                health       $http_url/healthz
$(if [ "$certs" = 1 ]; then
    printf '                and keeps the certificate of %s\n' "$cert_name"
    printf '  pebble        (pid %s) on 127.0.0.1:%s: the ACME server;' \
           "$pebble_pid" "$pebble_port"
    printf ' its root CA\n                (new at each start): %s\n' \
           "$pebble_root"
    printf '  pebble-challtestsrv (pid %s) on 127.0.0.1:%s: its DNS\n' \
           "$pebble_dns_pid" "$pebble_dns_port"
fi)
  scratch folder: $dir

The flags: staging has everything on for everyone; production has the
portal on for the pilots ${pilots[*]} only (allow list, rollout 0), and the
sub-features, each requiring customer_portal, follow it (rollout 100):
$(ctl -e production list | sed 's/^/  /')
$(ctl -e staging list | sed 's/^/  /')

What a company gets, on either edge:
  $(curl_words "$url_a" "$domain" "${pilots[0]}" /portal/)
  $(curl_words "$url_b" "$domain" "${pilots[0]}" /portal/calls/)
  $(curl_words "$url_a" "$domain" "$late" /portal/)
  $(curl_words "$url_b" "$domain" "$late" /portal/)
  $(curl_words "$url_a" "staging.$domain" "$late" /portal/)
  $(curl_words "$url_b" "staging.$domain" "$late" /portal/crm/)
Why: the edge's own evaluation, and the CLI's (the same core); and the
whole snapshot an edge holds:
  $(shell_words curl --unix-socket "$dir/run/edge-b.sock" "$eval_url")
  $(ctl_words explain customer_portal "$late")
  curl --unix-socket $dir/run/edge-a.sock http://edge/portal-gate/snapshot

Phase 1, more pilot companies:
  $(ctl_words allow customer_portal "${more_pilots[@]}" --wait)
Phase 2, a share of every company ($(for p in "${phase2[@]}"; do
    printf '%s %%: company %s; ' "${p%%:*}" "${p#*:}"; done)$late waits):
$(for p in "${phase2[@]}"; do
    echo "  $(ctl_words rollout customer_portal "${p%%:*}" --wait)"; done)
Phase 3, everyone:
  $(ctl_words rollout customer_portal 100 --wait)
Kill switch (on-call): off on every edge in production, sub-features
included; staging keeps its own flags. --wait returns when both edges
have it:
  $(ctl_words kill customer_portal --wait --reason "INC-1: portal v2 errors")
  $(ctl_words on customer_portal --wait)
Break-glass kill, with Redis or portal-gated down (try: kill -STOP
$gated_pid): straight to both edges' APIs, held there until released:
  $(ctl_words kill customer_portal --direct --reason "INC-2")
  $(ctl_words release customer_portal)
  $(ctl_words on customer_portal --wait)
Who changed what, and are the edges in step?
  $(ctl_words audit customer_portal)
  $(ctl_words status)
  $(ctl_words -e staging list)
$(if [ "$certs" = 1 ]; then
    cat <<EOT
The staging certificate: portal-gated got it from pebble (http-01 answered
by the edges), edge-a serves it on HTTPS; it verifies against pebble's
root. Its state, and a renewal now (the new pair checked, installed, and
edge-a reloaded):
  $(https_words)
  $(ctl_words cert status)
  $(ctl_words cert renew "$cert_name" --wait 60)
EOT
else
    echo "Staging certificates: skipped: $certs_skipped."
fi)
EOF

# ---- DEMO_ONCE: the checks, with their answers

# run CMD...: show it as it can be pasted (ctl spelt out), then run it
run() {
    if [ "$1" = ctl ]; then
        echo "\$ $(ctl_words "${@:2}")"
    else
        echo "\$ $(shell_words "$@")"
    fi
    "$@"
}

# ask EDGE_URL HOST COMPANY PATH: what a company gets
ask() {
    run curl -sS -H "Host: $2" -H "X-Company-Id: $3" "$1$4"
}

# decisions COMPANY...: /portal/ for each company, on both edges, in both
# environments
decisions() {
    local c url host
    for c in "$@"; do
        for host in "$domain" "staging.$domain"; do
            for url in "$url_a" "$url_b"; do
                ask "$url" "$host" "$c" /portal/
            done
        done
    done
}

if [ "${DEMO_ONCE:-}" = 1 ]; then
    echo
    echo "== checks: a pilot and another company, on both edges"
    decisions "${pilots[0]}" "$late"
    ask "$url_a" "$domain" "${pilots[0]}" /portal/calls/
    ask "$url_b" "$domain" "$late" /portal/calls/
    run curl -sS --unix-socket "$dir/run/edge-b.sock" "$eval_url"
    echo
    run ctl explain customer_portal "$late"
    run curl -sS --unix-socket "$dir/run/edge-a.sock" \
        http://edge/portal-gate/snapshot
    echo

    echo "== checks: phase 1"
    run ctl allow customer_portal "${more_pilots[@]}" --wait
    ask "$url_b" "$domain" "${more_pilots[0]}" /portal/

    echo "== checks: phase 2"
    for p in "${phase2[@]}"; do
        run ctl rollout customer_portal "${p%%:*}" --wait
        ask "$url_a" "$domain" "${p#*:}" /portal/
    done
    ask "$url_b" "$domain" "$late" /portal/

    echo "== checks: phase 3"
    run ctl rollout customer_portal 100 --wait
    decisions "$late"

    echo "== checks: kill switch"
    run ctl kill customer_portal --wait --reason "INC-1: portal v2 errors"
    decisions "${pilots[0]}" "$late"
    ask "$url_a" "$domain" "${pilots[0]}" /portal/calls/
    ask "$url_b" "$domain" "${pilots[0]}" /portal/calls/

    echo "== checks: audit and status"
    run ctl audit customer_portal --count 3
    run ctl status
    run curl -sS "$http_url/healthz"
    echo
    run curl -sS -o /dev/null -w '%{http_code} %{content_type}\n' "$http_url/"
    run curl -sS --unix-socket "$dir/run/edge-a.sock" http://edge-a/health
    echo
    run curl -sS --unix-socket "$dir/run/edge-a.sock" http://edge-a/metrics

    echo "== checks: break-glass kill, portal-gated stopped"
    run ctl on customer_portal --wait
    kill -STOP "$gated_pid"
    run ctl kill customer_portal --direct --reason "INC-2"
    decisions "${pilots[0]}"
    run ctl status || true
    kill -CONT "$gated_pid"
    run ctl release customer_portal
    run ctl on customer_portal --wait
    decisions "${pilots[0]}"

    if [ "$certs" = 1 ]; then
        echo "== checks: staging certificate"
        run "${https_curl[@]:0:1}" -sS "${https_curl[@]:1}"
        run ctl cert status
        run ctl cert renew "$cert_name" --wait 60
        run "${https_curl[@]:0:1}" -sS "${https_curl[@]:1}"
    else
        echo "== staging certificates: skipped: $certs_skipped"
    fi

    echo "== portal-gated's log"
    cat "$gated_log"
    exit 0
fi

cat <<EOF

portal-gated's log follows. Ctrl-C stops everything and removes
$dir.
EOF
# tail goes when the demo goes, even if the demo is killed with KILL
tail --pid=$$ -n +1 -f "$gated_log" 3>&- 4>&- &
started tail $!

# Idle until Ctrl-C, or until a service dies on its own.
wait -n "$redis_pid" "${edge_pid[edge-a]}" "${edge_pid[edge-b]}" \
    "$gated_pid" ${pebble_pid:+"$pebble_pid" "$pebble_dns_pid"} || true
for i in "${!names[@]}"; do
    if [ "${names[i]}" != tail ] && ! running "${pids[i]}"; then
        echo "demo: ${names[i]} (pid ${pids[i]}) exited on its own" >&2
    fi
done
exit 1
