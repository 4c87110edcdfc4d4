#!/usr/bin/env bash
# Make sure a Docker engine answers. As root on Debian, install docker.io and
# start dockerd when it is missing; otherwise say in one line what to install.
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-docker: no Docker engine answers and this is not root: install docker.io and start dockerd (or run as root)" >&2
  exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-docker: no dockerd and no apt-get: install a Docker engine by hand" >&2
    exit 1
  fi
  echo "ensure-docker: installing Debian's docker.io"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

# A machine without a running init (a CI sandbox) has no service manager to
# start dockerd: start it in the background and wait for the socket.
if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
  systemctl start docker || true
fi
if ! docker info >/dev/null 2>&1; then
  mkdir -p /var/log/sovereign
  nohup dockerd >/var/log/sovereign/dockerd.log 2>&1 &
fi
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ensure-docker: dockerd did not answer within 60 s; see /var/log/sovereign/dockerd.log" >&2
exit 1
