#!/usr/bin/env bash
# STAND-IN Android device(s) for edgernn's adb runner: a small adb-protocol daemon
# (scripts/android_standin/adbd_standin.py) under the arm64 Python of the emulated Debian root
# (scripts/emulated_pi.sh build), reached by the REAL adb client/server with `adb connect`.
# NOT Android: see scripts/android_standin.md for what is real and what is not.
#
#   scripts/android_standin.sh start [OPTIONS]   # one stand-in device per port (default 5555)
#       --port N            TCP port on 127.0.0.1 (serial 127.0.0.1:N)
#       --auth off|never|accept   never: the device stays 'unauthorized' (prompt never accepted)
#       --state device|offline    offline: the device never finishes the adb handshake
#       --no-shell-v2       no exit codes over `adb shell` (like Android < 7)
#       --form new|old      benchmark_model stand-in output form (default new)
#       --prop KEY=VALUE    a getprop property (repeatable)
#       --no-connect        do not run `adb connect`
#   scripts/android_standin.sh stop [--port N]   # stop one device (default: all) and disconnect it
#   scripts/android_standin.sh status            # list running stand-in devices; exit 3 if none
#   scripts/android_standin.sh connect --port N  # `adb connect 127.0.0.1:N` again
#
# adb: the server at ANDROID_ADB_SERVER_PORT (default 5037) on 127.0.0.1 is used (started with
# ADB_MDNS=0 if needed); ADB overrides the adb command.
# Exit code 77 (one line "android_standin: SKIP: <reason>" on stderr): this host cannot provide
# the stand-in (not root, no adb, emulated root missing or arm64 binaries not running).
# Environment: EDGERNN_PI_DIR (emulated root, default /var/tmp/edgernn-pi),
# EDGERNN_ANDROID_DIR (state + bind mount, default /var/tmp/edgernn-android).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PI_ROOT=${EDGERNN_PI_DIR:-/var/tmp/edgernn-pi}/root
DIR=${EDGERNN_ANDROID_DIR:-/var/tmp/edgernn-android}
ROOT=$DIR/root          # a private bind mount of the emulated root (own /proc, own processes)
STATE=$DIR/state
OPT=/opt/edgernn-android-standin
ADB=${ADB:-adb}
ADB_PORT=${ANDROID_ADB_SERVER_PORT:-5037}
export QEMU_CPU=${EDGERNN_ANDROID_QEMU_CPU:-cortex-a76}

