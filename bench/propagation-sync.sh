# bench/propagation-sync.sh: issue 14's rounds of bench/propagation.sh, the
# kill against the size of another flag's allow list, for one build or
# several side by side. propagation.sh sources it, once every build's stack
# is up and synced, when PROP_ALLOW or PROP_BUILDS is given; it uses that
# script's variables and functions (ctl, probe, kill_probe, synced,
# edge_get, edge_field, daemon_view, stats, stat_of, ...). Not run alone.
#
# For each size in PROP_ALLOW, in the order given:
#   1. bulk_allow (created by stack_up, rollout 10) is made to allow
#      exactly that many companies in every build's store, through
#      portal-gatectl allow/unallow, PROP_BATCH ids a command (each command
#      is one write: one revision, one push);
#   2. every edge of every build must be at its store's revision and answer
#      "allowed" for the list's last company and not for the next one;
#   3. PROP_KILLS kill rounds per build in PROP_BLOCKS blocks, alternating
#      between the builds (A B, B A, ...).
# Then one table row per size and build, and the ratios to the first build.

# shellcheck shell=bash disable=SC2154,SC2034 # propagation.sh's variables

# bulk_set K N: build K's bulk_allow allows exactly companies 1000000 ..
# 1000000 + N - 1
bulk_cur=()
bulk_set() {
    local k=$1 n=$2 cur=${bulk_cur[$1]:-0} to
    while [ "$cur" -lt "$n" ]; do
        to=$((cur + batch < n ? cur + batch : n))
        # shellcheck disable=SC2046 # a list of numbers
        ctl "$k" allow bulk_allow $(seq $((1000000 + cur)) $((1000000 + to - 1))) \
            || fail "${blabel[$k]}: allow bulk_allow failed"
        cur=$to
    done
    while [ "$cur" -gt "$n" ]; do
        to=$((cur - batch > n ? cur - batch : n))
        # shellcheck disable=SC2046
        ctl "$k" unallow bulk_allow $(seq $((1000000 + to)) $((1000000 + cur - 1))) \
            || fail "${blabel[$k]}: unallow bulk_allow failed"
        cur=$to
    done
    bulk_cur[k]=$cur
}

# bulk_check K N: every edge of build K holds a list of N: its last company
# is allowed, the next one is not
bulk_check() {
    local k=$1 n=$2 e a
    for e in 1 2 3; do
        if [ "$n" -gt 0 ]; then
            a=$(edge_get "$k" "$e" "eval?env=production&flag=bulk_allow&company=$((1000000 + n - 1))")
            [[ $a == *'"reason":"allowed"'* ]] \
                || fail "${blabel[$k]} edge$e: company $((1000000 + n - 1)) is not allowed: $a"
        fi
        a=$(edge_get "$k" "$e" "eval?env=production&flag=bulk_allow&company=$((1000000 + n))")
        [[ $a != *'"reason":"allowed"'* ]] \
            || fail "${blabel[$k]} edge$e: company $((1000000 + n)) is allowed: $a"
    done
}

# stack_cpu K: CPU time (ns, every thread's, from /proc/PID/task/*/
# schedstat) of build K's portal-gated, its edges' nginx workers (the
# masters' children) and its redis-server: "GATED EDGES REDIS". Unlike the
# times, these are about what the work costs, not about when the machine's
# neighbours let it run.
stack_cpu() {
    local k=$1 e masters=()
    for e in 1 2 3; do
        masters+=("${nginx_pid[$((k * 3 + e - 1))]}")
    done
    perl -e '
        my ($gated, $redis, @masters) = @ARGV;
        my %m = map { $_ => 1 } @masters;
        sub ns {
            my $t = 0;
            for my $f (glob "/proc/$_[0]/task/*/schedstat") {
                open my $h, "<", $f or next;
                $t += (split " ", scalar <$h>)[0];
            }
            return $t;
        }
        my $edges = 0;
        for my $f (glob "/proc/[0-9]*/stat") {
            open my $h, "<", $f or next;
            my $st = <$h> // next;
            my ($pid, $ppid) = $st =~ /^(\d+) .*\) \S+ (\d+)/s or next;
            $edges += ns($pid) if $m{$ppid};
        }
        printf "%d %d %d\n", ns($gated), $edges, ns($redis);
    ' "${gated_pid[$k]}" "${redis_pid[$k]}" "${masters[@]}"
}

declare -A snap_bytes seed_secs loads round_secs cpu per_answer
calib=20000     # requests of the load probe
t_sync=$SECONDS
# field 19 of /proc/PID/stat: the nice value (the name, field 2, is bash)
nice_value=$(awk '{ print $19 }' /proc/$$/stat)

