# The habits CI keeps (.ci/run), one command each. Run inside the dev venv (README: Development).
PYTHON ?= python
LINTED := service train loadtest tests scripts client
COVERED := --cov=service --cov=train --cov=client/bioner_client
BENCH_ARGS ?=
# the container smoke test needs root (debootstrap, buildah)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: help lint test bench smoke

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

lint:  ## ruff check, ruff format --check and mypy, as CI runs them
	ruff check $(LINTED)
	ruff format --check $(LINTED)
	mypy service train client/bioner_client

test:  ## the whole suite with a coverage table for service, train and the client
	$(PYTHON) -m pytest -q $(COVERED)

bench:  ## loadtest/bench.py side by side (BENCH_ARGS="--checkpoint runs/jnlpba-minilm --limit 300")
	$(PYTHON) loadtest/bench.py $(BENCH_ARGS)

smoke:  ## build the Dockerfile with buildah, start it, post a sentence, stop it (scripts/container_smoke.sh)
	$(SUDO) bash scripts/container_smoke.sh