log() { printf 'android_standin: %s\n' "$*"; }
skip() { printf 'android_standin: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'android_standin: ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (chroot, mounts)"
lock() { mkdir -p "$DIR"; exec 9>"$DIR/.lock"; flock 9; }
# 9>&-: a server that adb forks must not inherit (and so hold) our lock
adbc() { ADB_MDNS=0 timeout 60 "$ADB" -P "$ADB_PORT" "$@" 9>&-; }

cpuinfo_text() {   # 8 cores like a phone's big.LITTLE SoC (4x A55 + 4x A76); cosmetic
    local i part
    for i in 0 1 2 3 4 5 6 7; do
        if [ "$i" -lt 4 ]; then part=0xd05; else part=0xd0b; fi
        printf 'processor\t: %s\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: %s\nCPU revision\t: 0\n\n' "$part"
    done
    printf 'Hardware\t: edgernn Android stand-in (qemu-user on x86)\n'
}

mounts_under() { awk -v p="$1/" 'index($2 "/", p) == 1 {print $2}' /proc/self/mounts | sort -r; }

setup_root() {
    [ -x "$PI_ROOT/usr/local/bin/python3-arm" ] \
        || skip "emulated arm64 root missing ($PI_ROOT): run scripts/emulated_pi.sh build"
    command -v "$ADB" >/dev/null || skip "adb not installed (apt-get install adb)"
    mkdir -p "$ROOT" "$STATE"
    if ! mountpoint -q "$ROOT"; then
        mount --bind "$PI_ROOT" "$ROOT"
        # private: our /proc etc. must not propagate into the emulated Pi's root (or back)
        mount --make-private "$ROOT"
    fi
    # files of the stand-in device (in the shared root; the runner only touches /data/local/tmp)
    mkdir -p "$ROOT$OPT/bin" "$ROOT$OPT/run" "$ROOT/data/local/tmp"
    chmod 0771 "$ROOT/data" "$ROOT/data/local" "$ROOT/data/local/tmp"
    install -m 0755 "$HERE/android_standin/adbd_standin.py" "$ROOT$OPT/adbd_standin.py"
    install -m 0755 "$HERE/android_standin/benchmark_model_standin.py" "$ROOT$OPT/benchmark_model_standin.py"
    cat >"$ROOT$OPT/bin/getprop" <<'EOF'
#!/bin/sh
# STAND-IN getprop (edgernn android stand-in): reads this device's props file
f=${EDGERNN_STANDIN_PROPS:-/opt/edgernn-android-standin/run/default.prop}
if [ $# -eq 0 ]; then
    while IFS= read -r l; do
        case $l in ''|'#'*) continue ;; esac
        printf '[%s]: [%s]\n' "${l%%=*}" "${l#*=}"
    done <"$f"
    exit 0
fi
while IFS= read -r l; do
    case $l in "$1="*) printf '%s\n' "${l#*=}"; exit 0 ;; esac
done <"$f"
printf '%s\n' "${2:-}"
EOF
    cat >"$ROOT$OPT/bin/taskset" <<'EOF'
#!/bin/sh
# STAND-IN for toybox taskset (edgernn android stand-in): taskset MASK COMMAND [ARGS...]
exec /usr/local/bin/python3-arm -c '
import os, sys
if len(sys.argv) < 3:
    sys.exit("usage: taskset [-p] MASK COMMAND [ARGS...]")
try:
    mask = int(sys.argv[1], 16)
except ValueError:
    sys.exit("taskset: bad mask " + repr(sys.argv[1]))
try:
    os.sched_setaffinity(0, {i for i in range(mask.bit_length()) if mask >> i & 1})
except OSError as e:
    sys.exit("taskset: sched_setaffinity: " + e.strerror)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as e:
    sys.exit("taskset: exec " + sys.argv[2] + ": " + e.strerror)
' "$@"
EOF
    chmod 0755 "$ROOT$OPT/bin/getprop" "$ROOT$OPT/bin/taskset"
    cpuinfo_text >"$STATE/cpuinfo"
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    findmnt -rn "$ROOT/proc/cpuinfo" >/dev/null || mount --bind "$STATE/cpuinfo" "$ROOT/proc/cpuinfo"
    mountpoint -q "$ROOT/sys" || mount -t sysfs -o ro sysfs "$ROOT/sys" 2>/dev/null || true
    [ "$(chroot "$ROOT" uname -m 2>/dev/null)" = aarch64 ] \
        || skip "arm64 binaries do not run in $ROOT (binfmt qemu-aarch64): run scripts/emulated_pi.sh build"
}

teardown_root() {
    local m
    for m in $(mounts_under "$ROOT"); do umount "$m" 2>/dev/null || umount -l "$m"; done
    if mountpoint -q "$ROOT"; then umount "$ROOT" 2>/dev/null || umount -l "$ROOT"; fi
}

