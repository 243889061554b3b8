#!/usr/bin/env bash
# Installs the system packages the tests and the benchmark need, when root and missing:
# iptables, nftables, iproute2, util-linux, firewalld (with python3-dbus), dbus and strace
# (tests/hostile_input.rs watches the open flags of direct.xml's temporary file with it);
# for the packages and units (scripts/package.sh, tests/packages.rs, tests/units.rs): rpm
# (rpmbuild; rpm-build on Fedora), man-db (`man -l`) and systemd (`systemd-analyze`; no
# systemd is booted); python3 with its venv module, for the virtual environment
# scripts/ansible-venv.sh puts ansible-core in (tests/ansible.rs). No service is started.
set -euo pipefail

packages=(iptables nftables iproute2 util-linux firewalld dbus strace rpm man-db systemd python3-venv)
need=()
command -v iptables-restore >/dev/null 2>&1 || need+=(iptables)
command -v nft >/dev/null 2>&1 || need+=(nftables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v firewalld >/dev/null 2>&1 || need+=(firewalld)
command -v dbus-daemon >/dev/null 2>&1 || need+=(dbus)
command -v strace >/dev/null 2>&1 || need+=(strace)
command -v rpmbuild >/dev/null 2>&1 || need+=(rpm)
command -v man >/dev/null 2>&1 || need+=(man-db)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    # Packages must not start services here: a started firewalld would take over this
    # machine's firewall. policy-rc.d tells Debian's maintainer scripts not to start them.
    policy=/usr/sbin/policy-rc.d
    own_policy=false
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=true
    fi
    trap '"$own_policy" && rm -f "$policy"' EXIT
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    "$own_policy" && rm -f "$policy"
    trap - EXIT
  elif [ "$(id -u)" = 0 ] && command -v dnf >/dev/null 2>&1; then
    need=("${need[@]/dbus/dbus-daemon}")
    # Fedora's python3 has venv and ensurepip built in.
    need=("${need[@]/python3-venv/python3}")
    dnf install -y -q "${need[@]/#rpm/rpm-build}"
  else
    echo "missing packages (${need[*]}); namespace tests and the benchmark cannot run (need root to install: ${packages[*]})" >&2
  fi
fi

