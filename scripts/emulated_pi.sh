#!/usr/bin/env bash
# Emulated Raspberry Pi test bed: an arm64 Debian root run under qemu-user on this x86 host,
# reachable over SSH on 127.0.0.1. A STAND-IN for a Pi 4: timings are NOT Pi latency.
#
#   scripts/emulated_pi.sh build            # arm64 root + aarch64 wheels (cached as .tar.zst)
#   scripts/emulated_pi.sh start [--port N]... # sshd on 127.0.0.1:N (default 22022), sessions
#                                           # chrooted; --port repeated: one sshd on every port
#   scripts/emulated_pi.sh check            # ssh in, print arch + runtime versions
#   scripts/emulated_pi.sh ssh CMD...       # run CMD on the "Pi"
#   scripts/emulated_pi.sh status | stop | clean [--cache]
#
# Exit code 77 (one line "emulated_pi: SKIP: <reason>" on stderr): the host cannot run it
# (binfmt/qemu unavailable, sshd cannot start, root not built). Needs root on the host.
# Environment: EDGERNN_PI_DIR (default /var/tmp/edgernn-pi), EDGERNN_PI_PORT (default 22022),
# EDGERNN_PI_PORTS ("22022 22023": start's ports when no --port), XDG_CACHE_HOME,
# EDGERNN_PI_NO_CACHE=1 (build fresh, do not read the cache),
# EDGERNN_PI_PIP (host pip command, default "python3 -m pip"), EDGERNN_PI_MIRROR.
set -euo pipefail

PI_DIR=${EDGERNN_PI_DIR:-/var/tmp/edgernn-pi}
ROOT=$PI_DIR/root
STATE=$PI_DIR/state
CACHE_DIR=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/edgernn
DEFAULT_PORTS=${EDGERNN_PI_PORTS:-${EDGERNN_PI_PORT:-22022}}
export QEMU_CPU=${QEMU_CPU:-cortex-a72}    # Pi 4 core; qemu's default "max" is ~10x slower

