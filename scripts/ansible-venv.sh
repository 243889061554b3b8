#!/usr/bin/env bash
# ansible-core in a scratch virtual environment, for the Ansible module's tests
# (tests/ansible.rs): creates target/ansible-venv once, from the Python package index, and
# prints its bin directory. Idempotent: a complete environment is reused as it is. Needs
# python3 with its venv module (Debian: python3-venv, which scripts/install-packages.sh
# installs). Nothing outside target/ is changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# The ansible-core line the tests were written against; 2.18 runs on Python 3.11 to 3.13.
requirement='ansible-core>=2.18,<2.19'
venv=target/ansible-venv
marker="$venv/.complete"
mkdir -p target
# One creator at a time (tests run in parallel); the others then find it complete.
exec 9>target/ansible-venv.lock
flock 9

if [ -f "$marker" ] && [ "$(cat "$marker")" = "$requirement" ]; then
  echo "$PWD/$venv/bin"
  exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
"$venv/bin/python" -m pip install --quiet "$requirement" >&2
"$venv/bin/ansible-playbook" --version >&2
echo "$requirement" >"$marker"
echo "$PWD/$venv/bin"
