# The two commands of the README: `make run` and `make test`. Both install what they lack into
# .venv/ (cargo-lambda and friends from PyPI); nothing is installed system-wide.

SHELL := /bin/bash
VENV := .venv
TOOLS := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# SAM and cfn-lint run offline: no telemetry, dummy credentials, a fixed region.
SAM_ENV := SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1

PORT ?= 9000
DEV := .dev
DEV_KEY := $(DEV)/signing-key.pem

.PHONY: run test build tools dev-key clean

## run: serve the API locally on SQLite under cargo lambda watch (http://localhost:$(PORT))
run: $(TOOLS) $(DEV_KEY)
	AUTH_STORE="$${AUTH_STORE:-sqlite:$(CURDIR)/$(DEV)/users.db}" \
	AUTH_SIGNING_KEY="$${AUTH_SIGNING_KEY:-file:$(CURDIR)/$(DEV_KEY)}" \
	AUTH_PUBLIC_KEY="$${AUTH_PUBLIC_KEY:-file:$(CURDIR)/$(DEV)/signing-key.pub.pem}" \
	AUTH_ISSUER="$${AUTH_ISSUER:-http://localhost:$(PORT)}" \
	cargo lambda watch --invoke-address 127.0.0.1 --invoke-port $(PORT)

## test: formatting, lints, template checks, and every test (unit, handler, contract, end-to-end)
test: $(TOOLS)
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(SAM_ENV) cfn-lint template.yaml
	$(SAM_ENV) sam validate --region us-east-1
	scripts/with_moto.sh cargo test --workspace

## build: sam build, release arm64 bootstraps cross-compiled with zig (what `sam deploy` uploads)
build: $(TOOLS)
	$(SAM_ENV) sam build

## tools: install the pinned Python-side tools into .venv/
tools: $(TOOLS)

$(TOOLS): requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## dev-key: create the git-ignored development signing key
dev-key: $(DEV_KEY)

$(DEV_KEY): | $(TOOLS)
	$(VENV)/bin/python scripts/dev_key.py $(DEV)

clean:
	rm -rf $(DEV) target

