# One Makefile, the same commands locally and in CI. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_STAMP := $(VENV)/.apt
APT_RUNTIME :=
APT_TEST := xmlsec1 chromium
# The openid-client test RP (tests/oidc_rp/node) runs on Node.js, installed with npm from its package-lock.json.
NODE_RP := tests/oidc_rp/node
NODE_STAMP := $(NODE_RP)/node_modules/.installed
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install run serve test test-sqlite test-pg lint fuzz bench bench-quick loadtest certs certs-status rotate-certs activate-certs retire-certs clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

# Debian's Python has no venv module until python3-venv is installed: install it once, then retry.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) >/dev/null 2>&1 || { \
	  echo "installing Debian package: python3-venv"; rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 python3-venv >/dev/null; \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# Debian packages the tests need (the pysaml2 test SP shells out to xmlsec1; browser tests drive chromium; the
# openid-client test RP needs Debian's nodejs and npm, unless node and npm are on PATH already: NodeSource's
# nodejs bundles npm and conflicts with Debian's npm package).
$(APT_STAMP): $(STAMP)
	@missing=""; for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	{ command -v node && command -v npm; } >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 $$missing >/dev/null; \
	fi
	@touch $(APT_STAMP)

# openid-client and its two dependencies, exactly as locked, from the registry npm is configured with.
$(NODE_STAMP): $(NODE_RP)/package-lock.json | $(APT_STAMP)
	cd $(NODE_RP) && npm ci --prefer-offline --no-audit --no-fund --loglevel=error
	@touch $(NODE_STAMP)

install: $(STAMP) ## Create .venv and install the IdP with its test tools

run: $(STAMP) ## Install, create the SQLite DB, dev keys and first admin, sync metadata/, then serve on IDP_BASE_URL with one outbox worker beside it
	$(BIN)/idp db init
	$(BIN)/idp certs generate --if-empty
	-$(BIN)/idp apps sync metadata
	@# one background worker (provisioning jobs) for as long as the server runs; stopped with it
	$(BIN)/idp worker & worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker' EXIT; $(BIN)/idp serve

serve: $(STAMP) ## Production server only (gunicorn; workers = cores), no set-up steps
	$(BIN)/idp serve

# The SSO suite that also runs against PostgreSQL + Redis (with the scale-out and migration tests).
PG_SUITE := tests/scaleout tests/functional/test_sso_roundtrip.py tests/functional/test_sso_errors.py \
	tests/functional/test_slo.py tests/functional/test_policy_flows.py tests/functional/test_web.py \
	tests/functional/test_prepared.py tests/functional/test_email.py tests/functional/test_key_expiry.py \
	tests/hostile/test_lockout_attacks.py tests/functional/test_webhooks.py tests/functional/test_slo_chain.py \
	tests/functional/test_user_sessions.py

# Branch coverage of idp/ over both runs (the in-process code; CLI and server subprocesses are not traced):
# the summary is printed, the per-file report is written to test-artifacts/coverage.txt.
COVERAGE := $(BIN)/coverage run --parallel-mode -m

test: $(APT_STAMP) $(NODE_STAMP) ## Install everything the tests need, then run the whole suite (SQLite, then PostgreSQL + Redis) with branch coverage
	@rm -f .coverage .coverage.*
	$(COVERAGE) pytest -q --ignore=tests/scaleout $(PYTEST_ARGS)
	tests/with-services.sh $(COVERAGE) pytest -q $(PG_SUITE) $(PYTEST_ARGS)
	@$(BIN)/coverage combine -q && mkdir -p test-artifacts && $(BIN)/coverage report > test-artifacts/coverage.txt; \
	  echo "branch coverage of idp/ (statements and branches; per file: test-artifacts/coverage.txt):"; grep "^TOTAL" test-artifacts/coverage.txt

test-sqlite: $(APT_STAMP) $(NODE_STAMP) ## Only the SQLite run (fast inner loop)
	$(BIN)/pytest -q --ignore=tests/scaleout $(PYTEST_ARGS)

test-pg: $(APT_STAMP) $(NODE_STAMP) ## Only the PostgreSQL + Redis run (starts private servers unless IDP_TEST_*_URL are set)
	tests/with-services.sh $(BIN)/pytest -q $(PG_SUITE) $(PYTEST_ARGS)

lint: $(STAMP) ## ruff (with bandit rules), mypy (strict on the protocol cores) and the import contracts
	$(BIN)/ruff check idp tests bench
	$(BIN)/mypy idp bench
	$(BIN)/lint-imports

fuzz: $(STAMP) ## Long fuzz run of the request, binding and metadata parsers (hypothesis; FUZZ_EXAMPLES=)
	HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -q tests/fuzz -p no:randomly

bench: $(APT_STAMP) ## Performance benchmark (~5 min on 2 cores): table, bench/results.json, bench/profile_sso.txt
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(APT_STAMP) ## Benchmark smoke run (~1 min): bench/results-quick.json
	$(BIN)/python -m bench.run --quick

loadtest: $(STAMP) ## 20 clients for 60 s, then 5x and 10x that, against gunicorn with admission control on loopback: admitted p50/p95, shed share, recovery (bench/loadtest.json)
	$(BIN)/python -m bench.loadtest $(LOADTEST_ARGS)

certs: $(STAMP) ## Generate the first signing key pair (refuses when keys exist)
	$(BIN)/idp certs generate

certs-status: $(STAMP) ## Show every signing key with state, fingerprint, expiry and warnings
	$(BIN)/idp certs status

rotate-certs: $(STAMP) ## Stage the next signing key (published in metadata, not yet signing); KEY_TYPE=, DAYS=
	$(BIN)/idp certs rotate $(if $(KEY_TYPE),--key-type $(KEY_TYPE)) $(if $(DAYS),--days $(DAYS))

activate-certs: $(STAMP) ## Sign with the staged key; the old one stays published as retiring
	$(BIN)/idp certs activate

retire-certs: $(STAMP) ## Remove the retiring key from the metadata (archived under certs/archive/)
	$(BIN)/idp certs retire

clean: ## Remove the venv, the test RP's node_modules and caches (keeps instance/ and certs/)
	rm -rf $(VENV) $(NODE_RP)/node_modules .pytest_cache .mypy_cache .ruff_cache *.egg-info
