#!/usr/bin/env bash
# The whole test suite: installs the system packages the tests need (when root and
# missing), then formatting, lints, and every test. Tests that change netfilter run in
# their own network namespaces; under CI=true they fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-packages.sh

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
