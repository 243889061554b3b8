#!/usr/bin/env bash
# The slow reliability target. tests/crash.rs with SIGKILLs at random moments
# during install and uninstall: 100 with firewalld stopped (direct.xml + iptables) instead of
# the normal test run's 10, and with firewalld running (D-Bus) 40 on each of the 4 cells of
# the firewalld matrix (160 in all) instead of 3 per cell. Then tests/concurrency.rs races 2
# to 8 runs through each cell's firewalld instead of 2 and 8. About 5 minutes on 2 cores (50
# kills per cell took 7.5 with another build sharing them). Repeats it ROUNDS times (default
# 1), each round with fresh random kill moments, and stops at the first failure; the output
# names each loop's cell and seed (TPROXY_CRASH_SEED=N replays it). Needs root and firewalld,
# like scripts/test.sh (and TPROXY_FIREWALLD2_ROOT or target/firewalld2 for the 2.x cells);
# with CI=true a missing prerequisite fails instead of skipping.
#
#   scripts/crash-loop.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-1}
for ((round = 1; round <= rounds; round++)); do
    echo "crash-loop: round $round of $rounds" >&2
    TPROXY_SLOW_TESTS=1 cargo test --test crash sigkill_ -- --nocapture
    TPROXY_SLOW_TESTS=1 cargo test --test concurrency through_firewalld -- --nocapture
done
