#!/usr/bin/env bash
# The benchmark: installs the system packages it needs (when root and missing),
# then runs benches/firewalld.rs, which starts a private firewalld in its own namespaces
# and writes BENCHMARKS.md. Takes a few minutes; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-packages.sh
# The binary the packages ship is the one measured.
TPROXY_BENCH_BINARY=$(scripts/build-release.sh) cargo bench --bench firewalld
