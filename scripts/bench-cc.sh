#!/bin/bash
# Figures for ccache and icecream (issue 9), measured with the real xlfs on this machine:
#
#   scripts/bench-cc.sh ccache    rebuild PKG (default linux) after a one-option change to its
#                                 config fragment (linux: CONFIG_IKCONFIG=y appended to
#                                 kernel/xen-kernel.config; busybox: "# CONFIG_CAL is not set"
#                                 appended to base/busybox.config), with the package's ccache warm
#                                 from a build of the unchanged recipe, and without ccache in
#                                 another home
#   scripts/bench-cc.sh icecc     build a package with many small compile jobs (PKG, default
#                                 busybox) locally and through icecream (scripts/icecc-net.sh:
#                                 a scheduler and a remote daemon in network namespaces on this
#                                 machine), and say how many jobs ran remotely
#
# Each build reports wall time and CPU time (the build's own processes; with icecream, the remote
# daemon's compilers are not in it). The machine may be shared: the load average is printed
# with each figure, and builds run under `nice`. Environment: BENCH (work directory, default
# /var/tmp/xlfs-cc-bench), XLFS_TOOLCHAINS (default /var/tmp/xlfs-cold/toolchains), XLFS_SOURCES
# (default /var/tmp/xlfs-cold/sources), XLFS (the xlfs binary; default: build this checkout's),
# JOBS (default 2), PKG, PARALLEL=1 (the ccache figure's
# build without ccache runs alongside its warm-up: compare CPU times then).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH:-/var/tmp/xlfs-cc-bench}
toolchains=${XLFS_TOOLCHAINS:-/var/tmp/xlfs-cold/toolchains}
sources=${XLFS_SOURCES:-/var/tmp/xlfs-cold/sources}
jobs=${JOBS:-2}
mkdir -p "$bench"
if [[ -n ${XLFS:-} ]]; then
    xlfs=$XLFS
else
    (cd "$repo" && cargo build -q -p xlfs)
    xlfs="$repo/target/debug/xlfs"
fi

# build BOOK HOME TARGET ARGS...: build TARGET, print "wall cpu artifact" from its log
build() {
    local book=$1 home=$2 target=$3
    shift 3
    nice "$xlfs" --book "$book" --home "$home" --toolchains "$toolchains" --sources "$sources" -q \
        build "$target" --no-runtime -j"$jobs" "$@" >&2
    "$xlfs" --book "$book" --home "$home" log "$target" |
        sed -n 's/^==> xlfs: done in \([0-9.]*\)s (cpu \([0-9.]*\)s), artifact \([0-9a-f]*\).*/\1 \2 \3/p' | tail -1
}

load() { cut -d' ' -f1-3 /proc/loadavg; }

ccache_figure() {
    local pkg=${PKG:-linux} fragment option
    case $pkg in
    linux) fragment=kernel/xen-kernel.config option="CONFIG_IKCONFIG=y" ;;
    busybox) fragment=base/busybox.config option="# CONFIG_CAL is not set" ;;
    *)
        echo "bench-cc.sh ccache: PKG is linux or busybox" >&2
        exit 2
        ;;
    esac
    local book2=$bench/book-$pkg-changed
    rm -rf "$book2"
    cp -r "$repo/book" "$book2"
    echo "$option" >>"$book2/$fragment"
    local warm=$bench/home-$pkg-ccache plain=$bench/home-$pkg-plain
    rm -rf "$warm" "$plain"
    echo "load before: $(load)" >&2
    # PARALLEL=1: the build without ccache runs at the same time as the warm-up (both full
    # builds; compare CPU times then, wall times are of two builds sharing the machine).
    if [[ ${PARALLEL:-0} == 1 ]]; then
        build "$book2" "$plain" "$pkg" >"$bench/plain.out" &
        local plain_pid=$!
    fi
    read -r w0 c0 a0 < <(build "$repo/book" "$warm" "$pkg" --ccache)
    echo "warm-up (unchanged config, cold ccache): wall ${w0}s cpu ${c0}s; load $(load)" >&2
    read -r w1 c1 a1 < <(build "$book2" "$warm" "$pkg" --ccache)
    local stats
    stats=$("$xlfs" --book "$book2" --home "$warm" log "$pkg" | grep '^==> xlfs: ccache .* hits' || true)
    echo "rebuild with ccache: wall ${w1}s cpu ${c1}s; $stats; load $(load)" >&2
    if [[ ${PARALLEL:-0} == 1 ]]; then
        wait "$plain_pid"
        read -r w2 c2 a2 <"$bench/plain.out"
    else
        read -r w2 c2 a2 < <(build "$book2" "$plain" "$pkg")
    fi
    echo "rebuild without ccache: wall ${w2}s cpu ${c2}s; load $(load)" >&2
    echo
    echo "$pkg, one option changed ($option in $fragment), -j$jobs:"
    printf '  %-34s %10s %10s\n' "" "wall (s)" "cpu (s)"
    printf '  %-34s %10s %10s\n' "cold build, ccache filling" "$w0" "$c0"
    printf '  %-34s %10s %10s\n' "rebuild with ccache" "$w1" "$c1"
    printf '  %-34s %10s %10s\n' "rebuild without ccache" "$w2" "$c2"
    echo "  $stats"
    if [[ $a1 == "$a2" ]]; then
        echo "  artifacts with and without ccache: identical ($a1)"
    else
        echo "  artifacts with and without ccache DIFFER: $a1 vs $a2"
    fi
}

