#!/usr/bin/env bash
# Builds the release binary as the packages ship it and prints its path: linked statically
# against glibc, so the one build runs on RHEL 8 (glibc 2.28) as on the newest Fedora.
# scripts/package.sh packs it; scripts/bench.sh measures it.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the static flags off build scripts and proc macros, which run on the host.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --target "$host" >&2
echo "$PWD/target/$host/release/tproxy-firewalld"
