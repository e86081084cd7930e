# The two commands of the README: `make run` and `make test`. Both install what they lack into
# .venv/ from PyPI, nothing system-wide: `make run` only what running needs (requirements-run.txt:
# cargo-lambda, and cryptography for the dev key), the other targets the whole development set
# (requirements-dev.txt: that plus moto, cfn-lint and SAM CLI).

SHELL := /bin/bash
VENV := .venv
RUN_TOOLS := $(VENV)/.run-installed
TOOLS := $(VENV)/.installed
CHECKOV := $(VENV)/checkov/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# SAM and cfn-lint run offline: no telemetry, dummy credentials, a fixed region.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1

PORT ?= 9000
DEV := .dev
DEV_KEY := $(DEV)/signing-key.pem
DEV_DATA_KEY := $(DEV)/data-key

.PHONY: help run check test build tools dev-key clean bench microbench conformance

## help: list these targets and what each does
help:
	@sed -n -e 's/\$$(PORT)/$(PORT)/g' -e 's/^## \([a-z-]*:\)/\1/p' -e 's/^## /    /p' $(MAKEFILE_LIST)


## run: serve the API locally on SQLite under cargo lambda watch (http://localhost:$(PORT))
run: $(RUN_TOOLS) $(DEV_KEY) $(DEV_DATA_KEY)
	AUTH_STORE="$${AUTH_STORE:-sqlite:$(CURDIR)/$(DEV)/users.db}" \
	AUTH_DATA_KEY="$${AUTH_DATA_KEY:-file:$(CURDIR)/$(DEV_DATA_KEY)}" \
	AUTH_MAILER="$${AUTH_MAILER:-file:$(CURDIR)/$(DEV)/mail}" \
	AUTH_SIGNING_KEY="$${AUTH_SIGNING_KEY:-file:$(CURDIR)/$(DEV_KEY)}" \
	AUTH_PUBLIC_KEY="$${AUTH_PUBLIC_KEY:-file:$(CURDIR)/$(DEV)/signing-key.pub.pem}" \
	AUTH_ISSUER="$${AUTH_ISSUER:-http://localhost:$(PORT)}" \
	cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(PORT)

## check: the quick loop: formatting, lints, unit tests and the SQLite handler tests (no moto,
## no watch, no browser; `make test` is the full suite CI runs)
check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace --exclude integration-tests
	cargo test -p integration-tests --no-default-features --test api

## test: formatting, lints, template checks, and every test (unit, handler, contract, end-to-end)
test: $(TOOLS) $(CHECKOV)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(SAM_ENV) cfn-lint template.yaml
	$(SAM_ENV) sam validate --region us-east-1
	$(VENV)/checkov/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download
	scripts/with_moto.sh cargo test --workspace
	$(MAKE) --no-print-directory conformance

## build: sam build, release arm64 bootstraps cross-compiled with zig (what `sam deploy` uploads)
build: $(TOOLS)
	rustup target add aarch64-unknown-linux-gnu
	$(SAM_ENV) sam build

## bench: release-build the functions, then run each `bootstrap` under a local Lambda Runtime API
## and print Lambda's REPORT figures (init, p50/p90/p99, max RSS), zipped sizes and, on moto,
## the DynamoDB and KMS requests per invocation: first on SQLite with a PEM key, then on
## DynamoDB + KMS (moto_server), then on DynamoDB with the key from an SSM SecureString.
## BENCH_ARGS passes options to bench/harness.py (see its --help).
bench: $(TOOLS)
	cargo build --release --workspace
	cargo build --release -p auth-shared --example bcrypt_time
	python3 bench/harness.py $(BENCH_ARGS)
	scripts/with_moto.sh python3 bench/harness.py --backend aws --invocations 200 \
	  --bcrypt-invocations 5 $(BENCH_ARGS)
	scripts/with_moto.sh python3 bench/harness.py --backend aws --signing ssm --invocations 200 \
	  --bcrypt-invocations 5 $(BENCH_ARGS)

## microbench: criterion micro-benchmarks of token issue/verify, bcrypt and the me handler
microbench:
	cargo bench -p auth-shared --features testing --bench core

## tools: install the pinned Python-side tools into .venv/
tools: $(TOOLS) $(CHECKOV)

# What `make run` and `make dev-key` need, and no more.
$(RUN_TOOLS): requirements-run.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-run.txt
	touch $@

# The full set includes the run set (`-r requirements-run.txt`), so it stamps both.
$(TOOLS): requirements-dev.txt requirements-run.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(RUN_TOOLS)

# checkov pins boto3 to a version SAM CLI's own pin excludes, so it gets a venv of its own.
$(CHECKOV): requirements-checkov.txt
	python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

## dev-key: create the git-ignored development signing key and data key
dev-key: $(DEV_KEY) $(DEV_DATA_KEY)

$(DEV_KEY) $(DEV_DATA_KEY): | $(RUN_TOOLS)
	$(VENV)/bin/python scripts/dev_key.py $(DEV)

## clean: remove the development key and database and the build output
clean:
	rm -rf $(DEV) target

## conformance: openapi.yaml against the running service (schemathesis with every check and the
## stateful links, authlib + PyJWT, the README's curl commands, Swagger UI in headless Chromium).
## Installs what it lacks: pip into .venv/, apt chromium + chromium-driver, npm swagger-ui-dist.
CONFORMANCE := tests/conformance
CONFORMANCE_TOOLS := $(VENV)/.conformance-installed
CONFORMANCE_ASSETS := $(CONFORMANCE)/node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

conformance: $(TOOLS) $(CONFORMANCE_TOOLS) $(CONFORMANCE_ASSETS)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
	    chromium chromium-driver >/dev/null; }
	PYTHONDONTWRITEBYTECODE=1 $(VENV)/bin/python -m pytest $(CONFORMANCE) $(PYTEST_ARGS)

$(CONFORMANCE_TOOLS): $(CONFORMANCE)/requirements.txt | $(TOOLS)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $<
	touch $@

$(CONFORMANCE_ASSETS): $(CONFORMANCE)/package.json $(CONFORMANCE)/package-lock.json
	cd $(CONFORMANCE) && SCARF_ANALYTICS=false npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
