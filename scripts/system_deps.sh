#!/usr/bin/env bash
# Debian packages the test suite uses, installed in one apt run when missing (root only):
# the emulated Pi (qemu-user, mmdebstrap, OpenSSH), headless Chromium for the report test,
# the adb client, PostgreSQL (scripts/postgres.sh, the results-store tests), bubblewrap
# (the sandbox user model files run in; without it TorchScript needs --trust-model) and
# espeak-ng (the synthetic speech datasets: kws, the enhancement pairs).
# Without root or apt, the tests that need them skip and say why.
#   ./scripts/system_deps.sh            all of them
#   ./scripts/system_deps.sh bubblewrap only the named ones (the quick tier needs bubblewrap)
set -uo pipefail
PKGS=(qemu-user-static binfmt-support mmdebstrap openssh-server openssh-client zstd
      ca-certificates chromium chromium-driver adb postgresql bubblewrap espeak-ng)
if [ $# -gt 0 ]; then PKGS=("$@"); fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "WARNING: cannot install ${missing[*]} (need root + apt); tests that use them will skip"
  exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
     > /tmp/edgernn-apt.log 2>&1; then
  echo "WARNING: apt-get failed (see /tmp/edgernn-apt.log); tests that need ${missing[*]} will skip"
fi
exit 0
