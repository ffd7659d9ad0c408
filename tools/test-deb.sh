#!/bin/bash
#
# tools/test-deb.sh: install the packages of build/deb/ on this machine,
# check that they work the Debian way, purge them, and leave the machine as
# it was. `make test-deb` builds the packages first. Root only.
#
#   1. apt-get install ./build/deb/*.deb: the files, the portal-gate user,
#      the folders and their owners, the module enabled in modules-enabled,
#      the licence; a reinstall (dpkg -i, the upgrade path) keeps an
#      admin's modes
#   2. nginx -t with Debian's own /etc/nginx/nginx.conf and the module
#   3. systemd-analyze verify on the units (it checks the files; systemd
#      need not be PID 1)
#   4. portal-gated -t on the packaged conffile, as the portal-gate user
#   5. the examples dropped in (conf.d pieces, both sites), then the whole
#      chain on loopback: a test redis-server, an nginx edge that includes
#      the packaged conf.d pieces (state file in /var/lib/nginx/portal-gate,
#      API socket in /run/portal-gate), portal-gated as the portal-gate
#      user with no capability, as the unit runs it, with a certificate
#      from a local CA: its placeholder, nginx -t and the reload (nginx -s
#      reload) through the root helper (portal-gate-nginx-test.socket, here
#      under systemd-socket-activate), which refuses a symlink or a FIFO
#      among the certificates; a flag turned on reaches the edge
#   6. nginx -t with Debian's nginx.conf, the pieces and the sites
#   7. the pieces taken out, both packages purged: nothing of them is left
#      (the portal-gate user stays, as Debian's packages leave theirs; this
#      script removes it afterwards if it made it), and Debian's nginx
#      still passes nginx -t
#   8. a half-made portal-gate user (made without its group): an install
#      completes it; purged again
#   9. a portal-gate user and group an admin made beforehand, not system
#      ones (useradd -U): the install keeps and uses them; purged again
#
# Output: one "ok N - ..." or "not ok N - ..." line per check, then a
# summary; exit status 1 if a check failed. Whatever happens, the trap
# stops what it started, takes out what it dropped in and purges the
# packages. PG_TEST_KEEP=1 keeps the scratch folder; PG_TEST_SLOW=N
# multiplies the waits (a loaded machine).

set -u
export LC_ALL=C DEBIAN_FRONTEND=noninteractive

cd "$(dirname "$0")/.." || exit 1

SLOW=${PG_TEST_SLOW:-1}
WAIT=$((30 * SLOW))                  # seconds: a limit, never a sleep
MOD_PKG=libnginx-mod-http-portal-gate
CTL_PKG=portal-gate
DOC=/usr/share/doc/$MOD_PKG/examples
CERT_NAME=staging.portal.example.com
CERTS=/etc/portal-gate/certs/$CERT_NAME
APT=(apt-get -y -q -o DPkg::Lock::Timeout=300)

n=0
failed=0
scratch=
pids=()                              # what this script started
dropped=()                           # files it put into /etc/nginx
made_user=0
had_run_dir=1
installed=0

say()  { printf '# %s\n' "$*"; }
ok()   { n=$((n + 1)); printf 'ok %d - %s\n' "$n" "$1"; }
fail() { n=$((n + 1)); failed=$((failed + 1)); printf 'not ok %d - %s\n' "$n" "$1"; }

# check DESCRIPTION COMMAND...: one check; the command's output is shown
# only when it fails
check()
{
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then
        ok "$desc"
    else
        fail "$desc"
        printf '%s\n' "$out" | sed 's/^/#   /' | head -40
    fi
}

# bail DESCRIPTION: a check that the rest depends on failed
bail()
{
    say "stopping: $1"
    exit 1
}

# wait_for SECONDS COMMAND...: until the command succeeds, or the limit
wait_for()
{
    local limit=$1 end
    shift
    end=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || return 1
        sleep 0.1
    done
}

free_port()
{
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => "127.0.0.1:0",
                                      ReuseAddr => 1) or die "$!\n";
        print $s->sockport, "\n";'
}

