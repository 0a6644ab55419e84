#!/usr/bin/env bash
# Derive extra apt sources from the machine's own /etc/apt/sources.list.d/debian.sources:
#  - deb-src entries for bookworm, trixie and sid (to locate upstream .orig tarballs);
#  - a bookworm-backports deb entry (QEMU 10 for qemu-system-x86).
# The archive host is read from the machine, never written here.
set -euo pipefail
src=/etc/apt/sources.list.d/debian.sources
out=/etc/apt/sources.list.d/xlfs.sources
[ -r "$src" ] || { echo "apt-sources: $src not found; add deb-src entries by hand" >&2; exit 1; }
uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$src")
key=$(awk '/^Signed-By:/ {print $2; exit}' "$src")
[ -n "$uri" ] || { echo "apt-sources: no URIs: line in $src" >&2; exit 1; }
tmp=$(mktemp)
cat >"$tmp" <<EOT
Types: deb-src
URIs: $uri
Suites: bookworm trixie sid
Components: main
Signed-By: $key

Types: deb
URIs: $uri
Suites: bookworm-backports
Components: main
Signed-By: $key
EOT
if ! cmp -s "$tmp" "$out" 2>/dev/null; then
  install -m 0644 "$tmp" "$out"
  echo "apt-sources: wrote $out"
fi
rm -f "$tmp"
