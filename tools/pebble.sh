# tools/pebble.sh: Debian's pebble (an ACME server for testing) with
# pebble-challtestsrv as its DNS (every name is 127.0.0.1 unless told
# otherwise), offline on loopback, for make demo (tools/demo.sh) and make
# bench (bench/certs.sh). t/lib/PortalGate/Pebble.pm does the same for the
# tests. A library: source it (bash), set the variables, call pebble_start.
#
#   pebble_dir            a folder of its own: TLS pair, config, logs, root
#   pebble_port           the ACME directory, https://127.0.0.1:PORT/dir
#   pebble_mgmt_port      its management API (the root: /roots/0)
#   pebble_http_port      where its validation authority connects for
#                         http-01: the HTTP server that answers the
#                         challenges (nginx with portal_gate_acme_challenge
#                         on, or certbot --standalone)
#   pebble_dns_port       pebble-challtestsrv's DNS (TCP and UDP)
#   pebble_dns_mgmt_port  and its management API (pebble_add_a)
#   pebble_tls_port       optional: tls-alpn-01's port (portal-gated uses
#                         http-01 only); default: pebble_http_port + 1
#   pebble_env            optional array of VAR=VALUE for pebble, e.g.
#                         (PEBBLE_AUTHZREUSE=0: every order is validated)
#   pebble_started        optional: a command run as CMD NAME PID LOG at
#                         once after each process starts, so that the
#                         caller stops it at exit even if a later step fails
#
# pebble runs with PEBBLE_VA_NOSLEEP=1 (no random wait before each
# validation) and its default 5% of refused nonces (badNonce) kept on.
#
#   pebble_available      0 when both programs are installed; else 1, and
#                         pebble_error says what is missing
#   pebble_start          the TLS pair (openssl), the config, the DNS, then
#                         pebble; returns once pebble answers and its root
#                         is fetched: 0, or 1 with pebble_error (and the
#                         end of the log that says why in pebble_log_tail)
#   pebble_add_a HOST ADDR
#                         the DNS answers ADDR for HOST (certbot on
#                         127.0.0.2 beside an nginx on 127.0.0.1, one port)
#
# After pebble_start:
#   pebble_pid, pebble_dns_pid
#   pebble_directory      https://127.0.0.1:PORT/dir
#   pebble_ca             trust for pebble's own TLS listener: acme_ca in
#                         portal-gated.conf, REQUESTS_CA_BUNDLE for certbot
#   pebble_root           pebble's root (PEM), to which the certificates it
#                         issues chain: curl --cacert; new at each start
#
# The caller stops the processes with TERM: pebble-challtestsrv exits 0,
# pebble 143 (it does not catch the signal).

# shellcheck shell=bash disable=SC2154,SC2034 # the pebble_* above: in and out

PEBBLE_BIN=${PEBBLE_BIN:-/usr/bin/pebble}
PEBBLE_CHALLTESTSRV_BIN=${PEBBLE_CHALLTESTSRV_BIN:-/usr/bin/pebble-challtestsrv}

pebble_available() {
    local bin
    for bin in "$PEBBLE_BIN" "$PEBBLE_CHALLTESTSRV_BIN"; do
        if [ ! -x "$bin" ]; then
            pebble_error="$bin is not installed (Debian package pebble)"
            return 1
        fi
    done
    if ! command -v openssl >/dev/null; then
        pebble_error="openssl is not installed (pebble's TLS pair)"
        return 1
    fi
    return 0
}

# Alive, and not a zombie that only waits to be reaped.
_pebble_alive() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# _pebble_wait NAME PID LOG TEST...: until TEST succeeds, at most 15 s;
# gives up at once if PID has exited (a port in use, a bad config)
_pebble_wait() {
    local name=$1 pid=$2 log=$3 n
    shift 3
    for ((n = 0; n < 300; n++)); do
        if ! _pebble_alive "$pid"; then
            pebble_error="$name exited at start"
            pebble_log_tail=$(tail -n 5 "$log" 2>/dev/null)
            return 1
        fi
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    pebble_error="$name did not answer within 15 s"
    pebble_log_tail=$(tail -n 5 "$log" 2>/dev/null)
    return 1
}

