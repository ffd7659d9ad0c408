#!/bin/sh
# Run the integration tests with every nginx under valgrind (memcheck), and
# fail if valgrind reports an error in any nginx process. The module is
# loaded into Debian's own nginx, so it cannot be built with ASan; this is
# how its memory errors surface in `make test`.
#
# Usage: tools/valgrind-prove.sh [TEST.t...]

set -eu

dir=$(mktemp -d /tmp/portal-gate-valgrind.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"

cat > "$dir/nginx" <<WRAPPER
#!/bin/sh
exec valgrind -q --error-exitcode=99 --log-file=$dir/vg.%p.log \
    /usr/sbin/nginx "\$@"
WRAPPER
chmod 755 "$dir/nginx"

# the nginx tests by default; or the test files given as arguments
if [ $# -eq 0 ]; then
    set -- t/[0-9]*.t
fi

PORTAL_GATE_NGINX="$dir/nginx" prove "$@"

runs=$(ls "$dir"/vg.*.log 2>/dev/null | wc -l)
if [ "$runs" -eq 0 ]; then
    echo "valgrind: no nginx ran under valgrind" >&2
    exit 1
fi

bad=0
for log in "$dir"/vg.*.log; do
    if [ -s "$log" ]; then
        echo "valgrind: errors in $log:" >&2
        cat "$log" >&2
        bad=1
    fi
done

if [ "$bad" -ne 0 ]; then
    exit 1
fi

echo "valgrind: $runs nginx runs, no memory errors"
