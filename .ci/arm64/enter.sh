#!/usr/bin/env bash
# Runs a command inside the arm64 root, emulated by qemu-user through binfmt_misc.
#   .ci/arm64/enter.sh ROOT COMMAND [ARG...]
# Environment:
#   UTTERD_ARM64_QEMU_CPU  qemu's CPU model (default cortex-a72). qemu's own default, `max`,
#                          makes the hibari voice speak wrong (docs/benchmarks.md,
#                          "ARM64 (emulated)"); cortex-a72 is the Raspberry Pi 4's core.
#   UTTERD_ARM64_PIP_DIRS  host folders to mount read-only at the same paths (run.sh sets it).
#
# Everything is mounted in a private mount and PID namespace (unshare), so the mounts vanish
# and every process started inside (a daemon left running included) is killed when COMMAND
# ends or this script is killed; nothing has to be cleaned up on the host.
#
# Mounts:
# - /proc: a new one, for the new PID namespace.
# - /dev: the host's (null, urandom, shm for Python's multiprocessing).
# - /sys: a small tmpfs holding only devices/system/cpu/{possible,present,online}, copied from
#   the host. With the host's /sys, `import onnxruntime` dies under qemu ("qemu: uncaught
#   target signal 11") while it reads the CPU topology; these three files are all it needs to
#   count the cores.
# - the host's local pip indexes and wheel folders named in its pip configuration (run.sh copies
#   that configuration in), read-only at the same paths, so pip inside resolves as the host's.
set -euo pipefail

if [ "${_UTTERD_ARM64_NS:-}" != 1 ]; then
  # --kill-child: if this script is killed (a timeout), the namespace's first process gets
  # SIGKILL, and with it every process in the namespace.
  exec env _UTTERD_ARM64_NS=1 unshare --mount --pid --fork --kill-child --propagation private \
    "$0" "$@"
fi

root=$1
shift
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o size=1m,mode=755 sys "$root/sys"
mkdir -p "$root/sys/devices/system/cpu"
for f in possible present online; do
  cp "/sys/devices/system/cpu/$f" "$root/sys/devices/system/cpu/$f"
done
for dir in ${UTTERD_ARM64_PIP_DIRS:-}; do
  mkdir -p "$root$dir"
  mount --bind -o ro "$dir" "$root$dir"
done

# A clean environment: the host's PIP_* settings (certificate, timeout, wheel folders) and the
# emulated CPU model; nothing else from the host leaks in.
pip_env=()
while IFS= read -r line; do pip_env+=("$line"); done < <(env | grep '^PIP_' || true)
chroot "$root" /usr/bin/env -i \
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  HOME=/root LANG=C.UTF-8 TERM=dumb DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 \
  QEMU_CPU="${UTTERD_ARM64_QEMU_CPU:-cortex-a72}" \
  ${pip_env[@]+"${pip_env[@]}"} \
  "$@"
