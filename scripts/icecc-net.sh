#!/bin/bash
# An icecream network on this machine, for the tests and scripts/bench-cc.sh (as root):
# a scheduler and two iceccd daemons in network namespaces of their own, joined by a bridge.
#
#   scripts/icecc-net.sh up DIR N      start; N (1-250) picks the names and the subnet 10.77.N.0/24
#   scripts/icecc-net.sh down DIR      stop everything `up` started in DIR
#   scripts/icecc-net.sh stop-scheduler DIR   stop only the scheduler (the daemons stay)
#
# Namespace A holds the scheduler (10.77.N.2) and the local daemon, whose socket is DIR/a/iceccd.socket
# (the one builds use: `xlfs build --icecc --icecc-socket DIR/a/iceccd.socket --icecc-scheduler
# 10.77.N.2 --icecc-node local`); it is named `local` and takes no jobs itself (-m 0), so every
# compile job that icecream distributes runs in namespace B, on the daemon named `remote`
# (-m ${REMOTE_JOBS:-2}). DIR/b/iceccd.log is its log (-vvv: each job it compiles).
#
# Icecream refuses a node whose CPUs are more than 90% busy with non-nice processes (its load
# 1000). On a shared CI machine that depends on whatever else runs, so each daemon reads a
# frozen copy of /proc/stat (bound over it in a mount namespace of its own): icecream then sees
# idle CPUs. Nothing else is changed: the jobs really run in the other daemon's chroot.
set -euo pipefail

cmd=${1:?usage: icecc-net.sh up DIR N | down DIR}
dir=${2:?usage: icecc-net.sh up DIR N | down DIR}

down() {
    if [[ -f $dir/pids ]]; then
        while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$dir/pids"
        sleep 0.5
        while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$dir/pids"
        rm -f "$dir/pids"
    fi
    if [[ -f $dir/names ]]; then
        read -r nsa nsb br <"$dir/names"
        ip link del "$br" 2>/dev/null || true
        ip netns del "$nsa" 2>/dev/null || true
        ip netns del "$nsb" 2>/dev/null || true
        rm -f "$dir/names"
    fi
}

case $cmd in
down)
    down
    exit 0
    ;;
stop-scheduler)
    # The scheduler is the first process `up` started.
    kill "$(head -1 "$dir/pids")"
    exit 0
    ;;
up) ;;
*)
    echo "usage: icecc-net.sh up DIR N | down DIR" >&2
    exit 2
    ;;
esac

n=${3:?usage: icecc-net.sh up DIR N}
[[ $n =~ ^[0-9]+$ && $n -ge 1 && $n -le 250 ]] || { echo "N must be 1-250" >&2; exit 2; }
for tool in ip unshare icecc-scheduler iceccd; do
    command -v "$tool" >/dev/null || { echo "icecc-net.sh: $tool is missing (apt-get install iproute2 util-linux icecc)" >&2; exit 1; }
done
nsa=xlfs-ice$n-a nsb=xlfs-ice$n-b br=xlfsice$n
net=10.77.$n
mkdir -p "$dir/a" "$dir/b"
echo "$nsa $nsb $br" >"$dir/names"
trap 'down' ERR
# The daemons run as the icecc user and write their logs and environments here.
chown icecc "$dir" "$dir/a" "$dir/b"
chmod 755 "$dir" "$dir/a" "$dir/b"

ip netns add "$nsa"
ip netns add "$nsb"
ip link add "$br" type bridge
ip addr add "$net.1/24" dev "$br"
ip link set "$br" up
for side in a b; do
    ns=xlfs-ice$n-$side
    ip link add "$br$side" type veth peer name eth0 netns "$ns"
    ip link set "$br$side" master "$br" up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
done
ip -n "$nsa" addr add "$net.2/24" dev eth0
ip -n "$nsb" addr add "$net.3/24" dev eth0

: >"$dir/pids"
setsid ip netns exec "$nsa" icecc-scheduler -n "xlfs$n" -l "$dir/scheduler.log" -vv </dev/null >/dev/null 2>&1 &
echo $! >>"$dir/pids"

# daemon SIDE NAME JOBS
daemon() {
    local side=$1 name=$2 jobs=$3
    cat /proc/stat >"$dir/$side/stat"
    setsid ip netns exec "xlfs-ice$n-$side" unshare -m sh -c '
        mount --bind "$1/stat" /proc/stat
        export ICECC_TEST_SOCKET="$1/iceccd.socket"
        exec iceccd -n "$2" -s "$3" -m "$4" -N "$5" -b "$1/envs" -l "$1/iceccd.log" -vvv
    ' sh "$dir/$side" "xlfs$n" "$net.2" "$jobs" "$name" </dev/null >"$dir/$side/stderr" 2>&1 &
    echo $! >>"$dir/pids"
}
daemon a local 0
daemon b remote "${REMOTE_JOBS:-2}"

# Wait until the scheduler knows both daemons, and the remote one with its first load report.
for _ in $(seq 60); do
    if list=$(exec 3<>"/dev/tcp/$net.2/8766" && printf 'listcs\r\nquit\r\n' >&3 && timeout 2 cat <&3) \
        && grep -q ' local (' <<<"$list" && grep ' remote (' <<<"$list" | grep -vq 'load=1000' \
        && [[ -S $dir/a/iceccd.socket ]]; then
        echo "icecream network up: scheduler $net.2, local socket $dir/a/iceccd.socket"
        exit 0
    fi
    sleep 1
done
echo "icecc-net.sh: the daemons did not register with the scheduler within 60 s; logs in $dir" >&2
down
exit 1
