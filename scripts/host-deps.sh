#!/usr/bin/env bash
# Install the Debian packages xlfs needs on the build machine.
#   host-deps.sh test   what the test suite needs
#   host-deps.sh build  what building and booting the systems of the book needs
# `xlfs doctor` checks the same list and prints this command when something is missing.
set -euo pipefail
what=${1:-build}
test_pkgs=(build-essential patch e2fsprogs cpio xz-utils bzip2 zstd ca-certificates)
build_pkgs=("${test_pkgs[@]}" bc bison flex gawk texinfo python3 libelf-dev libssl-dev pkg-config
            uuid-dev libyajl-dev zlib1g-dev libzstd-dev liblzma-dev libncurses-dev file rsync)
case "$what" in
  test) pkgs=("${test_pkgs[@]}") ;;
  build) pkgs=("${build_pkgs[@]}") ;;
  *) echo "usage: $0 test|build" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_qemu=0
if [ "$what" = build ] && ! command -v qemu-system-x86_64 >/dev/null; then need_qemu=1; fi
if [ ${#missing[@]} -eq 0 ] && [ $need_qemu -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: missing ${missing[*]}; run as root: sudo $0 $what" >&2
  exit 1
fi
bash "$(dirname "$0")/apt-sources.sh"
apt-get update -q
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if [ $need_qemu -eq 1 ]; then
  # Debian 12's own qemu-system-x86 conflicts with the newer qemu-utils from backports.
  apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
fi
