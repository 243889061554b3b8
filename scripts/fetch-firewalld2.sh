#!/usr/bin/env bash
# Fetches firewalld 2.x (Debian trixie's firewalld and python3-firewall packages) and unpacks
# it into target/firewalld2/root, for the firewalld 2.x cells of the test matrix. The system's
# firewalld, apt configuration and state (/etc/apt, /var/lib/apt, /var/cache/apt) are left
# alone: apt reads a scratch sources list and keeps its lists and cache under target/.
#
# Idempotent: an unpacked tree that is complete is kept as it is (delete target/firewalld2 to
# fetch again). Prints the root directory on success; the tests find it through
# TPROXY_FIREWALLD2_ROOT. Only firewalld and python3-firewall come from trixie; the rest
# (python3-nftables, libnftables, python3-dbus, python3-gi) is the system's.
set -euo pipefail
cd "$(dirname "$0")/.."

dir="$PWD/target/firewalld2"
root="$dir/root"
suite="${FIREWALLD2_SUITE:-trixie}"
mirror="${FIREWALLD2_MIRROR:-http://deb.debian.org/debian}"

complete() {
  [ -f "$root/.complete" ] &&
    [ -x "$root/usr/sbin/firewalld" ] &&
    [ -f "$root/usr/bin/firewall-cmd" ] &&
    [ -d "$root/usr/lib/firewalld" ] &&
    [ -d "$root/usr/lib/python3/dist-packages/firewall" ]
}

if complete; then
  echo "$root"
  exit 0
fi

command -v apt-get >/dev/null 2>&1 || { echo "fetch-firewalld2: apt-get is needed" >&2; exit 1; }
command -v dpkg-deb >/dev/null 2>&1 || { echo "fetch-firewalld2: dpkg-deb is needed" >&2; exit 1; }

mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs"
echo "deb $mirror $suite main" >"$dir/apt/sources.list"
apt_options=(
  -o "Dir::Etc::sourcelist=$dir/apt/sources.list"
  -o "Dir::Etc::sourceparts=-"
  -o "Dir::State::Lists=$dir/apt/lists"
  -o "Dir::Cache=$dir/apt/cache"
  -o "Dir::State::status=/var/lib/dpkg/status"
  -o "APT::Sandbox::User=root"
  -o "Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false"
)

packages=(firewalld python3-firewall)
# A download left by an earlier run is used as it is; only missing packages are fetched.
missing=()
for package in "${packages[@]}"; do
  compgen -G "$dir/debs/${package}_*.deb" >/dev/null || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get "${apt_options[@]}" -qq update
  (cd "$dir/debs" && apt-get "${apt_options[@]}" -qq download "${missing[@]}")
fi

rm -rf "$root.partial"
mkdir -p "$root.partial"
for package in "${packages[@]}"; do
  debs=("$dir/debs/${package}"_*.deb)
  [ ${#debs[@]} -eq 1 ] || {
    echo "fetch-firewalld2: expected one ${package} package in $dir/debs, found ${#debs[@]}" >&2
    exit 1
  }
  dpkg-deb -x "${debs[0]}" "$root.partial"
done
version=$(dpkg-deb -f "$dir/debs/firewalld_"*.deb Version)
echo "$version" >"$root.partial/.complete"
rm -rf "$root"
mv "$root.partial" "$root"
complete || { echo "fetch-firewalld2: $root is incomplete after unpacking" >&2; exit 1; }
echo "fetch-firewalld2: firewalld $version unpacked" >&2
echo "$root"
