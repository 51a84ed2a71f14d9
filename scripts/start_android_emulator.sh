#!/usr/bin/env bash
# Start an Android Virtual Device headless and wait until it has booted, for edgernn's adb runner.
#
#   scripts/start_android_emulator.sh AVD_NAME [extra emulator args...]
#
# Needs the Android SDK (emulator + platform-tools) and an existing AVD (sdkmanager
# "system-images;android-34;google_apis;arm64-v8a" (or x86_64), then
# avdmanager create avd -n NAME -k "system-images;..."). ANDROID_HOME (or ANDROID_SDK_ROOT)
# points at the SDK. Timeout: EDGERNN_EMULATOR_BOOT_TIMEOUT seconds (default 600).
#
# THIS CANNOT RUN ON THE edgernn BUILD MACHINE: no Android SDK, emulator or system image can be
# downloaded there (only PyPI and Debian apt are reachable, and neither ships them). There the
# adb runner is tested against a STAND-IN device instead (scripts/android_standin.sh); see
# scripts/android_standin.md. This script is for a developer machine with the SDK.
#
# Note: an emulator's timings are not phone timings either (an x86_64 image runs on the host
# CPU; an arm64 image on an x86 host is emulated). Mark such a target `emulated: true`.
set -euo pipefail

die() { printf 'start_android_emulator: ERROR: %s\n' "$*" >&2; exit 1; }

AVD=${1:-}
[ -n "$AVD" ] || die "usage: $0 AVD_NAME [emulator args...]"
shift
SDK=${ANDROID_HOME:-${ANDROID_SDK_ROOT:-}}
[ -n "$SDK" ] || die "ANDROID_HOME is not set: install the Android SDK (cannot be done on the edgernn build machine; use scripts/android_standin.sh there)"
EMULATOR=$SDK/emulator/emulator
ADB=$SDK/platform-tools/adb
[ -x "$EMULATOR" ] || die "$EMULATOR not found: sdkmanager emulator"
[ -x "$ADB" ] || ADB=$(command -v adb) || die "adb not found: sdkmanager platform-tools"
"$EMULATOR" -list-avds | grep -qx "$AVD" \
    || die "no AVD named $AVD (have: $("$EMULATOR" -list-avds | tr '\n' ' '))"
TIMEOUT=${EDGERNN_EMULATOR_BOOT_TIMEOUT:-600}

"$ADB" start-server >/dev/null
LOG=${TMPDIR:-/tmp}/emulator-$AVD.log
"$EMULATOR" -avd "$AVD" -no-window -no-audio -no-boot-anim -no-snapshot-save "$@" >"$LOG" 2>&1 &
EMU_PID=$!
echo "start_android_emulator: emulator pid $EMU_PID, log $LOG"

# the emulator's console port decides its serial (emulator-5554, -5556, ...): find ours
serial=""
for _ in $(seq 120); do
    kill -0 "$EMU_PID" 2>/dev/null || die "emulator exited: $(tail -3 "$LOG" | tr '\n' ' ')"
    for s in $("$ADB" devices | awk '/^emulator-/{print $1}'); do
        name=$("$ADB" -s "$s" emu avd name 2>/dev/null | head -1 | tr -d '\r') || true
        [ "$name" = "$AVD" ] && serial=$s && break
    done
    [ -n "$serial" ] && break
    sleep 1
done
[ -n "$serial" ] || die "the emulator did not show up in adb devices"

timeout "$TIMEOUT" "$ADB" -s "$serial" wait-for-device || die "$serial did not come online in $TIMEOUT s"
deadline=$(( $(date +%s) + TIMEOUT ))
until [ "$("$ADB" -s "$serial" shell getprop sys.boot_completed 2>/dev/null | tr -d '\r')" = 1 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$serial did not finish booting in $TIMEOUT s"
    kill -0 "$EMU_PID" 2>/dev/null || die "emulator exited: $(tail -3 "$LOG" | tr '\n' ' ')"
    sleep 2
done
"$ADB" -s "$serial" shell input keyevent 82 >/dev/null 2>&1 || true   # unlock the screen
echo "start_android_emulator: $serial booted ($("$ADB" -s "$serial" shell getprop ro.product.cpu.abi | tr -d '\r'), SDK $("$ADB" -s "$serial" shell getprop ro.build.version.sdk | tr -d '\r'))"
echo "start_android_emulator: put 'serial: $serial' in the target file; stop it with: $ADB -s $serial emu kill"