icecc_figure() {
    local pkg=${PKG:-busybox}
    icecc_net=$bench/icecc-net-$pkg
    local net=$icecc_net sched="10.77.${NET:-77}.2"
    local local_home=$bench/home-$pkg-local ice_home=$bench/home-$pkg-icecc ice_home2=$bench/home-$pkg-icecc2
    rm -rf "$local_home" "$ice_home" "$ice_home2"
    bash "$repo/scripts/icecc-net.sh" down "$net" || true
    rm -rf "$net"
    bash "$repo/scripts/icecc-net.sh" up "$net" "${NET:-77}" >&2
    trap 'bash "$repo/scripts/icecc-net.sh" down "$icecc_net"' EXIT
    local ice=(--icecc --icecc-socket "$net/a/iceccd.socket" --icecc-scheduler "$sched" --icecc-node local)
    remote_done() { grep -c 'Remote compilation completed with exit code 0' "$net/b/iceccd.log" || true; }
    read -r w0 c0 a0 < <(build "$repo/book" "$local_home" "$pkg")
    echo "local: wall ${w0}s cpu ${c0}s; load $(load)" >&2
    local before
    before=$(remote_done)
    read -r w1 c1 a1 < <(build "$repo/book" "$ice_home" "$pkg" "${ice[@]}")
    local remote1=$(($(remote_done) - before))
    echo "icecream, first use: wall ${w1}s cpu ${c1}s; $remote1 jobs remote; load $(load)" >&2
    # Steady state: another home with the icecream environment already made.
    mkdir -p "$ice_home2"
    cp -a "$ice_home/icecc" "$ice_home2/icecc"
    before=$(remote_done)
    read -r w2 c2 a2 < <(build "$repo/book" "$ice_home2" "$pkg" "${ice[@]}")
    local remote2=$(($(remote_done) - before))
    local lent
    lent=$("$xlfs" --book "$repo/book" --home "$ice_home2" log "$pkg" | grep 'took a remote slot' || true)
    echo "icecream: wall ${w2}s cpu ${c2}s; $remote2 jobs remote; load $(load)" >&2
    echo
    echo "$pkg, -j$jobs, icecream on this machine (the remote daemon shares its cores):"
    printf '  %-44s %10s %10s\n' "" "wall (s)" "cpu (s)"
    printf '  %-44s %10s %10s\n' "local" "$w0" "$c0"
    printf '  %-44s %10s %10s\n' "icecream, first use (makes its environment)" "$w1" "$c1"
    printf '  %-44s %10s %10s\n' "icecream ($remote2 jobs remote)" "$w2" "$c2"
    echo "  ${lent#==> xlfs: }"
    echo "  (cpu: the build's own processes; the remote daemon's compilers are not counted)"
    if [[ $a0 == "$a1" && $a0 == "$a2" ]]; then
        echo "  artifacts local and through icecream: identical ($a0)"
    else
        echo "  artifacts local and through icecream DIFFER: $a0 vs $a1 vs $a2"
    fi
}

case ${1:-all} in
ccache) ccache_figure ;;
icecc) icecc_figure ;;
all)
    icecc_figure
    ccache_figure
    ;;
*)
    echo "usage: scripts/bench-cc.sh [ccache|icecc|all]" >&2
    exit 2
    ;;
esac
