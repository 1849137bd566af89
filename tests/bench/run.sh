#!/bin/sh
# make bench: installs gnuplot and GNU time if missing, then runs tests/bench/bench.py.
# Extra arguments come from BENCH_ARGS, e.g. make bench BENCH_ARGS='--pods 10000 --skip seed'.
set -e
BIN=${1:?usage: run.sh path/to/kubemend}
cd "$(dirname "$0")/../.."
KM_EXTRA_PKGS="gnuplot-nox time" ./tests/deps.sh
# shellcheck disable=SC2086
exec /usr/bin/python3 tests/bench/bench.py --bin "$BIN" ${BENCH_ARGS:-}