_pebble_dns_up() {
    curl -s -o /dev/null --max-time 1 \
         "http://127.0.0.1:$pebble_dns_mgmt_port/"
}

_pebble_up() {
    curl -sf -o /dev/null --max-time 1 --cacert "$pebble_ca" \
         "$pebble_directory"
}

# _pebble_spawn NAME LOG CMD...: started in the background, stdin and the
# caller's extra descriptors (the demo's 3 and 4) closed, so that no reader
# of the caller's output waits on it; sets _pebble_last
_pebble_spawn() {
    local name=$1 log=$2
    shift 2
    "$@" </dev/null >>"$log" 2>&1 3>&- 4>&- &
    _pebble_last=$!
    if [ -n "${pebble_started:-}" ]; then
        "$pebble_started" "$name" "$_pebble_last" "$log"
    fi
}

pebble_start() {
    local d=$pebble_dir out
    pebble_error=""
    pebble_log_tail=""
    pebble_directory="https://127.0.0.1:$pebble_port/dir"
    pebble_ca="$d/tls.pem"
    pebble_root="$d/root.pem"
    mkdir -p "$d"

    # pebble's listener: self-signed, for 127.0.0.1 and localhost
    if ! out=$(openssl req -x509 -newkey ec \
                   -pkeyopt ec_paramgen_curve:P-256 -nodes \
                   -keyout "$d/tls.key" -out "$d/tls.pem" -days 7 \
                   -subj /CN=localhost \
                   -addext subjectAltName=IP:127.0.0.1,DNS:localhost 2>&1)
    then
        pebble_error="openssl could not make pebble's TLS pair: $out"
        return 1
    fi

    cat > "$d/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$pebble_port",
    "managementListenAddress": "127.0.0.1:$pebble_mgmt_port",
    "certificate": "$d/tls.pem",
    "privateKey": "$d/tls.key",
    "httpPort": $pebble_http_port,
    "tlsPort": ${pebble_tls_port:-$((pebble_http_port + 1))},
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF

    _pebble_spawn pebble-challtestsrv "$d/challtestsrv.log" \
        "$PEBBLE_CHALLTESTSRV_BIN" -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
        -dns01 "127.0.0.1:$pebble_dns_port" -http01 "" -https01 "" \
        -tlsalpn01 "" -management "127.0.0.1:$pebble_dns_mgmt_port"
    pebble_dns_pid=$_pebble_last
    _pebble_wait pebble-challtestsrv "$pebble_dns_pid" \
        "$d/challtestsrv.log" _pebble_dns_up || return 1

    _pebble_spawn pebble "$d/pebble.log" \
        env PEBBLE_VA_NOSLEEP=1 "${pebble_env[@]}" \
        "$PEBBLE_BIN" -config "$d/pebble.json" \
        -dnsserver "127.0.0.1:$pebble_dns_port"
    pebble_pid=$_pebble_last
    _pebble_wait pebble "$pebble_pid" "$d/pebble.log" _pebble_up || return 1

    # the root is made at each start: fetched from the management API
    rm -f "$pebble_root"
    if ! out=$(curl -sS --fail --max-time 10 --cacert "$pebble_ca" \
                    -o "$pebble_root" \
                    "https://127.0.0.1:$pebble_mgmt_port/roots/0" 2>&1) \
            || [ ! -s "$pebble_root" ]; then
        pebble_error="cannot fetch pebble's root: $out"
        return 1
    fi
    return 0
}

pebble_add_a() {
    local out
    if ! out=$(curl -sS --fail --max-time 5 -X POST \
                    -d "{\"host\":\"$1\",\"addresses\":[\"$2\"]}" \
                    "http://127.0.0.1:$pebble_dns_mgmt_port/add-a" 2>&1)
    then
        pebble_error="pebble-challtestsrv refused $1 -> $2: $out"
        return 1
    fi
}
