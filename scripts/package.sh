#!/usr/bin/env bash
# Builds the release binary and the packages into target/packages/: the RPM with rpmbuild
# from packaging/rpm/tproxy-firewalld.spec, the DEB with dpkg-deb from packaging/deb/.
# `scripts/package.sh rpm` or `scripts/package.sh deb` builds one of them.
#
# Needs rpmbuild (on Debian: the rpm package) and dpkg-deb; as root,
# scripts/install-packages.sh installs them. scripts/build-release.sh builds the binary.
set -euo pipefail
cd "$(dirname "$0")/.."

kinds=("$@")
[ ${#kinds[@]} -gt 0 ] || kinds=(rpm deb)
for kind in "${kinds[@]}"; do
  case "$kind" in
    rpm) command -v rpmbuild >/dev/null || { echo "package.sh: rpmbuild is missing (Debian: apt-get install rpm)" >&2; exit 1; } ;;
    deb) command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is missing" >&2; exit 1; } ;;
    *) echo "package.sh: unknown package kind '$kind' (rpm or deb)" >&2; exit 2 ;;
  esac
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
binary=$(scripts/build-release.sh)

out="$PWD/target/packages"
rm -rf "$out"
mkdir -p "$out"

build_rpm() {
  rpmbuild -bb --quiet \
    --define "_topdir $out/rpmbuild" \
    --define "_sourcedir $PWD" \
    --define "_rpmdir $out" \
    --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
    --define "pkg_version $version" \
    --define "binary $binary" \
    packaging/rpm/tproxy-firewalld.spec
  rm -rf "$out/rpmbuild"
}

build_deb() {
  local root="$out/deb" mode source destination compress
  mkdir -p "$root/DEBIAN"
  while read -r mode source destination compress; do
    [[ -z "$mode" || "$mode" == "#"* ]] && continue
    [ "$source" = @BINARY@ ] && source=$binary
    local matches=($source)
    for file in "${matches[@]}"; do
      [ -f "$file" ] || { echo "package.sh: packaging/deb/files: no file $file" >&2; exit 1; }
      local target="$root$destination"
      [[ "$destination" == */ ]] && target="$target${file##*/}"
      if [ "$compress" = gzip ]; then
        target="$target.gz"
        mkdir -p "$(dirname "$target")"
        gzip -9n <"$file" >"$target"
        chmod "$mode" "$target"
      else
        install -D -m "$mode" "$file" "$target"
      fi
    done
  done <packaging/deb/files
  local size
  size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$(dpkg --print-architecture)/" \
    -e "s/@INSTALLED_SIZE@/$size/" packaging/deb/control >"$root/DEBIAN/control"
  install -m 0644 packaging/deb/conffiles "$root/DEBIAN/conffiles"
  for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$script" "$root/DEBIAN/$script"
  done
  (cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
    sed 's|^\./||' | LC_ALL=C sort | xargs md5sum >DEBIAN/md5sums)
  dpkg-deb --root-owner-group -Zxz --build "$root" \
    "$out/tproxy-firewalld_${version}-1_$(dpkg --print-architecture).deb" >/dev/null
  rm -rf "$root"
}

for kind in "${kinds[@]}"; do
  "build_$kind"
done
ls "$out"