# What the packages may leave behind, for the check after the purge: every
# path named portal where they install or make something (not all of
# /etc/nginx: the machine is shared, and another package may come or go
# meanwhile).
footprint()
{
    find /etc /lib/systemd /usr/lib /usr/libexec /usr/sbin /usr/bin \
         /usr/share/doc /usr/share/man /usr/share/nginx /var/lib/nginx \
         /var/lib/portal-gate /var/lib/systemd /run \
         -name '*portal*' -printf '%p\n' 2>/dev/null | sort
}

stop_pid()
{
    local pid=$1 sig=${2:-TERM} i
    kill -"$sig" "$pid" 2>/dev/null || return 0
    for ((i = 0; i < WAIT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null
}

cleanup()
{
    local rc=$? pid f
    trap - EXIT INT TERM

    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        stop_pid "${pids[i]}"
    done
    wait 2>/dev/null

    for f in "${dropped[@]}"; do
        rm -f "$f"
    done

    if [ "$installed" = 1 ] \
       && dpkg-query -W -f='${Status}\n' "$MOD_PKG" "$CTL_PKG" 2>/dev/null \
          | grep -qv 'not-installed'
    then
        say "cleanup: purging $MOD_PKG and $CTL_PKG"
        "${APT[@]}" purge "$MOD_PKG" "$CTL_PKG" >/dev/null 2>&1
    fi

    # a socket left by a process that was killed, not stopped
    if [ "$had_run_dir" = 0 ] && [ -d /run/portal-gate ]; then
        rm -rf /run/portal-gate
    fi

    if [ "$made_user" = 1 ] && getent passwd portal-gate >/dev/null; then
        # the package leaves its user (policy); this test made it (stage
        # 9 a non-system one, which deluser --system would not remove)
        userdel portal-gate >/dev/null 2>&1
        groupdel portal-gate >/dev/null 2>&1
    fi

    if [ -n "$scratch" ] && [ "${PG_TEST_KEEP:-}" != 1 ]; then
        rm -rf "$scratch"
    elif [ -n "$scratch" ]; then
        say "kept $scratch"
    fi

    if [ "$rc" = 0 ] && [ "$failed" = 0 ]; then
        printf '# all %d checks passed\n' "$n"
        exit 0
    fi
    if [ "$failed" = 0 ]; then
        printf '# stopped after %d checks (exit status %d)\n' "$n" "$rc"
    else
        printf '# %d of %d checks failed\n' "$failed" "$n"
    fi
    exit 1
}

trap cleanup EXIT
trap 'exit 1' INT TERM


# --- 0. before -------------------------------------------------------------

[ "$(id -u)" = 0 ] || { echo "test-deb: run it as root" >&2; exit 2; }

shopt -s nullglob
debs=(build/deb/${MOD_PKG}_*.deb build/deb/${CTL_PKG}_*.deb)
shopt -u nullglob
[ "${#debs[@]}" = 2 ] || { echo "test-deb: no packages in build/deb/: make deb" >&2; exit 2; }

for p in "$MOD_PKG" "$CTL_PKG"; do
    if dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -qv 'not-installed'; then
        echo "test-deb: $p is installed on this machine already; this test installs and purges it: remove it first" >&2
        exit 2
    fi
done

for f in /etc/nginx/conf.d/portal-gate-{zone,company,api}.conf \
         /etc/nginx/sites-available/portal-{production,staging} \
         /etc/nginx/sites-enabled/portal-{production,staging}; do
    [ -e "$f" ] && { echo "test-deb: $f exists: this test would overwrite it" >&2; exit 2; }
done

getent passwd portal-gate >/dev/null || made_user=1
[ -d /run/portal-gate ] || had_run_dir=0
scratch=$(mktemp -d /tmp/portal-gate-test-deb.XXXXXX) || exit 1
chmod 0755 "$scratch"                # the portal-gate user reads its config
footprint > "$scratch/before"
version=$(dpkg-deb -f "${debs[1]}" Version)
say "packages: ${debs[*]} ($version)"


# --- 1. install ------------------------------------------------------------

installed=1
if "${APT[@]}" install "./${debs[0]}" "./${debs[1]}" > "$scratch/apt-install.log" 2>&1; then
    ok "apt-get install ./build/deb/*.deb"
else
    fail "apt-get install ./build/deb/*.deb"
    sed 's/^/#   /' "$scratch/apt-install.log" | tail -20
    bail "the packages did not install"
fi

# owner:group mode of a path
meta() { stat -c '%U:%G %a' "$1"; }

check "the module is enabled: modules-enabled/50-mod-http-portal-gate.conf" \
    test "$(readlink /etc/nginx/modules-enabled/50-mod-http-portal-gate.conf)" \
         = /usr/share/nginx/modules-available/mod-http-portal-gate.conf
check "the module depends on nginx's ABI (nginx-abi-1.22.1-7)" \
    bash -c "dpkg-query -W -f='\${Depends}' $MOD_PKG | grep -q 'nginx-abi-1.22.1-7'"
check "portal-gate is a system user with no login, in group portal-gate" \
    bash -c 'e=$(getent passwd portal-gate) && uid=$(echo "$e" | cut -d: -f3) &&
             [ "$uid" -lt 1000 ] && [ "$(echo "$e" | cut -d: -f7)" = /usr/sbin/nologin ] &&
             [ "$(id -gn portal-gate)" = portal-gate ]'
check "/var/lib/portal-gate is portal-gate:portal-gate 750" \
    test "$(meta /var/lib/portal-gate)" = "portal-gate:portal-gate 750"
check "/etc/portal-gate/certs is portal-gate:portal-gate 750" \
    test "$(meta /etc/portal-gate/certs)" = "portal-gate:portal-gate 750"
check "the conffile is root:portal-gate 640" \
    test "$(meta /etc/portal-gate/portal-gated.conf)" = "root:portal-gate 640"
check "/etc/portal-gate/portal-gated.conf is a conffile" \
    grep -qx /etc/portal-gate/portal-gated.conf /var/lib/dpkg/info/$CTL_PKG.conffiles
check "/run/portal-gate (tmpfiles.d) is root:portal-gate 750" \
    test "$(meta /run/portal-gate)" = "root:portal-gate 750"
check "/var/lib/nginx/portal-gate (the state file's folder) is www-data:www-data 750" \
    test "$(meta /var/lib/nginx/portal-gate)" = "www-data:www-data 750"
check "portal-gated --version says the package's version" \
    test "$(/usr/sbin/portal-gated --version)" = "portal-gated ${version%%-*}"
check "the man pages open" \
    bash -c 'man -w portal-gated.8 && man -w portal-gatectl.1'
check "portal-gated.service is not enabled at install" \
    test ! -e /etc/systemd/system/multi-user.target.wants/portal-gated.service
check "the copyright file: BSD-2-Clause, the portal-gate authors" \
    bash -c "for p in $MOD_PKG $CTL_PKG; do
                 f=/usr/share/doc/\$p/copyright
                 grep -qx 'License: BSD-2-Clause' \$f && grep -q 'the portal-gate authors' \$f || exit 1
             done"
check "lintian says nothing about the copyright or the licence" \
    bash -c "out=\$(lintian ${debs[*]} 2>&1 | grep -i -E 'copyright|licen'); [ -z \"\$out\" ] || { echo \"\$out\"; exit 1; }"

# an admin's modes, then the same package again: the upgrade path (dpkg
# runs postinst configure with the version before)
chmod 0700 /var/lib/portal-gate
chmod 0710 /etc/portal-gate/certs
chmod 0600 /etc/portal-gate/portal-gated.conf
modes() { stat -c '%a' /var/lib/portal-gate /etc/portal-gate/certs /etc/portal-gate/portal-gated.conf | tr '\n' ' '; }
if dpkg -i "${debs[1]}" > "$scratch/dpkg-reinstall.log" 2>&1; then
    check "a reinstall (dpkg -i, the upgrade path) keeps the admin's modes" \
        test "$(modes)" = "700 710 600 "
else
    fail "a reinstall (dpkg -i, the upgrade path) keeps the admin's modes"
    sed 's/^/#   /' "$scratch/dpkg-reinstall.log" | tail -20
fi
chmod 0750 /var/lib/portal-gate /etc/portal-gate/certs
chmod 0640 /etc/portal-gate/portal-gated.conf


# --- 2. Debian's nginx.conf with the module ------------------------------

check "nginx -t: Debian's nginx.conf loads the module" /usr/sbin/nginx -t -q


# --- 3. the units ----------------------------------------------------------

check "portal-gated.service gives no capability (no CAP_KILL: the helper reloads nginx)" \
    bash -c 'u=/lib/systemd/system/portal-gated.service
             grep -qx "CapabilityBoundingSet=" $u && ! grep -q "^AmbientCapabilities" $u &&
             ! grep -q "^[A-Za-z]*=.*CAP_" $u'
check "systemd-analyze verify: portal-gated.service, portal-gate-nginx-test.socket and @.service" \
    bash -c 'out=$(systemd-analyze verify /lib/systemd/system/portal-gated.service \
                   /lib/systemd/system/portal-gate-nginx-test.socket \
                   /lib/systemd/system/portal-gate-nginx-test@.service 2>&1)
             rc=$?; [ -z "$out" ] || { echo "$out"; exit 1; }; exit $rc'


# --- 4. the packaged config ------------------------------------------------

check "portal-gated -t on the packaged conffile, as the portal-gate user" \
    runuser -u portal-gate -- /usr/sbin/portal-gated -t


# --- 5. the examples, and the whole chain ------------------------------------

for f in portal-gate-zone.conf portal-gate-company.conf portal-gate-api.conf; do
    install -m 0644 "$DOC/conf.d/$f" /etc/nginx/conf.d/ && dropped+=("/etc/nginx/conf.d/$f")
done
for s in portal-production portal-staging; do
    install -m 0644 "$DOC/sites-available/$s" /etc/nginx/sites-available/ \
        && dropped+=("/etc/nginx/sites-available/$s")
    ln -s "../sites-available/$s" /etc/nginx/sites-enabled/ \
        && dropped+=("/etc/nginx/sites-enabled/$s")
done
check "the examples are in $DOC" \
    test "${#dropped[@]}" = 7
check "the one-file example (nginx.conf) and the conf.d zone piece keep the state file where the package made its folder" \
    bash -c "for f in $DOC/nginx.conf* $DOC/conf.d/portal-gate-zone.conf; do
                 zgrep -q 'state=/var/lib/nginx/portal-gate/state.json;' \$f || { echo \"\$f: \$(zgrep 'state=' \$f)\"; exit 1; }
             done"

# a test redis-server
redis_port=$(free_port)
mkdir "$scratch/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$scratch/redis" \
    --save '' --appendonly no > "$scratch/redis.log" 2>&1 &
pids+=($!)
wait_for "$WAIT" redis-cli -p "$redis_port" ping || bail "redis-server did not start"

# the root helper, as portal-gate-nginx-test.socket runs it: the edge's
# test config is allowed beside Debian's
systemd-socket-activate --listen=/run/portal-gate/nginx-test.sock --accept \
    --inetd -E PORTAL_GATE_NGINX_CONFS="/etc/nginx/nginx.conf $scratch/nginx.conf" \
    /usr/libexec/portal-gate/nginx-test-server > "$scratch/helper.log" 2>&1 &
pids+=($!)
wait_for "$WAIT" test -S /run/portal-gate/nginx-test.sock || bail "the helper's socket did not appear"
chown root:portal-gate /run/portal-gate/nginx-test.sock
chmod 0660 /run/portal-gate/nginx-test.sock

# a local CA for the staging certificate
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj '/CN=portal-gate test-deb CA' -keyout "$scratch/ca.key" \
    -out "$scratch/ca.pem" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null || bail "openssl"
chown portal-gate "$scratch/ca.key"

# the edge: Debian's nginx, the packaged conf.d pieces (the API piece with
# its metrics port moved to a free one), and the staging server
https_port=$(free_port)
sed "s/127\.0\.0\.1:9113/127.0.0.1:$(free_port)/" /etc/nginx/conf.d/portal-gate-api.conf \
    > "$scratch/portal-gate-api.conf"
cat > "$scratch/nginx.conf" <<EOF
include /etc/nginx/modules-enabled/*.conf;
user www-data;
worker_processes 1;
pid $scratch/nginx.pid;
error_log $scratch/nginx-error.log notice;
events { worker_connections 64; }
http {
    access_log off;
    include /etc/nginx/conf.d/portal-gate-zone.conf;
    include /etc/nginx/conf.d/portal-gate-company.conf;
    include $scratch/portal-gate-api.conf;
    server {
        listen 127.0.0.1:$https_port ssl;
        server_name $CERT_NAME;
        ssl_certificate $CERTS/fullchain.pem;
        ssl_certificate_key $CERTS/privkey.pem;
        location /portal/ {
            portal_gate customer_portal;
            return 200 "portal v2\n";
        }
    }
}
EOF

# portal-gated: the packaged conffile with the test redis, and a
# certificate whose nginx -t goes through the helper
sed "s|^redis .*|redis redis://127.0.0.1:$redis_port/0;|" \
    /etc/portal-gate/portal-gated.conf > "$scratch/portal-gated.conf"
cat >> "$scratch/portal-gated.conf" <<EOF
nginx conf=$scratch/nginx.conf binary=/usr/libexec/portal-gate/nginx-test;
certificate $CERT_NAME {
    issuer    local $scratch/ca.pem $scratch/ca.key;
    fullchain $CERTS/fullchain.pem;
    privkey   $CERTS/privkey.pem;
}
EOF
chmod 0644 "$scratch/portal-gated.conf"
ctl=(/usr/bin/portal-gatectl -c "$scratch/portal-gated.conf")
"${ctl[@]}" init > "$scratch/ctl.log" 2>&1 || bail "portal-gatectl init"

# as the unit runs it: the portal-gate user and group, no capability
setpriv --reuid=portal-gate --regid=portal-gate --init-groups \
    --inh-caps=-all --ambient-caps=-all --bounding-set=-all \
    --no-new-privs \
    /usr/sbin/portal-gated -c "$scratch/portal-gated.conf" \
    > "$scratch/portal-gated.log" 2>&1 &
gated=$!
pids+=("$gated")

if wait_for "$WAIT" test -s "$CERTS/fullchain.pem"; then
    ok "portal-gated (portal-gate user) writes the placeholder pair in /etc/portal-gate/certs"
else
    fail "portal-gated (portal-gate user) writes the placeholder pair in /etc/portal-gate/certs"
    sed 's/^/#   /' "$scratch/portal-gated.log" | tail -20
fi

/usr/sbin/nginx -c "$scratch/nginx.conf" > "$scratch/nginx.out" 2>&1 \
    || { sed 's/^/#   /' "$scratch/nginx.out" "$scratch/nginx-error.log"; bail "the test edge did not start"; }
wait_for "$WAIT" test -s "$scratch/nginx.pid" || bail "the test edge wrote no pid"
edge_pid=$(cat "$scratch/nginx.pid")
pids+=("$edge_pid")
check "nginx's master made the API socket in /run/portal-gate" test -S /run/portal-gate/api.sock

# The first issuance comes at once, maybe before this nginx wrote its pid
# (then its reload waits for a retry): a renewal asked now, with nginx
# running, is the one whose nginx -t and reload are checked.
check "the certificate is issued from the local CA" \
    wait_for "$WAIT" grep -q "certificate $CERT_NAME: issued by " "$scratch/portal-gated.log"
mark=$(wc -l < "$scratch/portal-gated.log")
hups() { grep -c 'signal 1 (SIGHUP) received' "$scratch/nginx-error.log"; }
hup0=$(hups)
if "${ctl[@]}" cert renew "$CERT_NAME" --wait="$WAIT" >> "$scratch/ctl.log" 2>&1 \
   && tail -n +"$((mark + 1))" "$scratch/portal-gated.log" \
      | grep -q "certificate $CERT_NAME: issued by .*installed and nginx reloaded" \
   && wait_for "$WAIT" bash -c "[ \$(grep -c 'signal 1 (SIGHUP) received' $scratch/nginx-error.log) -gt $hup0 ]"
then
    ok "a renewal: nginx -t and the reload (nginx -s reload, no capability) pass through the root helper"
else
    fail "a renewal: nginx -t and the reload (nginx -s reload, no capability) pass through the root helper"
    tail -n +"$((mark + 1))" "$scratch/portal-gated.log" | grep -i 'certificate\|nginx' \
        | tail -10 | sed 's/^/#   /'
    tail -5 "$scratch/ctl.log" | sed 's/^/#   /'
fi
check "the key is portal-gate's, 0600" \
    test "$(meta "$CERTS/privkey.pem")" = "portal-gate:portal-gate 600"

# What the portal-gate user may plant where root's nginx reads: a symlink
# to a file of root's, a FIFO (nginx's master would hang on it). The helper
# refuses both, naming them, and nginx is neither tested nor reloaded.
helper=(runuser -u portal-gate -- /usr/libexec/portal-gate/nginx-test)
hup0=$(hups)
runuser -u portal-gate -- ln -s /etc/shadow "$CERTS/other.pem"
check "the helper refuses a reload while a symlink is among the certificates, naming it" \
    bash -c "out=\$(${helper[*]} -s reload -c $scratch/nginx.conf 2>&1); rc=\$?
             echo \"\$out\"; [ \$rc = 1 ] && echo \"\$out\" | grep -q '$CERTS/other.pem is a symlink'"
rm -f "$CERTS/other.pem"
runuser -u portal-gate -- mkfifo "$CERTS/other.pem"
check "... and nginx -t while a FIFO is there" \
    bash -c "out=\$(${helper[*]} -t -q -c $scratch/nginx.conf 2>&1); rc=\$?
             echo \"\$out\"; [ \$rc = 1 ] && echo \"\$out\" | grep -q '$CERTS/other.pem is a FIFO'"
mark=$(wc -l < "$scratch/portal-gated.log")
"${ctl[@]}" cert renew "$CERT_NAME" --wait="$WAIT" >> "$scratch/ctl.log" 2>&1
check "... a renewal then: portal-gated says why, nginx was not reloaded" \
    bash -c "tail -n +$((mark + 1)) $scratch/portal-gated.log | grep 'certificate $CERT_NAME' \
                 | grep -q 'nginx -t failed.*$CERTS/other.pem is a FIFO' && [ \$(grep -c 'signal 1 (SIGHUP) received' $scratch/nginx-error.log) = $hup0 ]"
rm -f "$CERTS/other.pem"

"${ctl[@]}" create customer_portal >> "$scratch/ctl.log" 2>&1
check "portal-gatectl allow --wait: portal-gated pushes it through /run/portal-gate/api.sock" \
    "${ctl[@]}" --actor test-deb allow customer_portal 42 --wait="$WAIT"
check "the edge's state file is written by its workers in /var/lib/nginx/portal-gate" \
    bash -c "[ \"\$(stat -c %U /var/lib/nginx/portal-gate/state.json)\" = www-data ]"
check "HTTPS to the edge: the issued certificate, the flag on for company 42" \
    bash -c "out=\$(curl -sS --cacert $scratch/ca.pem --resolve $CERT_NAME:$https_port:127.0.0.1 \
                   -H 'X-Company-Id: 42' https://$CERT_NAME:$https_port/portal/ 2>&1)
             [ \"\$out\" = 'portal v2' ] || { echo \"\$out\"; exit 1; }"


# --- 6. Debian's nginx.conf with the pieces and the sites -----------------

check "nginx -t: Debian's nginx.conf with the conf.d pieces and both sites" \
    /usr/sbin/nginx -t -q
check "nginx-test (the helper's client), as portal-gate: Debian's nginx.conf passes" \
    runuser -u portal-gate -- /usr/libexec/portal-gate/nginx-test -t -q -c /etc/nginx/nginx.conf
check "nginx-test refuses a config it is not told to test" \
    bash -c "out=\$(runuser -u portal-gate -- /usr/libexec/portal-gate/nginx-test -t -q \
                  -c $scratch/portal-gated.conf 2>&1); rc=\$?
             [ \$rc = 1 ] && echo \"\$out\" | grep -q 'is not a config this host lets portal-gate test'"
check "the portal-gate user cannot run nginx -t itself (why the helper exists)" \
    bash -c '! runuser -u portal-gate -- /usr/sbin/nginx -t -q 2>/dev/null'

stop_pid "$gated"
wait "$gated"
check "portal-gated stops cleanly on SIGTERM" test $? = 0
stop_pid "$edge_pid" QUIT
check "no [alert] or [emerg] in the edge's error log" \
    bash -c "! grep -E '\[(alert|emerg)\]' $scratch/nginx-error.log"
for pid in "${pids[@]}"; do
    stop_pid "$pid"
done
wait 2>/dev/null
pids=()
# what systemd does at the socket unit's stop (RemoveOnStop=yes)
rm -f /run/portal-gate/nginx-test.sock


# --- 7. purge ----------------------------------------------------------------

for f in "${dropped[@]}"; do
    rm -f "$f"
done
dropped=()

if "${APT[@]}" purge "$MOD_PKG" "$CTL_PKG" > "$scratch/apt-purge.log" 2>&1; then
    ok "apt-get purge $MOD_PKG $CTL_PKG"
else
    fail "apt-get purge $MOD_PKG $CTL_PKG"
    sed 's/^/#   /' "$scratch/apt-purge.log" | tail -20
fi
check "dpkg knows neither package any more" \
    bash -c "! dpkg-query -W -f='\${Status}\n' $MOD_PKG $CTL_PKG 2>/dev/null | grep -qv not-installed"
footprint > "$scratch/after"
check "nothing of the packages is left (no path named portal)" \
    diff -u "$scratch/before" "$scratch/after"
check "the portal-gate user stays after the purge (Debian's practice)" \
    getent passwd portal-gate
check "nginx -t: Debian's nginx.conf without the module" /usr/sbin/nginx -t -q


# --- 8. a half-made user -----------------------------------------------------

# The user without its group (as `adduser --system` alone makes it): the
# postinst used to skip adduser once the user existed, then failed to
# chown to the missing group. Only when this test made the user: an
# admin's portal-gate user is not touched.
if [ "$made_user" = 1 ]; then
    deluser --quiet --system portal-gate >/dev/null 2>&1
    delgroup --quiet --system portal-gate >/dev/null 2>&1
    adduser --quiet --system --no-create-home --home /var/lib/portal-gate \
        portal-gate >/dev/null 2>&1
    if "${APT[@]}" install "./${debs[1]}" > "$scratch/apt-half.log" 2>&1; then
        ok "a user made without its group: the install completes it"
    else
        fail "a user made without its group: the install completes it"
        sed 's/^/#   /' "$scratch/apt-half.log" | tail -20
    fi
    check "... the group portal-gate exists and the user is in it; its folders are portal-gate's" \
        bash -c 'getent group portal-gate >/dev/null && id -Gn portal-gate | grep -qw portal-gate &&
                 [ "$(stat -c %U:%G /var/lib/portal-gate)" = portal-gate:portal-gate ]'
    check "apt-get purge $CTL_PKG (the half-made user's install)" \
        "${APT[@]}" purge "$CTL_PKG"
fi


# --- 9. an admin's own, non-system user --------------------------------------

# `addgroup --system` exits 1 on an existing non-system group, and the
# postinst runs under set -e: an install on a machine where the admin made
# portal-gate with useradd failed. Only when this test made the user.
if [ "$made_user" = 1 ]; then
    userdel portal-gate >/dev/null 2>&1
    groupdel portal-gate >/dev/null 2>&1
    useradd -U -M -d /var/lib/portal-gate -s /usr/sbin/nologin portal-gate
    uid=$(id -u portal-gate)
    if "${APT[@]}" install "./${debs[1]}" > "$scratch/apt-own.log" 2>&1; then
        ok "a non-system portal-gate user and group made beforehand: the install succeeds"
    else
        fail "a non-system portal-gate user and group made beforehand: the install succeeds"
        sed 's/^/#   /' "$scratch/apt-own.log" | tail -20
    fi
    check "... the user is kept as it was (uid $uid), in its group; its folders are portal-gate's" \
        bash -c "[ \"\$(id -u portal-gate)\" = $uid ] && id -Gn portal-gate | grep -qw portal-gate &&
                 [ \"\$(stat -c %U:%G /var/lib/portal-gate)\" = portal-gate:portal-gate ]"
    check "apt-get purge $CTL_PKG (the admin's user's install)" \
        "${APT[@]}" purge "$CTL_PKG"
fi
