#!/usr/bin/env bash
# The ARM64 step of the test run: utterd installed, speaking and tested on an emulated arm64
# Debian bookworm (the OS of 64-bit Raspberry Pi OS), with the audio checked against x86-64.
# run-tests.sh calls it after the x86-64 suite; .ci/run reaches it through run-tests.sh.
#
#   1. host tools: qemu-user-static, debootstrap, binfmt-support (apt-get, if missing), and the
#      binfmt_misc entry that runs arm64 programs through qemu-aarch64.
#   2. root: an arm64 bookworm root built by root.sh, cached under $UTTERD_ARM64_CACHE as
#      arm64-root-<hash of root.sh's commands and the Debian mirror>; built afresh when the hash
#      changes.
#   3. install: the checkout's files (tracked and new, as git lists them) copied to /opt/utterd
#      in the root and installed as the README says (`./setup.sh --install-only`), then the
#      test extra (pytest, hypothesis). The virtualenv stays in the cached root, as it stays in
#      the checkout on the host: setup.sh's pip brings it up to date with pyproject.toml.
#   4. speak: speak.py on x86-64 (the reference) and inside the root, the same deterministic
#      request on the ALSA file sink; compare_audio.py holds the arm64 audio against it.
#   5. tests: the part of the suite listed in tests.txt, inside the root.
# Times of each phase go to build/arm64-ci/timings.json (figures in docs/benchmarks.md,
# "ARM64 (emulated)"); the audio, logs and comparison go beside it.
#
# Environment:
#   UTTERD_SKIP_ARM64=1    skip this step (for local runs only: refused when CI is set, since
#                          CI must run it). It needs root, about 1 GB of disk and, from
#                          nothing, about 20 minutes.
#   UTTERD_ARM64_CACHE     folder for the cached root (default /var/cache/utterd-ci); an empty
#                          folder makes a run from nothing.
#   UTTERD_ARM64_QEMU_CPU  qemu's CPU model (default cortex-a72; see enter.sh).
#   UTTERD_ARM64_MIRROR    Debian mirror for debootstrap (default: the one apt uses here).
# Any failure fails the step and with it run-tests.sh and CI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

if [ "${UTTERD_SKIP_ARM64:-0}" = 1 ]; then
  if [ -n "${CI:-}" ]; then
    echo "arm64: UTTERD_SKIP_ARM64=1 is for local runs; CI must run the ARM64 step" >&2
    exit 1
  fi
  echo "arm64: skipped (UTTERD_SKIP_ARM64=1)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "arm64: the ARM64 step needs root (debootstrap, chroot, mounts);" \
    "UTTERD_SKIP_ARM64=1 skips it on a development machine" >&2
  exit 1
fi

cache=${UTTERD_ARM64_CACHE:-/var/cache/utterd-ci}
results=$repo/build/arm64-ci
step_started=$SECONDS
deadline=$((SECONDS + 45 * 60)) # the whole step, whatever the phases' own limits
declare -A took=()

# phase NAME LIMIT_S COMMAND...: runs COMMAND at nice 10 within LIMIT_S (and the step's
# deadline), records its time, and fails the step if it fails.
phase() {
  local name=$1 limit=$2
  shift 2
  local left=$((deadline - SECONDS))
  [ "$left" -gt 0 ] || { echo "arm64: out of time before $name" >&2; exit 1; }
  [ "$limit" -le "$left" ] || limit=$left
  echo "arm64: $name (limit ${limit} s)"
  local started=$SECONDS status=0
  timeout --kill-after=30 "$limit" nice -n 10 "$@" || status=$?
  took[$name]=$((SECONDS - started))
  if [ "$status" != 0 ]; then
    [ "$status" = 124 ] && echo "arm64: $name ran out of its ${limit} s" >&2
    echo "arm64: $name failed (exit $status) after ${took[$name]} s; see $results" >&2
    exit 1
  fi
  echo "arm64: $name took ${took[$name]} s"
}

