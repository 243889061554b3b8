#!/usr/bin/env bash
# The slow crash-safety target: tests/crash.rs with 100 SIGKILLs per mode (firewalld stopped:
# direct.xml + iptables; firewalld running: D-Bus) during install and uninstall, instead of
# the 10 of the normal test run. Repeats it ROUNDS times (default 1), each round with fresh
# random kill moments, and stops at the first failure; the output names each loop's seed
# (TPROXY_CRASH_SEED=N replays it). Needs root and firewalld, like scripts/test.sh; with
# CI=true a missing prerequisite fails instead of skipping.
#
#   scripts/crash-loop.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-1}
for ((round = 1; round <= rounds; round++)); do
    echo "crash-loop: round $round of $rounds" >&2
    TPROXY_SLOW_TESTS=1 cargo test --test crash sigkill_ -- --nocapture
done
