#!/bin/sh
# The guest services' own contamination check, run at the end of each post-install in $DESTDIR.
# The engine's check accepts any library of the toolchain root, and the pinned Debian root has
# more than the guest will: libcrypt (libxcrypt), libssl, libz, libexpat, libelf... So here
# every DT_NEEDED of an installed ELF file must be the package's own, in /sysroot (a declared
# dependency), or one of the libraries of the book's glibc and gcc-libs recipes.
set -eu
base="ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1
libresolv.so.2 libutil.so.1 libanl.so.1 libgcc_s.so.1 libstdc++.so.6"
bad=0
for f in $(find . -type f \( -perm -u+x -o -name '*.so*' \)); do
    head -c 4 "$f" | grep -q 'ELF' || continue
    for lib in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        case " $(echo $base) " in *" $lib "*) continue ;; esac
        [ -n "$(find . /sysroot -name "$lib" -print -quit 2>/dev/null)" ] && continue
        echo "guest-needed: ${f#.} needs $lib: not from a declared dependency nor glibc/gcc-libs (the toolchain root has it, the guest will not): add its recipe to depends, or configure it off" >&2
        bad=1
    done
done
exit $bad