# -- 1. host tools ---------------------------------------------------------------------------
missing=()
for pkg in qemu-user-static debootstrap binfmt-support; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  phase host-tools 600 sh -c 'apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null' sh "${missing[@]}"
fi
binfmt=/proc/sys/fs/binfmt_misc
[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt"
[ -e "$binfmt/qemu-aarch64" ] || update-binfmts --enable qemu-aarch64
grep -q '^flags: .*F' "$binfmt/qemu-aarch64" || {
  echo "arm64: qemu-aarch64's binfmt entry lacks the F flag; programs in a chroot cannot run" >&2
  exit 1
}

# The Debian mirror apt uses here: the first URI serving bookworm in /etc/apt/sources.list*.
mirror=${UTTERD_ARM64_MIRROR:-$(
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
    2>/dev/null || true; } | awk '
      /^deb / { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) {
                  if ($(i + 1) == "bookworm") { print $i; exit } else break } }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") { print uri; exit } }
      /^$/ { uri = "" }'
)}
mirror=${mirror:-http://deb.debian.org/debian}

mkdir -p "$cache"
exec 9>"$cache/arm64.lock"
flock 9 # one ARM step at a time on this machine: they share the cached root
rm -rf "$results"
mkdir -p "$results"

# -- 2. root -----------------------------------------------------------------------------------
key=$(cat <(grep -v '^ *#' "$here/root.sh") <(echo "$mirror") | sha256sum | cut -c1-16)
root=$cache/arm64-root-$key
if [ ! -e "$root/.complete" ]; then
  # Only roots of other keys and unfinished builds are removed. No mounts can be inside them:
  # every mount of root.sh and enter.sh lives in a namespace that died with its process, and
  # the lock above is ours.
  find "$cache" -maxdepth 1 -name 'arm64-root-*' -exec rm -rf --one-file-system {} +
  phase root 1500 unshare --mount --pid --fork --kill-child --propagation private \
    "$here/root.sh" "$root.tmp" "$mirror"
  touch "$root.tmp/.complete"
  mv "$root.tmp" "$root"
else
  took[root]=0
  echo "arm64: root $root (cached)"
fi
enter=("$here/enter.sh" "$root")

# -- 3. install --------------------------------------------------------------------------------
# What pip needs from the host: the CA certificates it trusts (installed again only when they
# changed), name resolution, and its pip configuration (files at the same paths, HOME being
# /root inside), with the local index and wheel folders that configuration names mounted
# read-only by enter.sh.
if [ -d /usr/local/share/ca-certificates ] &&
  ! diff -rq /usr/local/share/ca-certificates "$root/usr/local/share/ca-certificates" \
    >/dev/null 2>&1; then
  rm -rf "$root/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates "$root/usr/local/share/"
  phase ca-certificates 300 "${enter[@]}" update-ca-certificates
fi
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
for conf in /etc/pip.conf /etc/xdg/pip "$HOME/.config/pip" "$HOME/.pip"; do
  inside=$root${conf/#$HOME//root}
  rm -rf "$inside"
  if [ -e "$conf" ]; then
    mkdir -p "$(dirname "$inside")"
    cp -a "$conf" "$inside"
  fi
done
pip_dirs=()
while IFS= read -r value; do
  for word in $value; do
    path=${word#file://}
    [[ "$path" == /* && -d "$path" ]] || continue
    # A local PEP 503 index keeps its files beside simple/: mount the folder above.
    [[ "$path" == */simple || "$path" == */simple/ ]] && path=$(dirname "${path%/}")
    pip_dirs+=("$path")
  done
done < <("$repo/.venv/bin/python" -m pip config list 2>/dev/null |
  sed -n -E "s/^[^=]*(find-links|index-url|constraint)='(.*)'$/\2/p")
export UTTERD_ARM64_PIP_DIRS="${pip_dirs[*]:-}"

# The checkout: its files as git lists them (tracked and new, not ignored), in place of the
# previous copy; the virtualenv stays.
app=$root/opt/utterd
mkdir -p "$app"
find "$app" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
(cd "$repo" && git ls-files -z --cached --others --exclude-standard |
  tar --null --ignore-failed-read -T - -cf - 2>/dev/null) | tar -xf - -C "$app"
phase install 1500 "${enter[@]}" sh -c 'cd /opt/utterd && ./setup.sh --install-only &&
  .venv/bin/python -m pip install -q -e ".[test]"'

# -- 4. speak ----------------------------------------------------------------------------------
[ -x "$repo/.venv/bin/python" ] || {
  echo "arm64: no $repo/.venv for the x86-64 reference: run ./setup.sh --install-only" >&2
  exit 1
}
phase speak-x86 300 "$repo/.venv/bin/python" "$here/speak.py" "$results/x86"
rm -rf "$root/tmp/arm64-speak"
phase speak-arm64 900 "${enter[@]}" /opt/utterd/.venv/bin/python /opt/utterd/.ci/arm64/speak.py \
  /tmp/arm64-speak
cp -a "$root/tmp/arm64-speak" "$results/arm64"
phase compare 120 "$repo/.venv/bin/python" "$here/compare_audio.py" "$results/x86" \
  "$results/arm64" --json "$results/compare.json"

# -- 5. tests ----------------------------------------------------------------------------------
phase tests 1500 "${enter[@]}" sh -c 'cd /opt/utterd && PYTHONPATH=.ci/arm64 .venv/bin/python -m pytest \
  -q -p no:cacheprovider -p pytest_arm64 $(grep -v "^#" .ci/arm64/tests.txt)'

# -- times ---------------------------------------------------------------------------------------
took[total]=$((SECONDS - step_started))
{
  echo "{"
  for name in "${!took[@]}"; do echo "  \"$name\": ${took[$name]},"; done
  echo "  \"qemu_cpu\": \"${UTTERD_ARM64_QEMU_CPU:-cortex-a72}\","
  echo "  \"speak_x86\": $(cat "$results/x86/result.json"),"
  echo "  \"speak_arm64\": $(cat "$results/arm64/result.json")"
  echo "}"
} >"$results/timings.json"
echo "arm64: passed in ${took[total]} s (seconds per phase: $(for n in "${!took[@]}"; do
  printf '%s=%s ' "$n" "${took[$n]}"; done))"
