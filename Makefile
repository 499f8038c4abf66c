# cdc: MongoDB -> NATS JetStream -> PostgreSQL replicator.
# `make help` lists the targets.

# CI and fresh machines have Go in /usr/local/go but not always on PATH.
export PATH := /usr/local/go/bin:$(PATH)

GO        ?= go
BIN       ?= bin/cdc
VERSION   ?= $(shell v=$$(git describe --always --dirty 2>/dev/null); echo $${v:-dev})
LDFLAGS   := -s -w -X github.com/amanat/cdc/pkg/cli.Version=$(VERSION)

# Unit and end-to-end tests (./e2e is part of ./...). The timeout is a
# backstop well under CI's 90 minutes, not a target.
TEST_TIMEOUT ?= 14m
# Slow soak/chaos tests behind the `soak` build tag.
SOAK_TIMEOUT ?= 60m
# Benchmarks: BENCH selects (a -bench regexp), BENCHTIME sets each run's length.
BENCH     ?= .
BENCHTIME ?= 2s
BENCH_TIMEOUT ?= 30m

.DEFAULT_GOAL := help

.PHONY: all build test test-soak bench lint fmt-check vet tidy clean help

all: lint build test ## lint, build and test

build: ## build bin/cdc with the version from git describe (or "dev")
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cdc

test: fmt-check vet ## gofmt check, go vet, then every test including ./e2e
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/e2e$$')
	@# The end-to-end suite runs alone: its load tests measure rates that
	@# the unit packages' Postgres-heavy tests would steal the cores from.
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./e2e/...

test-soak: ## the end-to-end suite five times over (crash, outage and load tests hunting rare interleavings), plus tests tagged soak
	$(GO) test -count=5 -tags soak -timeout $(SOAK_TIMEOUT) ./e2e/...

bench: ## benchmarks only (BENCH=regexp BENCHTIME=2s)
	$(GO) test -count=1 -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem -timeout $(BENCH_TIMEOUT) ./...

lint: fmt-check vet ## gofmt check and go vet

fmt-check: ## fail if any Go file is not gofmt-formatted
	@out=$$(gofmt -l . 2>&1); \
	if [ -n "$$out" ]; then echo "gofmt needed (run gofmt -w):"; echo "$$out"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

tidy: ## go mod tidy (review the go.mod/go.sum diff before committing)
	$(GO) mod tidy

clean: ## remove build output and local state (bin/, data/)
	rm -rf bin data coverage*

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