# ---- what goes into the root (the cache key is a hash of this block) ------------------------
SUITE=bookworm
MIRROR=${EDGERNN_PI_MIRROR:-http://deb.debian.org/debian}
DEB_INCLUDE=python3,libstdc++6,libgcc-s1,libgomp1,dash,bash,coreutils,ca-certificates,grep,sed,findutils,tar,gzip,hostname,procps
PIP_ARM=(numpy onnxruntime ai-edge-litert)              # -> /opt/site-arm (current releases)
PIP_TFLITE214=("tflite-runtime==2.14.0" "numpy<2")       # -> /opt/site-tflite214 (old runtime)
PY_TAGS=(--python-version 3.11 --implementation cp --abi cp311)
# bookworm has glibc 2.36: accept manylinux_2_17 .. 2_36. ai-edge-litert 2.x and
# tflite-runtime 2.14 ship manylinux_2_34+ aarch64 wheels only (with 2_28/2014 alone pip picks
# ai-edge-litert 1.4 and finds no tflite-runtime at all).
PLATFORMS=()
for _v in $(seq 36 -1 17); do PLATFORMS+=(--platform "manylinux_2_${_v}_aarch64"); done
PLATFORMS+=(--platform manylinux2014_aarch64)
LAYOUT=3   # bump when the root's layout/config below changes
HOST_PKGS=(qemu-user-static binfmt-support mmdebstrap openssh-server openssh-client zstd)
KEY=$(printf '%s\n' "$SUITE" "$DEB_INCLUDE" "${PIP_ARM[*]}" "${PIP_TFLITE214[*]}" \
      "${PY_TAGS[*]}" "${PLATFORMS[*]}" "$LAYOUT" | sha256sum | cut -c1-12)
CACHE_FILE=$CACHE_DIR/pi-root-$KEY.tar.zst
# ----------------------------------------------------------------------------------------------

log() { printf 'emulated_pi: %s\n' "$*"; }
skip() { printf 'emulated_pi: SKIP: %s\n' "$*" >&2; exit 77; }
die() { printf 'emulated_pi: ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
T_PHASE=0
phase() { T_PHASE=$(now); log "phase: $*"; }
phase_done() { log "  done in $(awk -v a="$T_PHASE" -v b="$(now)" 'BEGIN{printf "%.1f s", b-a}')"; }

[ "$(id -u)" = 0 ] || skip "needs root (chroot, mounts, binfmt_misc, sshd)"

lock() { mkdir -p "$PI_DIR"; chmod 755 "$PI_DIR"; exec 9>"$PI_DIR/.lock"; flock 9; }

# ---- host side --------------------------------------------------------------------------------
ensure_host_pkgs() {
    local missing=() p
    for p in "${HOST_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && { log "host packages present"; return 0; }
    log "installing host packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$PI_DIR/apt.log" 2>&1 \
        || skip "cannot install host packages ${missing[*]} (see $PI_DIR/apt.log)"
}

ensure_binfmt() {
    local bm=/proc/sys/fs/binfmt_misc entry
    command -v qemu-aarch64-static >/dev/null || skip "qemu-user-static is not installed"
    if [ ! -e "$bm/register" ]; then
        mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null \
            || skip "cannot mount binfmt_misc at $bm (container without CAP_SYS_ADMIN?)"
    fi
    entry=$bm/qemu-aarch64
    if [ -e "$entry" ] && ! head -1 "$entry" | grep -q enabled; then
        echo 1 >"$entry" 2>/dev/null || true   # registered but switched off
    fi
    if [ ! -e "$entry" ]; then
        update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    fi
    head -1 "$entry" 2>/dev/null | grep -q enabled \
        || skip "cannot register qemu-aarch64 in binfmt_misc"
    [ "$(cat "$bm/status")" = enabled ] || echo 1 >"$bm/status" 2>/dev/null \
        || skip "binfmt_misc is disabled and cannot be enabled"
}

# binfmt without the F flag resolves the interpreter inside the chroot: copy it in.
ensure_interp_in_root() {
    local r=$1 entry=/proc/sys/fs/binfmt_misc/qemu-aarch64 interp
    grep -q '^flags:.*F' "$entry" && return 0
    interp=$(sed -n 's/^interpreter //p' "$entry")
    mkdir -p "$r$(dirname "$interp")"
    cp -L "$interp" "$r$interp"
}

host_pip() {
    local pip
    read -ra pip <<<"${EDGERNN_PI_PIP:-python3 -m pip}"
    # the host's pip constraint file pins host packages: not for a foreign-arch download
    PIP_CONSTRAINT='' PIP_DISABLE_PIP_VERSION_CHECK=1 "${pip[@]}" "$@"
}

# ---- the root ---------------------------------------------------------------------------------
cpuinfo_text() {   # Cortex-A72 x4, as on a Pi 4 (onnxruntime segfaults on the host's x86 one)
    local i
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$i"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\n'
        printf 'CPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done
    printf 'Hardware\t: BCM2835\nRevision\t: d03114\nSerial\t\t: 10000000edge0000\n'
    printf 'Model\t\t: Raspberry Pi 4 Model B (EMULATED stand-in: qemu-user on x86)\n'
}

configure_root() {   # idempotent
    local r=$1 n
    mkdir -p "$r"/{tmp,root,run,proc,sys,dev/shm,dev/pts,etc/edgernn-pi,usr/local/bin,opt}
    chmod 1777 "$r/tmp" "$r/dev/shm"; chmod 700 "$r/root"
    for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
        set -- $n   # word-split on purpose: name major minor
        [ -c "$r/dev/$1" ] || { rm -f "$r/dev/$1"; mknod -m 666 "$r/dev/$1" c "$2" "$3"; }
    done
    ln -sfn /proc/self/fd "$r/dev/fd"
    ln -sfn /proc/self/fd/0 "$r/dev/stdin"; ln -sfn /proc/self/fd/1 "$r/dev/stdout"
    ln -sfn /proc/self/fd/2 "$r/dev/stderr"
    [ -s "$r/etc/passwd" ] || printf '%s\n' 'root:x:0:0:root:/root:/bin/bash' \
        'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' >"$r/etc/passwd"
    [ -s "$r/etc/group" ] || printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"$r/etc/group"
    echo rpi-emulated >"$r/etc/hostname"
    # ca-certificates is only extracted, not configured: give the root the host's bundle
    # (this machine's HTTPS goes through a proxy with its own CA)
    mkdir -p "$r/etc/ssl/certs"
    [ -f /etc/ssl/certs/ca-certificates.crt ] \
        && cp /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
    cpuinfo_text >"$r/etc/edgernn-pi/cpuinfo"
    # two pythons: the wheels are NOT on the default sys.path of /usr/bin/python3
    local name dir
    for name in arm tflite214; do
        dir=/opt/site-$name
        cat >"$r/usr/local/bin/python3-$name" <<EOF
#!/bin/sh
# Debian python3 + $dir first on sys.path (written by edgernn scripts/emulated_pi.sh)
: "\${QEMU_CPU:=cortex-a72}"; export QEMU_CPU
PYTHONPATH="$dir\${PYTHONPATH:+:\$PYTHONPATH}" exec /usr/bin/python3 "\$@"
EOF
        chmod 755 "$r/usr/local/bin/python3-$name"
    done
    ensure_interp_in_root "$r"
}

write_versions() {
    local r=$1
    { echo "key $KEY"; echo "built $(date -u +%FT%TZ)"
      echo "debian $(cat "$r/etc/debian_version") $(readlink "$r/usr/bin/python3")"
      for d in site-arm site-tflite214; do
          (cd "$r/opt/$d" && ls -d ./*.dist-info | sed "s|^\./|$d |; s|\.dist-info$||")
      done; } >"$r/etc/edgernn-pi/versions.txt"
}

mounts_under() { awk -v p="$1/" 'index($2 "/", p) == 1 {print $2}' /proc/self/mounts | sort -r; }

umount_root() {
    local m
    for m in $(mounts_under "$ROOT"); do umount "$m" 2>/dev/null || umount -l "$m"; done
}

mount_root() {
    mountpoint -q "$ROOT/proc" || mount -t proc proc "$ROOT/proc"
    mountpoint -q "$ROOT/sys" || mount -t sysfs -o ro sysfs "$ROOT/sys" 2>/dev/null || true
    # ptys for interactive ssh (sshd allocates them outside, the shell looks them up inside)
    mountpoint -q "$ROOT/dev/pts" || mount --bind /dev/pts "$ROOT/dev/pts" 2>/dev/null || true
    # plain bind of our file over /proc/cpuinfo (mountpoint(1) does not work on files)
    findmnt -rn "$ROOT/proc/cpuinfo" >/dev/null \
        || mount --bind "$ROOT/etc/edgernn-pi/cpuinfo" "$ROOT/proc/cpuinfo"
}

cmd_build() {
    lock
    local t0 tmp; t0=$(now)
    phase "host packages"; ensure_host_pkgs; phase_done
    phase "binfmt"; ensure_binfmt; phase_done
    if [ "$(cat "$ROOT/etc/edgernn-pi/key" 2>/dev/null)" = "$KEY" ]; then
        log "root $ROOT is up to date (key $KEY)"
        configure_root "$ROOT"
    else
        if [ -n "$(mounts_under "$ROOT")" ]; then log "stopping the running Pi first"; stop_locked; fi
        tmp=$ROOT.new
        [ -z "$(mounts_under "$tmp")" ] || die "$tmp has mounts; refusing to delete it"
        rm -rf "$tmp"; mkdir -p "$tmp"
        if [ -f "$CACHE_FILE" ] && [ -z "${EDGERNN_PI_NO_CACHE:-}" ]; then
            phase "restore root from cache $CACHE_FILE"
            zstd -q -dc "$CACHE_FILE" | tar -x -p --numeric-owner -C "$tmp"
            configure_root "$tmp"
            phase_done
        else
            phase "mmdebstrap arm64 $SUITE (extract: $DEB_INCLUDE)"
            rmdir "$tmp"
            mmdebstrap --quiet --mode=root --arch=arm64 --variant=extract \
                --include="$DEB_INCLUDE" "$SUITE" "$tmp" "$MIRROR"
            phase_done
            phase "aarch64 wheels -> /opt/site-arm: ${PIP_ARM[*]}"
            host_pip install -q --no-warn-script-location --only-binary=:all: "${PLATFORMS[@]}" \
                "${PY_TAGS[@]}" --target "$tmp/opt/site-arm" "${PIP_ARM[@]}" 2>&1 \
                | grep -v -e 'is ignored: it is neither' -e 'Running pip as the .root. user' || true
            [ -d "$tmp/opt/site-arm/onnxruntime" ] || die "pip did not install the arm wheels"
            phase_done
            phase "aarch64 wheels -> /opt/site-tflite214: ${PIP_TFLITE214[*]}"
            host_pip install -q --no-warn-script-location --only-binary=:all: "${PLATFORMS[@]}" \
                "${PY_TAGS[@]}" --target "$tmp/opt/site-tflite214" "${PIP_TFLITE214[@]}" 2>&1 \
                | grep -v -e 'is ignored: it is neither' -e 'Running pip as the .root. user' || true
            [ -d "$tmp/opt/site-tflite214/tflite_runtime" ] || die "pip did not install tflite-runtime"
            phase_done
            phase "configure root"
            configure_root "$tmp"
            write_versions "$tmp"
            echo "$KEY" >"$tmp/etc/edgernn-pi/key"
            phase_done
            phase "write cache $CACHE_FILE"
            mkdir -p "$CACHE_DIR"
            tar -c --numeric-owner -C "$tmp" . | zstd -q -T0 -3 -o "$CACHE_FILE.part" -f
            mv -f "$CACHE_FILE.part" "$CACHE_FILE"
            log "  cache: $(du -h "$CACHE_FILE" | cut -f1)"
            phase_done
        fi
        [ -z "$(mounts_under "$ROOT")" ] || die "$ROOT still has mounts; refusing to delete it"
        rm -rf "$ROOT"; mv "$tmp" "$ROOT"
    fi
    phase "smoke test (arm64 binary runs)"
    [ "$(chroot "$ROOT" uname -m 2>/dev/null)" = aarch64 ] \
        || skip "arm64 binaries do not run under qemu-user (binfmt qemu-aarch64 not working)"
    phase_done
    log "built $ROOT ($(du -sxh "$ROOT" 2>/dev/null | cut -f1)) in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f s", b-a}')"
    sed 's/^/  /' "$ROOT/etc/edgernn-pi/versions.txt"
}

# ---- sshd -------------------------------------------------------------------------------------
path_safe_for_chroot() {   # sshd: every component root-owned, not group/other-writable
    local p=$1 cur="" part uid mode
    local IFS=/
    for part in "" ${p#/}; do
        cur="$cur/$part"; cur=${cur//\/\//\/}
        IFS=' ' read -r uid mode < <(stat -L -c '%u %a' "$cur") || return 1
        [ "$uid" = 0 ] && (( (8#$mode & 8#022) == 0 )) || return 1
    done
}

chroot_dir() {   # a path sshd accepts for ChrootDirectory that leads to $ROOT
    if path_safe_for_chroot "$ROOT"; then echo "$ROOT"; return; fi
    # e.g. /var/tmp is world-writable: sshd refuses it; point a root-owned symlink at the root
    local link
    link=/run/edgernn-pi/$(printf '%s' "$(realpath "$ROOT")" | sha256sum | cut -c1-12)
    mkdir -p /run/edgernn-pi; chmod 755 /run/edgernn-pi
    ln -sfn "$(realpath "$ROOT")" "$link"
    path_safe_for_chroot "$link" || skip "no safe ChrootDirectory path for $ROOT (tried $link)"
    echo "$link"
}

sshd_pid() {
    local pid
    pid=$(cat "$STATE/sshd.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$STATE/sshd_config" && echo "$pid"
}

port_open() { timeout 1 bash -c ">/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

write_target_files() {   # PORT... (the targets use the first; the group lists every port)
    local port=$1 p
    cat >"$STATE/rpi-emulated.yaml" <<EOF
name: rpi-emulated
description: emulated arm64 Debian root under qemu-user (STAND-IN for a Raspberry Pi 4; timings are not Pi latency)
runner: ssh
host: 127.0.0.1
port: $port
user: root
key: $STATE/client_key
known_hosts: $STATE/known_hosts
python: /usr/local/bin/python3-arm
formats: [onnx, tflite]
runtimes: {onnx: onnxruntime, tflite: litert}
quantize: [dynamic, fp16, int8]
threads: 1
emulated: true
EOF
    cat >"$STATE/rpi-emulated-tflite214.yaml" <<EOF
name: rpi-emulated-tflite214
description: emulated arm64 Debian root with the OLD tflite-runtime 2.14 + numpy<2 (STAND-IN for a Pi with an old runtime; timings are not Pi latency)
runner: ssh
host: 127.0.0.1
port: $port
user: root
key: $STATE/client_key
known_hosts: $STATE/known_hosts
python: /usr/local/bin/python3-tflite214
formats: [tflite]
runtimes: {tflite: tflite_runtime}
quantize: [dynamic, fp16, int8]
threads: 1
emulated: true
EOF
    if [ $# -gt 1 ]; then
        { cat <<EOF
name: rpi-emulated-group
description: the emulated arm64 root behind ${#} sshd ports, one device per port (STAND-INs; timings are not Pi latency)
runner: ssh
host: 127.0.0.1
user: root
key: $STATE/client_key
known_hosts: $STATE/known_hosts
python: /usr/local/bin/python3-arm
formats: [onnx, tflite]
runtimes: {onnx: onnxruntime, tflite: litert}
quantize: [dynamic, fp16, int8]
threads: 1
emulated: true
devices:
EOF
          for p in "$@"; do printf '  - {id: pi-emulated-%s, port: %s}\n' "$p" "$p"; done
        } >"$STATE/rpi-emulated-group.yaml"
    else
        rm -f "$STATE/rpi-emulated-group.yaml"
    fi
}

running_ports() { cat "$STATE/ports" 2>/dev/null || cat "$STATE/port" 2>/dev/null; }

cmd_start() {
    local ports=() p
    while [ $# -gt 0 ]; do
        case $1 in
            --port) ports+=("${2:?--port needs a value}"); shift 2 ;;
            --port=*) ports+=("${1#--port=}"); shift ;;
            *) die "start: unknown argument $1" ;;
        esac
    done
    [ ${#ports[@]} -gt 0 ] || read -ra ports <<<"$DEFAULT_PORTS"
    [ ${#ports[@]} -gt 0 ] || die "no port given"
    local uniq=()
    for p in "${ports[@]}"; do
        [[ $p =~ ^[0-9]+$ ]] && [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || die "bad port $p"
        [[ " ${uniq[*]} " == *" $p "* ]] || uniq+=("$p")
    done
    ports=("${uniq[@]}")
    lock
    local t0; t0=$(now)
    [ "$(cat "$ROOT/etc/edgernn-pi/key" 2>/dev/null)" != "" ] \
        || skip "emulated Pi root not built: run scripts/emulated_pi.sh build"
    [ -x /usr/sbin/sshd ] || skip "/usr/sbin/sshd not installed (apt-get install openssh-server)"
    ensure_binfmt
    if pid=$(sshd_pid); then
        local running have covered=1
        running=$(running_ports | xargs); have=" $running "
        for p in "${ports[@]}"; do [[ $have == *" $p "* ]] || covered=0; done
        if [ "$covered" = 1 ]; then   # every asked port is served: keep the others' sessions
            read -ra ports <<<"$have"
            log "already running (pid $pid, port(s) ${ports[*]})"; print_info "${ports[@]}"; return 0
        fi
        log "sshd runs on port(s) $running; restarting it on ${ports[*]}"
        stop_locked
    fi
    local port=${ports[0]}
    mkdir -p "$STATE"; chmod 700 "$STATE"
    [ -f "$STATE/host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C edgernn-pi-host -f "$STATE/host_ed25519_key"
    [ -f "$STATE/client_key" ] || ssh-keygen -q -t ed25519 -N '' -C edgernn-pi-client -f "$STATE/client_key"
    cp "$STATE/client_key.pub" "$STATE/authorized_keys"
    local hostkey; hostkey=$(cut -d' ' -f1,2 "$STATE/host_ed25519_key.pub")
    for p in "${ports[@]}"; do printf '[127.0.0.1]:%s %s\n' "$p" "$hostkey"; done >"$STATE/known_hosts"
    configure_root "$ROOT"
    mount_root
    local chdir; chdir=$(chroot_dir)
    mkdir -p /run/sshd; chmod 755 /run/sshd   # sshd's privilege-separation directory
    cat >"$STATE/sshd_config" <<EOF
# edgernn emulated Pi (scripts/emulated_pi.sh): every session is chrooted into the arm64 root
ListenAddress 127.0.0.1
$(printf 'Port %s\n' "${ports[@]}")
HostKey $STATE/host_ed25519_key
PidFile $STATE/sshd.pid
AuthorizedKeysFile $STATE/authorized_keys
AllowUsers root
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding no
PermitTunnel no
MaxStartups 30:30:100
MaxSessions 30
ChrootDirectory $chdir
Subsystem sftp internal-sftp
SetEnv QEMU_CPU=$QEMU_CPU LANG=C.UTF-8
EOF
    local err
    err=$(/usr/sbin/sshd -t -f "$STATE/sshd_config" 2>&1) || skip "sshd config rejected: ${err//$'\n'/ }"
    for p in "${ports[@]}"; do port_open "$p" && skip "port 127.0.0.1:$p is already in use"; done
    : >"$STATE/sshd.log"
    /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log" \
        || skip "sshd failed to start: $(tail -1 "$STATE/sshd.log")"
    local i
    for p in "${ports[@]}"; do
        for i in $(seq 100); do port_open "$p" && break; sleep 0.1; done
        port_open "$p" || skip "sshd does not accept on 127.0.0.1:$p: $(tail -1 "$STATE/sshd.log")"
    done
    echo "$port" >"$STATE/port"   # the first port: the target files' and ssh's
    echo "${ports[*]}" >"$STATE/ports"
    write_target_files "${ports[@]}"
    log "sshd up on 127.0.0.1 port(s) ${ports[*]} (pid $(sshd_pid)) in $(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.2f s", b-a}')"
    print_info "${ports[@]}"
}

print_info() {   # PORT...
    local p
    log "target:      $STATE/rpi-emulated.yaml (python /usr/local/bin/python3-arm, port $1)"
    log "old runtime: $STATE/rpi-emulated-tflite214.yaml (python /usr/local/bin/python3-tflite214)"
    if [ $# -gt 1 ]; then log "group:       $STATE/rpi-emulated-group.yaml (one device per port)"; fi
    for p in "$@"; do
        log "ssh: ssh -i $STATE/client_key -o UserKnownHostsFile=$STATE/known_hosts -p $p root@127.0.0.1"
    done
}

stop_locked() {
    local pid i rootreal p
    if pid=$(sshd_pid); then
        kill "$pid"
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        log "sshd $pid stopped"
    else
        log "sshd not running"
    fi
    rm -f "$STATE/sshd.pid" "$STATE/ports"
    # end sessions still running inside the root (their /proc/PID/root is the root)
    rootreal=$(realpath "$ROOT" 2>/dev/null) || return 0
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/root" 2>/dev/null)" = "$rootreal" ]; then kill "${p#/proc/}" 2>/dev/null || true; fi
    done
    umount_root
    rm -f "/run/edgernn-pi/$(printf '%s' "$rootreal" | sha256sum | cut -c1-12)"
}

cmd_stop() { lock; stop_locked; }

cmd_status() {
    local pid
    if pid=$(sshd_pid); then
        log "running: sshd pid $pid on 127.0.0.1 port(s) $(running_ports), root $ROOT"; return 0
    fi
    if [ -f "$ROOT/etc/edgernn-pi/key" ]; then log "stopped (root built: $ROOT)"; else log "stopped (no root)"; fi
    return 3
}

ssh_cmd() {
    local port; port=$(cat "$STATE/port" 2>/dev/null) || die "not started (no $STATE/port)"
    ssh -q -i "$STATE/client_key" -o IdentitiesOnly=yes -o BatchMode=yes \
        -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$STATE/known_hosts" \
        -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=10 -p "$port" root@127.0.0.1 "$@"
}

cmd_check() {
    sshd_pid >/dev/null || die "not running: scripts/emulated_pi.sh start"
    local out arch
    arch=$(ssh_cmd uname -m) || die "ssh into the emulated Pi failed"
    [ "$arch" = aarch64 ] || die "remote uname -m says '$arch', expected aarch64"
    log "uname -m: $arch"
    out=$(ssh_cmd 'python3-arm -c "
import sys, platform, numpy, onnxruntime, ai_edge_litert
print(\"python3-arm:\", platform.python_version(), platform.machine(),
      \"numpy\", numpy.__version__, \"onnxruntime\", onnxruntime.__version__,
      \"ai_edge_litert\", getattr(ai_edge_litert, \"__version__\", \"?\"))
" && python3-tflite214 -c "
import platform, numpy, tflite_runtime, tflite_runtime.interpreter
assert numpy.__version__.startswith(\"1.\"), numpy.__file__
print(\"python3-tflite214:\", platform.python_version(), \"tflite_runtime\",
      tflite_runtime.__version__, \"numpy\", numpy.__version__)
"') || { printf '%s\n' "$out"; die "remote python check failed"; }
    printf '%s\n' "$out" | sed 's/^/emulated_pi: /'
    log "check OK"
}

cmd_clean() {
    lock; stop_locked
    [ -z "$(mounts_under "$PI_DIR")" ] || die "mounts remain under $PI_DIR; not deleting"
    rm -rf "$ROOT" "$ROOT.new" "$STATE"; log "removed $ROOT and $STATE"
    if [ "${1:-}" = --cache ]; then rm -f "$CACHE_DIR"/pi-root-*.tar.zst; log "removed cache"; fi
}

case ${1:-} in
    build) shift; cmd_build "$@" ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop ;;
    status) shift; cmd_status ;;
    check) shift; cmd_check ;;
    ssh) shift; ssh_cmd "$@" ;;
    clean) shift; cmd_clean "$@" ;;
    *) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
