# The two commands a user needs: `make up` (a local 3-node cluster) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-test up test proto proto-check lint bench bench-compare bench-failover bench-security chaos fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[server,test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Start a local 3-node cluster under ./data (Ctrl-C stops every node).
up: install
	$(BIN)/cairn cluster up

## Install the test dependencies and run the whole suite. -rfEs lists every skip with its reason (and
## failures and errors, pytest's default); a skip not in tests/skip_policy.py's ALLOWED_SKIPS fails the run.
test: install-test
	$(BIN)/python protos/generate.py --check
	$(BIN)/ruff check .
	$(BIN)/pytest -q -rfEs

## Regenerate client/cairn/{v1,internal} from protos/.
proto: install-test
	$(BIN)/python protos/generate.py

lint: install-test
	$(BIN)/ruff check .

bench: install
	$(BIN)/cairn bench

bench-compare: install
	$(BIN)/python -m bench compare

## Leader SIGKILLed -> next acknowledged write, Cairn and etcd (target: p99 < 2 s with the default config).
bench-failover: install
	$(BIN)/python -m bench failover

## Persist at c1 and c32 with the audit log, TLS (mTLS), auth and encryption at rest added one at a time.
bench-security: install
	$(BIN)/python -m bench security

## API fuzzing (the security issue): FUZZ_REQUESTS (default 100000) hypothesis-drawn requests, structured and raw
## bytes, to every RPC of a fresh 3-node cluster; prints counts by method and code, the rate and each node's memory,
## and fails on any imprecise code, crash, leak, unasked-for change or replica disagreement.
FUZZ_REQUESTS ?= 100000
FUZZ_PROFILE ?= plain
fuzz: install-test
	$(BIN)/python -m tests.fuzz_api --requests $(FUZZ_REQUESTS) --profile $(FUZZ_PROFILE)

clean:
	rm -rf $(VENV) data .pytest_cache
