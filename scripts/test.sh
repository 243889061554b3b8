#!/usr/bin/env bash
# The whole test suite: installs the system packages the tests need (when root and
# missing), then formatting, lints, and every test. Tests that change netfilter run in
# their own network namespaces; under CI=true they fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(iptables nftables iproute2 util-linux)
need=()
command -v iptables-restore >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif [ "$(id -u)" = 0 ] && command -v dnf >/dev/null 2>&1; then
    dnf install -y -q "${need[@]}"
  else
    echo "missing packages (${need[*]}); namespace tests will skip (need root to install: ${packages[*]})" >&2
  fi
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test --all-targets
