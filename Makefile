# cdc: MongoDB -> NATS JetStream -> PostgreSQL replicator.
# `make help` lists the targets.

# CI and fresh machines have Go in /usr/local/go but not always on PATH.
export PATH := /usr/local/go/bin:$(PATH)
# The approved toolchain with the standard library's security fixes
# (go1.26.8, this machine's, has reachable vulnerabilities fixed in
# 1.26.9/1.26.10); the go command fetches it through the module proxy
# (~76 MB, once). Machines here default to GOTOOLCHAIN=local, which ignores
# go.mod's toolchain line, so it is exported for every target.
export GOTOOLCHAIN := go1.27.3

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

.PHONY: all build test test-race test-cluster test-soak bench lint fmt-check vet staticcheck tidy clean help vuln

all: lint build test ## lint, build and test

build: ## build bin/cdc with the version from git describe (or "dev")
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cdc

test: fmt-check vet ## gofmt check, go vet, then every test including ./e2e
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/e2e$$')
	@# The end-to-end suite runs alone: its load tests measure rates that
	@# the unit packages' Postgres-heavy tests would steal the cores from.
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./e2e/...

# The unit packages (every one but ./e2e) under the race detector. -race
# needs cgo (gcc; .ci/run installs it when missing) and runs the tests
# several times slower, hence a timeout of its own. RACE_PKGS narrows it
# (RACE_PKGS=./pkg/sink).
RACE_TIMEOUT ?= 20m
RACE_PKGS    ?= $$($(GO) list ./... | grep -v '/e2e$$')

test-race: ## go test -race over the unit packages (not ./e2e)
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout $(RACE_TIMEOUT) $(RACE_PKGS)

test-cluster: ## end-to-end on a three-node in-process NATS cluster with R3 streams: stream-leader kills under load (tag cluster)
	$(GO) test -count=1 -tags cluster -timeout 15m ./e2e/ -run Cluster

test-soak: ## the end-to-end suite five times over (crash, outage and load tests hunting rare interleavings), plus tests tagged soak
	$(GO) test -count=5 -tags soak -timeout $(SOAK_TIMEOUT) ./e2e/...

bench: ## benchmarks only (BENCH=regexp BENCHTIME=2s)
	$(GO) test -count=1 -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem -timeout $(BENCH_TIMEOUT) ./...

# The money-core benchmark (issue 13; docs/benchmark.md): the whole
# pipeline over the money-core workload (a 1,000,000-event backlog) with
# its ceilings measured in the same run, lag at 2,000 events/s, RSS and
# CPU per stage. One iteration is the whole run (-benchtime 1x); it prints
# the table and writes bench-out/moneycore.{json,txt,png}. The CDC_BENCH_*
# variables size it (CDC_BENCH_BACKLOG=100000 for a quick run).
BENCH_E2E_TIMEOUT ?= 60m

.PHONY: bench-e2e
bench-e2e: ## money-core benchmark vs its ceilings -> bench-out/ (CDC_BENCH_BACKLOG=1000000 ...)
	@mkdir -p bench-out
	CDC_BENCH_OUT=$(CURDIR)/bench-out $(GO) test -count=1 -run '^$$' -bench '^BenchmarkMoneyCore$$' -benchtime 1x -timeout $(BENCH_E2E_TIMEOUT) ./e2e/

lint: fmt-check vet staticcheck ## gofmt check, go vet and staticcheck

fmt-check: ## fail if any Go file is not gofmt-formatted
	@out=$$(gofmt -l . 2>&1); \
	if [ -n "$$out" ]; then echo "gofmt needed (run gofmt -w):"; echo "$$out"; exit 1; fi

vet: ## go vet ./...
	$(GO) vet ./...

# staticcheck (honnef.co/go/tools), pinned: built once per version by
# `go install` through the module proxy into bin/tools, with the approved
# toolchain, like govulncheck below. It reports deprecated API too (SA1019).
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK         := bin/tools/staticcheck-$(STATICCHECK_VERSION)

staticcheck: ## staticcheck ./... (pinned STATICCHECK_VERSION, installed into bin/tools)
	@set -eu; \
	if [ ! -x $(STATICCHECK) ]; then \
	  mkdir -p bin/tools; \
	  GOBIN=$(CURDIR)/bin/tools/.install-staticcheck $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION); \
	  mv bin/tools/.install-staticcheck/staticcheck $(STATICCHECK); rmdir bin/tools/.install-staticcheck; \
	fi; \
	echo "make staticcheck: $$($(STATICCHECK) -version)"; \
	$(STATICCHECK) ./...

# Vulnerability scan (make vuln). govulncheck and the Go vulnerability
# database both come through the Go module proxy, pinned: the database is
# the OSV files of golang.org/x/vulndb (data/osv/*.json), indexed into
# govulncheck's file:// layout (index/db.json, index/modules.json,
# index/vulns.json, ID/<id>.json: https://go.dev/security/vuln/database)
# by the module's own cmd/indexdb, once per VULNDB_VERSION, under bin/.
# The scan then needs no network. The standard library scanned is the
# toolchain's: VULN_TOOLCHAIN is the approved one that has the fixes
# (go1.26.8 has 10 reachable vulnerabilities, fixed in 1.26.9/1.26.10);
# it is the Makefile's GOTOOLCHAIN (`make vuln VULN_TOOLCHAIN=local` shows
# what the machine's own Go would ship).
VULN_TOOLCHAIN      ?= $(GOTOOLCHAIN)
GOVULNCHECK_VERSION ?= v1.9.0
VULNDB_VERSION      ?= v0.0.0-20261105234957-e22db6528018
VULNDB_DIR          := bin/vulndb/$(VULNDB_VERSION)
GOVULNCHECK         := bin/tools/govulncheck-$(GOVULNCHECK_VERSION)

vuln: ## govulncheck offline against the pinned Go vulnerability database; fails on a reachable vulnerability
	@set -eu; export GOTOOLCHAIN=$(VULN_TOOLCHAIN) GOFLAGS=-mod=readonly; \
	echo "make vuln: $$($(GO) version), govulncheck $(GOVULNCHECK_VERSION), golang.org/x/vulndb $(VULNDB_VERSION)"; \
	if [ ! -x $(GOVULNCHECK) ]; then \
	  mkdir -p bin/tools; \
	  GOBIN=$(CURDIR)/bin/tools/.install $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION); \
	  mv bin/tools/.install/govulncheck $(GOVULNCHECK); rmdir bin/tools/.install; \
	fi; \
	if [ ! -f $(VULNDB_DIR)/index/db.json ]; then \
	  $(GO) mod download golang.org/x/vulndb@$(VULNDB_VERSION); \
	  src="$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB_VERSION)/data/osv"; \
	  test -d "$$src" || { echo "make vuln: $$src: no OSV data in the module" >&2; exit 1; }; \
	  rm -rf $(VULNDB_DIR).tmp; \
	  $(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB_VERSION) -vulns "$$src" -out $(VULNDB_DIR).tmp; \
	  rm -rf $(VULNDB_DIR); mv $(VULNDB_DIR).tmp $(VULNDB_DIR); \
	fi; \
	$(GOVULNCHECK) -db file://$(CURDIR)/$(VULNDB_DIR) ./...

tidy: ## go mod tidy (review the go.mod/go.sum diff before committing)
	$(GO) mod tidy

clean: ## remove build output and local state (bin/, data/)
	rm -rf bin data coverage*

help: ## list the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | \
	awk 'BEGIN {FS = ":.*## "}; {printf "  %-10s %s\n", $$1, $$2}'
