#!/usr/bin/env bash
# `make demo`: a busybox-static base image, a Dockerfile built on it (RUN under runc over
# overlayfs), its history, a fully cached rebuild, then save/load, df and a mount; then a
# container of it (`lamina run`), what it changed (`diff`), and that change as an image
# (`commit`).
set -euo pipefail
: "${LAMINA_ROOT:?set LAMINA_ROOT (make demo does)}"
export LAMINA_ROOT
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'lamina umount "$work/mnt" >/dev/null 2>&1 || true; lamina rm -f demo-run >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

# The base: Debian's busybox-static, its applets as symlinks, a root and an app user.
mkdir -p "$work/base/bin" "$work/base/etc" "$work/base/tmp"
chmod 1777 "$work/base/tmp"
cp /bin/busybox "$work/base/bin/busybox"
for applet in sh ls cat echo id rm mkdir touch ln chmod tar wc sleep; do
  ln -s busybox "$work/base/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n' > "$work/base/etc/passwd"
printf 'root:x:0:\napp:x:1000:\n' > "$work/base/etc/group"

step lamina import --message "busybox-static rootfs" "$work/base" demo/busybox:1
step cat "$here/hello/Dockerfile"
step lamina build -t demo/hello:1 "$here/hello"
step lamina history demo/hello:1
echo; echo "# the same build again: every step is CACHED"
step lamina build -t demo/hello:1 "$here/hello"
step lamina images
step lamina save -o "$work/hello.tar" demo/hello:1
step lamina rmi demo/hello:1
step lamina load -i "$work/hello.tar"
step lamina df -v
mkdir -p "$work/mnt"
step lamina mount demo/hello:1 "$work/mnt"
step cat "$work/mnt/srv/app/built.txt" "$work/mnt/srv/app/greeting.txt"
step ls -ln "$work/mnt/srv/app/notes"
step lamina umount "$work/mnt"

echo; echo "# a container: the image's layers plus one read-write layer of its own"
step lamina run --rm demo/hello:1 cat /srv/app/built.txt
step lamina run --name demo-run -u root demo/hello:1 sh -c 'echo changed > /srv/app/greeting.txt; rm /srv/app/built.txt; mkdir /srv/app/new; echo hi > /srv/app/new/file'
step lamina ps -a
step lamina diff demo-run
step lamina commit -m "changed in a container" -c 'CMD ["cat", "/srv/app/new/file"]' demo-run demo/hello:2
step lamina run --rm demo/hello:2
step lamina history demo/hello:2
step lamina rm demo-run
step lamina fsck
