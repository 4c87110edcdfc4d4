#!/usr/bin/env bash
# Build the lab / molecule base image (Debian bookworm, systemd as PID 1) with
# debootstrap + docker import. No registry is needed. The image is labelled
# with a hash of this recipe and rebuilt only when the recipe changes.
set -euo pipefail

IMAGE="${SOVEREIGN_BASE_IMAGE:-sovereign/base:bookworm}"
MIRROR="${SOVEREIGN_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=python3,python3-apt,systemd,systemd-sysv,dbus,sudo,iproute2,ca-certificates,procps,gnupg

recipe_hash=$(printf '%s\n' "$SUITE" "$PACKAGES" "$(sed -n '/^# recipe-start/,/^# recipe-end/p' "$0")" | sha256sum | cut -c1-16)

current=$(docker image inspect --format '{{ index .Config.Labels "org.sovereign.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$current" = "$recipe_hash" ]; then
  echo "build-base-image: $IMAGE is up to date (recipe $recipe_hash)"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "build-base-image: debootstrap is missing: install it (apt-get install debootstrap)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

rootfs=$(mktemp -d /var/tmp/sovereign-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "build-base-image: debootstrap $SUITE into $rootfs (about a minute)"
# recipe-start
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" >/dev/null
# Units that make no sense in a container and slow boot or fail.
for unit in systemd-udevd.service systemd-udev-trigger.service systemd-remount-fs.service \
  getty@tty1.service console-getty.service systemd-logind.service sys-kernel-config.mount \
  sys-kernel-debug.mount sys-fs-fuse-connections.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
  "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$rootfs/etc/apt/sources.list"
echo 'container' >"$rootfs/etc/hostname"
: >"$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
# recipe-end
tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  --change "LABEL org.sovereign.recipe=$recipe_hash" \
  - "$IMAGE" >/dev/null
echo "build-base-image: built $IMAGE (recipe $recipe_hash)"