daemon_pid() {   # pid of the stand-in on port $1 if it is running
    local pid
    pid=$(cat "$STATE/adbd-$1.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "adbd_standin.py --port $1 " && echo "$pid"
}

running_ports() {
    local f p
    for f in "$STATE"/adbd-*.pid; do
        [ -e "$f" ] || continue
        p=${f##*/adbd-}; p=${p%.pid}
        daemon_pid "$p" >/dev/null && echo "$p"
    done
    return 0
}

port_open() { timeout 1 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

ensure_adb_server() {
    adbc start-server >/dev/null 2>&1 || die "cannot start the adb server on port $ADB_PORT"
}

connect() {
    local port=$1 out
    ensure_adb_server
    out=$(adbc connect "127.0.0.1:$port" 2>&1) || true
    log "adb connect 127.0.0.1:$port: $out"
}

cmd_start() {
    local port=5555 auth=off state=device form=new connect=1 extra=() props=()
    while [ $# -gt 0 ]; do
        case $1 in
            --port) port=${2:?}; shift 2 ;;
            --auth) auth=${2:?}; shift 2 ;;
            --state) state=${2:?}; shift 2 ;;
            --form) form=${2:?}; shift 2 ;;
            --prop) props+=(--prop "${2:?}"); shift 2 ;;
            --no-shell-v2) extra+=(--no-shell-v2); shift ;;
            --no-connect) connect=0; shift ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [[ $port =~ ^[0-9]+$ ]] || die "bad port $port"
    case $form in old|new) ;; *) die "bad --form $form (old|new)" ;; esac
    lock
    setup_root
    if pid=$(daemon_pid "$port"); then
        log "already running on 127.0.0.1:$port (pid $pid)"
    else
        port_open "$port" && skip "port 127.0.0.1:$port is already in use"
        rm -f "$ROOT$OPT/run/$port.ready"
        : >"$STATE/adbd-$port.log"
        # setsid: own session (not killed with the caller's terminal); no fork, so $! is the daemon
        setsid chroot "$ROOT" /usr/local/bin/python3-arm "$OPT/adbd_standin.py" --port "$port" \
            --auth "$auth" --state "$state" --props-out "$OPT/run/$port.prop" \
            --ready-file "$OPT/run/$port.ready" --env "EDGERNN_STANDIN_BENCHMARK_FORM=$form" \
            "${extra[@]}" "${props[@]}" -v </dev/null >>"$STATE/adbd-$port.log" 2>&1 9>&- &
        echo $! >"$STATE/adbd-$port.pid"
        local i
        for i in $(seq 300); do
            [ -s "$ROOT$OPT/run/$port.ready" ] && break
            kill -0 "$(cat "$STATE/adbd-$port.pid")" 2>/dev/null \
                || die "stand-in exited: $(tail -1 "$STATE/adbd-$port.log")"
            sleep 0.1
        done
        [ -s "$ROOT$OPT/run/$port.ready" ] || die "stand-in on port $port did not come up in 30 s"
        log "stand-in adbd on 127.0.0.1:$port (pid $(cat "$STATE/adbd-$port.pid"), state $state, auth $auth, benchmark form $form)"
    fi
    [ "$connect" = 1 ] && connect "$port"
    return 0
}

stop_port() {
    local port=$1 pid i
    adbc disconnect "127.0.0.1:$port" >/dev/null 2>&1 || true
    if pid=$(daemon_pid "$port"); then
        kill "$pid"
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
        log "stand-in on port $port (pid $pid) stopped"
    fi
    rm -f "$STATE/adbd-$port.pid" "$STATE/adbd-$port.log" "$ROOT$OPT/run/$port.ready" \
        "$ROOT$OPT/run/$port.prop"
}

cmd_stop() {
    local port="" p rootreal
    while [ $# -gt 0 ]; do
        case $1 in --port) port=${2:?}; shift 2 ;; *) die "stop: unknown argument $1" ;; esac
    done
    lock
    if [ -n "$port" ]; then stop_port "$port"; else for p in $(running_ports); do stop_port "$p"; done; fi
    if [ -z "$(running_ports)" ]; then
        # commands the stand-ins started (their root is our bind mount, never the Pi's path)
        if mountpoint -q "$ROOT"; then
            rootreal=$(realpath "$ROOT")
            for p in /proc/[0-9]*; do
                if [ "$(readlink "$p/root" 2>/dev/null)" = "$rootreal" ]; then
                    kill -9 "${p#/proc/}" 2>/dev/null || true
                fi
            done
        fi
        teardown_root
        log "no stand-in device left; unmounted $ROOT"
    fi
}

cmd_status() {
    local p any=3
    for p in $(running_ports); do log "running: 127.0.0.1:$p (pid $(daemon_pid "$p"))"; any=0; done
    [ $any = 0 ] || log "no stand-in device running"
    return $any
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    status) shift; cmd_status ;;
    connect) shift; [ "${1:-}" = --port ] || die "connect --port N"; connect "${2:?}" ;;
    *) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