for n in $sizes; do
    t=$SECONDS
    for k in $(seq 0 $((nb - 1))); do
        say "${blabel[$k]}: bulk_allow allows $n companies"
        bulk_set "$k" "$n"
    done
    for k in $(seq 0 $((nb - 1))); do
        synced "$k" 120
        bulk_check "$k" "$n"
        snap_bytes[$n]+="${snap_bytes[$n]:+ / }$(edge_field "$k" 1 zone snapshot_bytes)"
    done
    seed_secs[$n]=$((SECONDS - t))

    t=$SECONDS
    load0=$(cut -d' ' -f1-3 /proc/loadavg)
    for b in $(seq 1 "$blocks"); do
        order=$(seq 0 $((nb - 1)))
        if [ $((b % 2)) = 0 ]; then
            order=$(seq $((nb - 1)) -1 0)
        fi
        for k in $order; do
            say "$n companies, block $b/$blocks: $((kills / blocks)) kills" \
                "on ${blabel[$k]}"
            read -r g0 e0 r0 < <(stack_cpu "$k")
            kill_probe "$k" $((kills / blocks)) \
                >> "${sdir[$k]}/rounds-$n.txt" \
                || fail "the kill probe failed (${blabel[$k]}, $n companies)"
            read -r g1 e1 r1 < <(stack_cpu "$k")
            read -r g e r <<< "${cpu[$n,$k]:-0 0 0}"
            cpu[$n,$k]="$((g + g1 - g0)) $((e + e1 - e0)) $((r + r1 - r0))"
        done
    done
    loads[$n]="$load0 / $(cut -d' ' -f1-3 /proc/loadavg)"
    round_secs[$n]=$((SECONDS - t))

    # what serving the probe's requests costs each build's workers, to take
    # it out of their CPU time per change
    for k in $(seq 0 $((nb - 1))); do
        read -r _ e0 _ < <(stack_cpu "$k")
        probe "$k" --mode load --requests "$calib" --path /portal/ \
            > /dev/null || fail "the load probe failed (${blabel[$k]})"
        read -r _ e1 _ < <(stack_cpu "$k")
        per_answer[$n,$k]=$(((e1 - e0) / calib))
    done

    for k in $(seq 0 $((nb - 1))); do
        daemon_view "${sdir[$k]}/gated.log" "${sdir[$k]}/rounds-$n.txt" \
            > "${sdir[$k]}/daemon-$n.txt"
        stats "${sdir[$k]}/rounds-$n.txt" "${sdir[$k]}/daemon-$n.txt" \
            > "${sdir[$k]}/stats-$n.txt"
    done
done

# p N K FIELD KEY [MODE]: a figure of build K at size N, "-" if none
p() {
    stats_file="${sdir[$2]}/stats-$1.txt"
    stat_of "${5:-kill}" "$4" "$3"
}
sha() { sha256sum "$1" | cut -c1-12; }
# 100000 -> 100,000; 0 -> none (as issue 14's table has them)
count() { perl -e '$_ = shift; 1 while s/^(\d+)(\d{3})/$1,$2/; print $_ ? $_ : "none"' "$1"; }

echo
echo "## Incremental sync (issue 14): kill cost against the size of another flag's allow list ($(date -u '+%Y-%m-%d %H:%M UTC'))"
echo
echo "$(machine_line) Run at nice $nice_value."
echo
echo "Builds, each with its own redis-server, 3 edges x $workers workers and" \
     "portal-gated, all up at once (binaries copied at the start):"
echo
for k in $(seq 0 $((nb - 1))); do
    g=$(git -C "${bdir[$k]}" describe --always --dirty 2>/dev/null \
        || echo "not in a git tree")
    echo "- **${blabel[$k]}**: ${bdir[$k]} ($g); sha256 portal-gated" \
         "$(sha "${gated_bin[$k]}"), portal-gatectl $(sha "${ctl_bin[$k]}")," \
         "module $(sha "${module[$k]}")"
done
echo
echo "Store: customer_portal (killed) and $((nflags - 1)) small flags, plus" \
     "bulk_allow with the allow list of the size given. Zone $zone, state" \
     "file: $state. $kills kill rounds per size and build, in $blocks blocks" \
     "alternating between the builds; nearest-rank percentiles. t0: the" \
     "kill command returned; t1: every worker of the 3 edges answers off."
