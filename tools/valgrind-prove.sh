#!/bin/sh
# Run the integration tests with every nginx under valgrind (memcheck), and
# fail if valgrind reports a memory error in any nginx process, or a leak
# whose stack passes through the module, the core or jansson. The module is
# loaded into Debian's own nginx, so it cannot be built with ASan; this is
# how its memory errors and leaks surface in `make test`.
#
# nginx itself leaves "definitely lost" blocks at exit (pools, the regex
# context): those leaks are not ours and are not counted.
#
# Usage: tools/valgrind-prove.sh [TEST.t...]

set -eu

dir=$(mktemp -d /tmp/portal-gate-valgrind.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 755 "$dir"

cat > "$dir/nginx" <<WRAPPER
#!/bin/sh
exec valgrind -q --leak-check=full --show-leak-kinds=definite \
    --keep-debuginfo=yes \
    --num-callers=40 --log-file=$dir/vg.%p.log /usr/sbin/nginx "\$@"
WRAPPER
chmod 755 "$dir/nginx"

# By default the module's own tests (t/1* to t/6*: the gate, the API, the
# zone and state file, overrides, workers, the examples), and one test each
# of the CLI's break-glass kill and of the daemon's pushes: the other
# controller tests drive the same API paths of the module, and under
# valgrind they would take most of make test's time. Or the test files
# given as arguments (tools/valgrind-prove.sh t/[0-9]*.t for all).
if [ $# -eq 0 ]; then
    set -- t/[1-6][0-9]-*.t t/78-*.t t/80-*.t
fi

PORTAL_GATE_NGINX="$dir/nginx" PG_TEST_SLOW=6 prove --timer -j2 "$@"

# One report per record: records are separated by an empty "==PID== " line.
perl -e '
    my ($runs, $bad) = (0, 0);
    for my $log (@ARGV) {
        $runs++;
        open my $fh, "<", $log or die "$log: $!\n";
        local $/;
        my @records = grep { /\S/ } split /^==\d+==\s*$/m, <$fh>;
        for my $r (@records) {
            my $ours = $r =~ /ngx_http_portal_gate_|\bpg_\w+|\bjson_\w+/;
            next if $r =~ /definitely lost/ && !$ours;
            print STDERR "valgrind: $log:$r\n";
            $bad++;
        }
    }
    die "valgrind: no nginx ran under valgrind\n" unless $runs;
    die "valgrind: $bad reports in $runs nginx runs\n" if $bad;
    print "valgrind: $runs nginx runs, no memory errors, no leaks of ours\n";
' "$dir"/vg.*.log
