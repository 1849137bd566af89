#!/bin/sh
# run.sh BUILD SECONDS WORK TARGET... — runs each libFuzzer binary BUILD/fuzz/TARGET for SECONDS
# seconds on the checked-in corpus (tests/fuzz/corpus/TARGET) and regression inputs
# (tests/fuzz/regress/TARGET), new inputs going to BUILD/WORK/TARGET (emptied first when WORK is
# "smoke").  One line per target (executions, wall time, coverage, corpus); on a finding the log's
# end, the input in BUILD/crashes/, and exit 1 after the other targets ran.  FUZZ_ARGS: extra
# libFuzzer flags (e.g. -runs=1000000).  ASAN_OPTIONS defaults to no allocation stacks (several
# times faster on allocation-heavy targets; replay a finding with build*/fuzz-replay/<target> for
# them).  Targets listed in tests/fuzz/xfail report XFAIL/XPASS instead of failing.
set -u
export ASAN_OPTIONS="${ASAN_OPTIONS:-malloc_context_size=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
build=$1 secs=$2 work=$3
shift 3
here=$(dirname "$0")
status=0
mkdir -p "$build/crashes" "$build/logs"
for t in "$@"; do
    dir="$build/$work/$t"
    [ "$work" = smoke ] && rm -rf "$dir"
    mkdir -p "$dir"
    set -- "$dir"
    for d in "$here/corpus/$t" "$here/regress/$t"; do [ -d "$d" ] && set -- "$@" "$d"; done
    log="$build/logs/$t.log"
    extra=""
    case $t in # big seeds (manifests, watch streams) are kept whole but mutated within 4 KiB
    fuzz_yaml | fuzz_lines) extra="-max_len=4096" ;;
    esac
    start=$(date +%s)
    # shellcheck disable=SC2086
    if "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$build/crashes/$t-" $extra ${FUZZ_ARGS:-} "$@" \
        >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        cov=$(grep -E '^#[0-9]+' "$log" | tail -1 |
            sed -n 's/.* cov: \([0-9]*\).* corp: \([0-9]*\).*/cov \1, corpus \2/p')
        echo "fuzz $t: ${execs:-?} executions in $(($(date +%s) - start)) s, ${cov:-?}, no finding"
        xfail=$(sed -n "s/^$t //p" "$here/xfail" 2>/dev/null)
        [ -n "$xfail" ] && echo "fuzz $t: XPASS, remove its line from tests/fuzz/xfail"
    elif xfail=$(sed -n "s/^$t //p" "$here/xfail" 2>/dev/null) && [ -n "$xfail" ]; then
        echo "fuzz $t: XFAIL (expected: $xfail; log $log)"
    else
        echo "fuzz $t: FINDING (log $log)" >&2
        tail -n 40 "$log" >&2
        status=1
    fi
done
exit $status
