# bench/metrics-rig.sh: what bench/metrics.sh and bench/instructions.sh
# share, sourced by both: the snapshot they apply and the http block of
# their nginx (a plain server, a gated one with 20 flag locations, the
# API).

# metrics_snapshot FILE: customer_portal allows company 42 among 10,000;
# flag_0..19 roll out 50 %, in production and staging
metrics_snapshot() {
    perl -MJSON::PP -e '
        my @allow = map { "c$_" } 1 .. 9999; push @allow, "42";
        my %env = (customer_portal => { rollout => 25, allow => \@allow });
        $env{"flag_$_"} = { rollout => 50 } for 0 .. 19;
        print encode_json({ revision => 1, environments =>
                            { production => \%env, staging => \%env } });
    ' > "$1"
}

# metrics_http DIR PLAIN_PORT GATE_PORT API_PORT EXTRA: the http block;
# EXTRA goes into the gated server (metrics and health locations)
metrics_http() {
    local d=$1 p_plain=$2 p_gate=$3 p_api=$4 extra=$5 i flags=""
    for i in $(seq 0 19); do
        flags+="        location /f$i/ { portal_gate flag_$i; return 200 \"ok\\n\"; }"$'\n'
    done
    cat <<CONF
http {
    access_log off;
    client_body_temp_path $d/tmp;
    proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
    uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
    keepalive_requests 1000000;
    portal_gate_zone zone=portal_gate:4m state=$d/state/state.json;
    portal_gate_company \$http_x_company_id;
    server { listen 127.0.0.1:$p_plain; location / { return 200 "ok\n"; } }
    server {
        listen 127.0.0.1:$p_gate;
        portal_gate_env \$http_x_env;
        location / { portal_gate customer_portal; portal_gate_env production;
                     return 200 "ok\n"; }
$flags
        $extra
    }
    server { listen 127.0.0.1:$p_api; location /portal-gate/ { portal_gate_api; } }
}
CONF
}
