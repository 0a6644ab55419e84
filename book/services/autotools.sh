#!/bin/sh
# GNU autoconf, automake and libtool built from the recipe's own sources (its extra [[source]]s)
# into /build/tools, inside the build tree and never installed: for sources whose Debian .orig
# is a git snapshot without a generated configure or Makefile.in (libxcrypt, OpenDKIM). The
# pinned root has the m4 and perl they run with. Usage: . /book/autotools.sh (then autoreconf).
# (DESTDIR= : the build environment exports DESTDIR, which these are not installed into.)
set -e
tools=/build/tools
export PATH="$tools/bin:$PATH"
# aclocal looks in its own prefix; the root's macros (pkgconf's pkg.m4) are in /usr/share/aclocal.
export ACLOCAL_PATH=/usr/share/aclocal
for d in "$SRC"/autoconf-[0-9]* "$SRC"/automake-[0-9]* "$SRC"/libtool-[0-9]*; do
    [ -d "$d" ] || { echo "autotools.sh: no source directory $d" >&2; exit 1; }
    ( cd "$d" && ./configure --prefix="$tools" --disable-static >/dev/null \
        && make -j"$JOBS" >/dev/null && make DESTDIR= install >/dev/null )
done
autoreconf --version | head -n1
automake --version | head -n1
libtoolize --version | head -n1
