#!/bin/bash
# make demo: Debian's nginx with the module on loopback, loaded with the
# flags of the rollout scenario (conf-examples/snapshot.json), plus ready
# snapshots for the next phases and for the kill switch.
#
#   DEMO_PORT=8080   the vhosts; the API listens on DEMO_PORT+1
#   DEMO_ONCE=1      run the printed checks, then stop (used by the tests)
#
# Ctrl-C stops nginx and removes the scratch folder.

set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
module="$top/build/ngx_http_portal_gate_module.so"
port=${DEMO_PORT:-8080}
api_port=$((port + 1))

if [ ! -f "$module" ]; then
    echo "demo: $module is missing: run make" >&2
    exit 1
fi

dir=$(mktemp -d /tmp/portal-gate-demo.XXXXXX)
chmod 755 "$dir"
mkdir -p "$dir/state" "$dir/tmp" "$dir/snapshots"
if [ "$(id -u)" = 0 ]; then
    chown nobody:nogroup "$dir/state" "$dir/tmp"
fi

nginx_pid=""

stop() {
    if [ -n "$nginx_pid" ] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -QUIT "$nginx_pid"
        wait "$nginx_pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap stop EXIT
trap 'exit 130' INT TERM

cat > "$dir/nginx.conf" <<EOF
load_module $module;

daemon off;
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log notice;

events {
    worker_connections 256;
}

http {
    access_log $dir/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    default_type text/plain;

    portal_gate_zone zone=portal_gate:4m state=$dir/state/state.json;
    portal_gate_company \$http_x_company_id;

    server {
        listen 127.0.0.1:$port;
        server_name example.com;

        location /portal/ {
            portal_gate customer_portal off=@legacy;
            return 200 "portal v2 for company \$portal_gate_company (\$portal_gate_reason)\n";

            location /portal/calls/ {
                portal_gate customer_portal_calls off=@legacy;
                return 200 "portal v2 calls for company \$portal_gate_company (\$portal_gate_reason)\n";
            }
        }

        location @legacy {
            return 200 "legacy portal (\$portal_gate_flag: \$portal_gate_reason)\n";
        }
    }

    server {
        listen 127.0.0.1:$port;
        server_name staging.example.com;
        portal_gate_env staging;

        location /portal/ {
            portal_gate customer_portal off=@legacy;
            return 200 "staging portal v2 for company \$portal_gate_company (\$portal_gate_reason)\n";
        }

        location @legacy {
            return 200 "staging legacy portal (\$portal_gate_reason)\n";
        }
    }

    server {
        listen 127.0.0.1:$api_port;

        location /portal-gate/ {
            allow 127.0.0.1;
            deny all;
            portal_gate_api;
        }
    }
}
EOF

# The next phases, each a whole snapshot with the next revision.
perl -MJSON::PP -e '
    my ($src, $out) = @ARGV;
    local $/;
    open my $fh, "<", $src or die "$src: $!\n";
    my $json = JSON::PP->new->canonical->pretty;
    my $s = $json->decode(<$fh>);
    my $prod = $s->{environments}{production};
    my $put = sub {
        my ($name, $rev, $edit) = @_;
        my $copy = $json->decode($json->encode($s));
        $copy->{revision} = $rev;
        $edit->($copy->{environments}{production});
        open my $o, ">", "$out/$name.json" or die "$out/$name.json: $!\n";
        print $o $json->encode($copy);
    };
    $put->("phase2-25", 2, sub { $_->{rollout} = 25 for values %{$_[0]} });
    $put->("phase3", 3, sub { $_->{rollout} = 100 for values %{$_[0]} });
    $put->("kill", 4, sub {
        $_[0]{customer_portal}{rollout} = 100;
        $_[0]{customer_portal}{enabled} = JSON::PP::false;
    });
' "$top/conf-examples/snapshot.json" "$dir/snapshots"

/usr/sbin/nginx -p "$dir" -c "$dir/nginx.conf" &
nginx_pid=$!

ready=0
for _ in $(seq 50); do
    if ! kill -0 "$nginx_pid" 2>/dev/null; then
        break
    fi
    if curl -s -o /dev/null "http://127.0.0.1:$api_port/portal-gate/status"
    then
        ready=1
        break
    fi
    sleep 0.1
done

if [ "$ready" != 1 ]; then
    echo "demo: nginx did not start on 127.0.0.1:$port and :$api_port" \
         "(a port in use? try DEMO_PORT=9090 make demo); its log:" >&2
    cat "$dir/error.log" >&2 2>/dev/null || true
    exit 1
fi

api="http://127.0.0.1:$api_port/portal-gate"
put() {
    curl -s -X PUT --data-binary "@$1" "$api/snapshot"
}

echo "== loading the rollout scenario (revision 1)"
put "$top/conf-examples/snapshot.json"

cat <<EOF

portal-gate demo: nginx (pid $nginx_pid) on 127.0.0.1:$port, API on :$api_port
scratch folder: $dir

Phase 1, pilot companies 1001 and 1002 only:
  curl -H 'X-Company-Id: 1001' http://127.0.0.1:$port/portal/
  curl -H 'X-Company-Id: 42'   http://127.0.0.1:$port/portal/
  curl -H 'X-Company-Id: 1001' http://127.0.0.1:$port/portal/calls/
Staging reads its own flags (everyone is on):
  curl -H 'Host: staging.example.com' -H 'X-Company-Id: 42' http://127.0.0.1:$port/portal/
Why? The same answer as the edge, with the bucket:
  curl '$api/eval?flag=customer_portal&company=42'
  curl $api/status
Phase 2 (25% of companies), phase 3 (everyone), then the kill switch:
  curl -X PUT --data-binary @$dir/snapshots/phase2-25.json $api/snapshot
  curl -X PUT --data-binary @$dir/snapshots/phase3.json $api/snapshot
  curl -X PUT --data-binary @$dir/snapshots/kill.json $api/snapshot
EOF

if [ "${DEMO_ONCE:-}" = 1 ]; then
    echo
    echo "== checks"
    run() { echo "\$ $*"; "$@"; }
    run curl -s -H 'X-Company-Id: 1001' "http://127.0.0.1:$port/portal/"
    run curl -s -H 'X-Company-Id: 42' "http://127.0.0.1:$port/portal/"
    run curl -s -H 'Host: staging.example.com' -H 'X-Company-Id: 42' \
        "http://127.0.0.1:$port/portal/"
    run curl -s "$api/eval?flag=customer_portal&company=42"
    put "$dir/snapshots/phase3.json"
    run curl -s -H 'X-Company-Id: 42' "http://127.0.0.1:$port/portal/"
    put "$dir/snapshots/kill.json"
    run curl -s -H 'X-Company-Id: 1001' "http://127.0.0.1:$port/portal/"
    exit 0
fi

echo
echo "Ctrl-C stops nginx and removes $dir"
wait "$nginx_pid"
