#!/usr/bin/env bash
# Builds the arm64 Debian bookworm root the ARM step (.ci/arm64/run.sh) runs utterd in.
#   .ci/arm64/root.sh TARGET MIRROR
# TARGET must not exist yet; run.sh builds into a temporary name and renames it when this script
# succeeds, so an interrupted build is never reused. The cache key of a root is a hash of this
# file's lines other than comments, and MIRROR: change a command here and every machine builds a
# new root.
#
# What goes in, and why:
# - minbase (dpkg, apt, coreutils, bash), not the default variant: nothing utterd uses is in the
#   difference, and every package costs emulated install time (dpkg runs under qemu).
# - python3 and python3-venv (setup.sh's virtualenv), libportaudio2 (the sound device),
#   ca-certificates (pip over HTTPS; run.sh adds the host's own CAs on every run, since they
#   may change between runs).
# These are the Debian packages setup.sh names; it finds them installed and skips apt-get.
set -euo pipefail
target=$1
mirror=$2
[ ! -e "$target" ] || { echo "root.sh: $target exists" >&2; exit 2; }

debootstrap --arch=arm64 --variant=minbase \
  --include=python3,python3-venv,libportaudio2,ca-certificates \
  bookworm "$target" "$mirror"

# The downloaded .deb files are not needed again.
rm -f "$target"/var/cache/apt/archives/*.deb