echo
echo "| companies in one other flag's allow list | build | t0 -> t1 p50 (ms) | p99 | max | rounds | start -> t1 p50 / p99 | slowest edge's PUT or PATCH (daemon log: applied in), p50 / p99 | on after off (must be 0) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: |"
for n in $sizes; do
    for k in $(seq 0 $((nb - 1))); do
        stats_file="${sdir[$k]}/stats-$n.txt"
        echo "| $(count "$n") | ${blabel[$k]}" \
             "| **$(fmt "$(p "$n" "$k" p50 prop)")** | **$(fmt "$(p "$n" "$k" p99 prop)")**" \
             "| $(fmt "$(p "$n" "$k" max prop)") | $(p "$n" "$k" count prop)" \
             "| $(fmt "$(p "$n" "$k" p50 total)") / $(fmt "$(p "$n" "$k" p99 total)")" \
             "| $(fmt "$(p "$n" "$k" p50 put daemon)") / $(fmt "$(p "$n" "$k" p99 put daemon)")" \
             "| $(n_of kill flaps) |"
    done
done

if [ "$nb" -gt 1 ]; then
    echo
    first=${sizes%% *}
    echo "Side by side, each build against ${blabel[0]} at the same size," \
         "and against ${blabel[0]} at the first size ($(count "$first"):" \
         "what \"a change costs what changed\" should come near), t0 -> t1:"
    echo
    echo "| companies | build | p50 ratio | p99 ratio | p50 / ${blabel[0]}'s at $(count "$first") | p99 / ${blabel[0]}'s at $(count "$first") |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    div() { perl -e 'printf "%.3f", $ARGV[0] / $ARGV[1]' "$1" "$2"; }
    for n in $sizes; do
        for k in $(seq 1 $((nb - 1))); do
            echo "| $(count "$n") | ${blabel[$k]} / ${blabel[0]}" \
                 "| $(div "$(p "$n" "$k" p50 prop)" "$(p "$n" 0 p50 prop)")" \
                 "| $(div "$(p "$n" "$k" p99 prop)" "$(p "$n" 0 p99 prop)")" \
                 "| $(div "$(p "$n" "$k" p50 prop)" "$(p "$first" 0 p50 prop)")" \
                 "| $(div "$(p "$n" "$k" p99 prop)" "$(p "$first" 0 p99 prop)") |"
        done
    done
fi

# cpu_figures N K: build K's CPU per change at size N (each round is two
# changes: on, then the kill), ms: "GATED REDIS EDGES_NET SUM EDGES_GROSS
# ANSWERS_PER_CHANGE US_PER_ANSWER"; the workers' net is their gross less
# the probe's answers at the load probe's cost per answer
cpu_figures() {
    # fields 14 and 20: the off and on phases' answers
    local answers
    answers=$(awk '{ a += $14 + $20 } END { print a + 0 }' \
              "${sdir[$2]}/rounds-$1.txt")
    echo "${cpu[$1,$2]}" | awk -v c=$((2 * kills)) -v a="$answers" \
        -v per="${per_answer[$1,$2]}" '{
            net = ($2 - a * per) / 1e6 / c
            printf "%.2f %.2f %.2f %.2f %.2f %.0f %.1f\n", $1 / 1e6 / c,
                $3 / 1e6 / c, net, $1 / 1e6 / c + $3 / 1e6 / c + net,
                $2 / 1e6 / c, a / c, per / 1e3 }'
}

echo
echo "CPU time per change (each round is two: on, then the kill), ms, every" \
     "thread of the build's processes during its own blocks (the CLI's not" \
     "counted). Neighbours stretch the times above much more than these." \
     "The 6 nginx workers' time also serves the probe's requests: net is" \
     "gross less the answers at what each cost in a load of $calib requests" \
     "run after the rounds."
echo
echo "| companies | build | portal-gated | redis-server | 6 nginx workers, net | sum | workers gross | probe answers per change | µs per answer |$( [ "$nb" -gt 1 ] && echo " sum / ${blabel[0]}'s |")"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |$( [ "$nb" -gt 1 ] && echo " ---: |")"
for n in $sizes; do
    for k in $(seq 0 $((nb - 1))); do
        read -r g r net sum gross apc us < <(cpu_figures "$n" "$k")
        [ "$k" = 0 ] && sum0=$sum
        echo "| $(count "$n") | ${blabel[$k]} | $g | $r | **$net** | **$sum**" \
             "| $gross | $apc | $us |$( [ "$nb" -gt 1 ] \
             && perl -e 'printf " %.3f |", $ARGV[0] / $ARGV[1]' "$sum" "$sum0")"
    done
done

echo
labels="${blabel[*]}"
echo "| companies | snapshot_bytes of edge 1 (${labels// / / }) | seeding + sync (s) | rounds (s) | loadavg before / after the rounds |"
echo "| --- | --- | ---: | ---: | --- |"
for n in $sizes; do
    echo "| $(count "$n") | ${snap_bytes[$n]} | ${seed_secs[$n]} | ${round_secs[$n]} | ${loads[$n]} |"
done
echo
echo "Whole run after start-up: $((SECONDS - t_sync)) s." \
     "[alert]/[crit]/[emerg]/[error] lines in the edges' and the daemons'" \
     "logs: $(bad_lines)."
