#!/usr/bin/env bash
# The cgroup v2 tier: tests/integration/test_cgroups.py, test_devices.py (the device
# program) and the escape suite (tests/security) on a pure cgroup v2 kernel,
# inside the throw-away guest of ../shared/tools/cgroup-v2-guest.sh (this machine and
# CI's are hybrid). Only these tests: code runs 10-35x slower in the guest.
#
#   bash tests/cgroup_v2_tier.sh             skips, saying why, if the tool or its packages are missing
#   bash tests/cgroup_v2_tier.sh --required  fails instead (CI: .ci/run installs them)
#
# Needs the built virtualenv (.venv). CGV2_TIMEOUT (default 600 s) bounds the guest;
# CGV2_GUEST overrides where the tool is.
set -euo pipefail
cd "$(dirname "$0")/.."

required=${1:-}
tool=${CGV2_GUEST:-../shared/tools/cgroup-v2-guest.sh}
packages="qemu-system-x86 linux-image-amd64 busybox-static xz-utils"

missing=()
[ -f "$tool" ] || missing+=("the guest tool $tool")
command -v qemu-system-x86_64 >/dev/null || missing+=("qemu-system-x86_64")
ls /boot/vmlinuz-* >/dev/null 2>&1 || missing+=("a kernel in /boot")
command -v xz >/dev/null || missing+=("xz")
[ -x /bin/busybox ] || missing+=("a static /bin/busybox")
[ -x .venv/bin/python ] || missing+=("the virtualenv .venv (build first, see README)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "cgroup v2 tier: SKIPPED: missing ${missing[*]} (apt-get install $packages; the tool is shared/tools beside the clone)"
  [ "$required" = "--required" ] && exit 1
  exit 0
fi

export CGV2_TIMEOUT=${CGV2_TIMEOUT:-600}
# /tmp gets a tmpfs: the guest's / is an overlay, and a container's overlay upper cannot
# be on overlayfs. null_blk gives the block I/O tests a device (the guest has no disk).
start=$(date +%s)
status=0
bash "$tool" 'mount -t tmpfs -o size=400m fc-guest-tmp /tmp && { modprobe null_blk nr_devices=1 2>/dev/null || true; } &&
  FASTCONTAIN_EXPECT_CGROUP_LAYOUT=v2 .venv/bin/python -m pytest tests/integration/test_cgroups.py tests/integration/test_devices.py tests/security -v -rs -p no:cacheprovider' \
  || status=$?
echo "cgroup v2 tier: exit status $status after $(( $(date +%s) - start )) s in the guest (CGV2_TIMEOUT=$CGV2_TIMEOUT)"
exit $status
