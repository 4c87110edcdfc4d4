#!/usr/bin/env bash
# Debian packages the controller-side tests run for real: the CNCF
# distribution registry (model publish/pull round trip), htpasswd, Redis
# (the gateway's shared quota state), nginx (the gateway benchmark's
# proxy_pass reference), prometheus (promtool checks and unit-tests the
# alert and recording rules; the server serves the console pages) and
# chromium (renders those pages headless, tests read their DOM), dpkg-dev
# and gnupg (the gpu_driver scenario builds and signs its mirror of dummy
# NVIDIA packages).
# Installed as root when missing; otherwise those tests skip and say why.
set -euo pipefail

PACKAGES=(docker-registry apache2-utils redis-server nginx prometheus chromium dpkg-dev gnupg)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-test-packages: missing ${missing[*]}: install them (apt-get install ${missing[*]}); the tests that need them will skip" >&2
  exit 0
fi
echo "ensure-test-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Without recommends: prometheus would bring a node exporter service along,
# chromium a desktop's upower, udev, printing and notification daemons
# (headless, it needs none of them).
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The packages enable their services where systemd runs; the tests start
# their own on loopback, so the controller keeps none running.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl disable --now docker-registry redis-server nginx prometheus >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
  # No systemd (a CI sandbox): the packages' init scripts started them.
  for daemon in docker-registry redis-server nginx prometheus; do
    service "$daemon" stop >/dev/null 2>&1 || true
  done
fi
