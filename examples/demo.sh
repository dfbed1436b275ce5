#!/usr/bin/env bash
# `make demo`: a busybox image made by lamina's own layer writer, a second layer stacked
# on it, saved and loaded back, then what the store says about it.
set -euo pipefail
: "${LAMINA_ROOT:?set LAMINA_ROOT (make demo does)}"
export LAMINA_ROOT
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# Base rootfs from Debian's busybox-static: one binary and its applets as symlinks.
mkdir -p "$work/base/bin" "$work/base/etc" "$work/base/tmp"
cp /bin/busybox "$work/base/bin/busybox"
for applet in sh ls cat echo id rm mkdir touch; do ln -s busybox "$work/base/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$work/base/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$work/base/etc/group"

# The second layer: a new file, a changed file and a deleted one (a whiteout).
mkdir -p "$work/top/etc" "$work/top/srv"
cp -a "$work/base/." "$work/top/"
echo "hello from the second layer" > "$work/top/srv/greeting"
echo "demo" > "$work/top/etc/hostname"
rm "$work/top/bin/touch"

step lamina import --message "busybox-static rootfs" "$work/base" demo/busybox:1
step lamina import --base demo/busybox:1 --message "greeting, hostname, no touch" \
  --change 'CMD ["/bin/cat", "/srv/greeting"]' "$work/top" demo/hello:1
step lamina images
step lamina history demo/hello:1
step lamina save -o "$work/hello.tar" demo/hello:1 demo/busybox:1
step lamina rmi demo/hello:1 demo/busybox:1
step lamina load -i "$work/hello.tar"
step lamina images
step lamina df -v
mkdir -p "$work/mnt"
step lamina mount demo/hello:1 "$work/mnt"
step cat "$work/mnt/srv/greeting"
step ls "$work/mnt/bin"
step lamina umount "$work/mnt"
step lamina fsck
