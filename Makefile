# Nouns AI backend: one Makefile for the go.work workspace. Targets that check
# code loop over every module (like riverqueue/river's Makefile); see
# docs/development.md for what `make run` and `make test` promise.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

MODULES  := shared proxy accountsvc gpusvc e2e bench deploy
BINARIES := proxy/cmd/proxy accountsvc/cmd/accountsvc gpusvc/cmd/gpusvc

TOOLS_DIR           := $(CURDIR)/.run/tools
STATICCHECK_VERSION := v0.8.2
STATICCHECK         := $(TOOLS_DIR)/staticcheck-$(STATICCHECK_VERSION)/staticcheck

GO_TEST_FLAGS ?= -race -count=1 -timeout 15m

# foreach_module runs the shell command $(1) inside every module, going on after
# a failure so that one run reports every module, and fails at the end if any did.
define foreach_module
	failed=""; \
	for m in $(MODULES); do \
		echo "--- $$m: $(1)"; \
		(cd "$$m" && $(1)) || failed="$$failed $$m"; \
	done; \
	if [[ -n "$$failed" ]]; then echo "FAILED in:$$failed" >&2; exit 1; fi
endef

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | sort | awk -F ':.*## ' '{ printf "%-16s %s\n", $$1, $$2 }'

.PHONY: build
build: ## build the binaries into bin/ (make vet compiles every package)
	@for b in $(BINARIES); do \
		echo "--- bin/$${b##*/}"; \
		(cd "$${b%%/*}" && go build -o ../bin/ "./$${b#*/}"); \
	done

.PHONY: run
run: ## the whole stack in the foreground (scripts/run.sh; Ctrl-C stops it)
	@scripts/run.sh

.PHONY: migrate
migrate: build ## apply pending migrations to $DATABASE_URL (or the local data store)
	@scripts/with-services.sh bin/accountsvc migrate

# make test ensures PostgreSQL and Redis (starting throwaway servers, and
# installing them as root when missing), exports TEST_DATABASE_URL (admin URL,
# database "postgres") and TEST_REDIS_URL, and stops what it started afterwards.
.PHONY: test
test: ## go test -race in every module, against real PostgreSQL and Redis
	@SERVICES_TEST_TOOLS=1 scripts/with-services.sh $(MAKE) --no-print-directory test-modules

# test-modules expects TEST_DATABASE_URL and TEST_REDIS_URL; use `make test`.
.PHONY: test-modules
test-modules:
	@[[ -n "$${TEST_DATABASE_URL:-}" && -n "$${TEST_REDIS_URL:-}" ]] || \
		{ echo "TEST_DATABASE_URL and TEST_REDIS_URL are not set; run make test" >&2; exit 1; }
	@$(call foreach_module,go test $(GO_TEST_FLAGS) ./...)

# test-throwaway proves the path make test takes on a machine without
# PostgreSQL/Redis: it points services.sh at spare ports, where nothing
# answers, so it starts (and afterwards stops) throwaway servers, and runs
# the shared database and Redis tests against them.
.PHONY: test-throwaway
test-throwaway: ## database/Redis tests against throwaway servers on spare ports
	@env -u DATABASE_URL -u REDIS_URL -u TEST_DATABASE_URL -u TEST_REDIS_URL \
		SERVICES_PG_PORT=25432 SERVICES_REDIS_PORT=26379 \
		scripts/with-services.sh bash -c 'cd shared && go test -count=1 ./dbtest/ ./migrate/ ./ratelimit/'

# smoke-run starts make run, checks every /health, /metrics on the metrics
# listeners (404 on the public ports), sends
# SIGINT and checks nothing is left (scripts/smoke-run.sh).
.PHONY: smoke-run
smoke-run: ## make run, probe every service, Ctrl-C, check nothing is left
	@scripts/smoke-run.sh

# chaos is not part of make test (it takes minutes and kills processes); CI
# runs it when asked (.ci/run with CI_CHAOS=1).
.PHONY: chaos
chaos: ## fault-injection suite on the real stack with its own PostgreSQL/Redis (scripts/chaos.sh, ~3 min)
	@scripts/chaos.sh

.PHONY: vet
vet: ## go vet every module
	@$(call foreach_module,go vet ./...)

.PHONY: fmt-check
fmt-check: ## fail when a Go file is not gofmt-formatted
	@out=$$(gofmt -l $(MODULES)); \
	if [[ -n "$$out" ]]; then echo "not gofmt-formatted (run gofmt -w):" >&2; echo "$$out" >&2; exit 1; fi; \
	echo "gofmt: ok"

.PHONY: fmt
fmt: ## gofmt -w every module
	@gofmt -w $(MODULES)

.PHONY: lint
lint: $(STATICCHECK) api-compat ## staticcheck every module, one owner per table (scripts/check-table-owners.sh), the API breaking-change guard
	@$(call foreach_module,$(STATICCHECK) ./...)
	@scripts/check-table-owners.sh

# api-compat fails on an operation, response status or response field that
# api/openapi.yaml removed since api/openapi.released.yaml, unless the
# "Unreleased" section of api/CHANGELOG.md lists it.
.PHONY: api-compat
api-compat: ## the API breaking-change guard (part of make lint)
	@cd shared && go run ./apispec/cmd/apicompat -released ../api/openapi.released.yaml \
		-current apispec/openapi.yaml -changelog ../api/CHANGELOG.md

$(STATICCHECK):
	@echo "--- installing staticcheck $(STATICCHECK_VERSION) into $(@D)"
	@mkdir -p "$(@D)"
	@GOBIN="$(@D)" go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Benchmarks. bench/run.sh runs when present. Further sections plug in without
# editing this file: a bench/*.mk file adds its target to BENCH_TARGETS, e.g.
#   BENCH_TARGETS += bench-proxy
#   bench-proxy: build ; bench/proxy/run.sh
BENCH_TARGETS :=
-include $(wildcard bench/*.mk)

.PHONY: bench
bench: bench-script $(BENCH_TARGETS) ## the benchmarks in bench/, with ratios against their baselines

.PHONY: bench-script
bench-script:
	@if [[ -x bench/run.sh ]]; then bench/run.sh; \
	elif [[ -f bench/run.sh ]]; then bash bench/run.sh; \
	else echo "bench: no bench/run.sh yet"; fi

# The typed TypeScript client (clients/ts): openapi-typescript generates the
# types from api/openapi.yaml, tsc compiles them with the openapi-fetch
# wrapper into clients/ts/dist. Versions are pinned in package-lock.json.
.PHONY: client
client: ## build the typed TypeScript client into clients/ts/dist (npm ci, generate, tsc)
	@cd clients/ts && npm ci --no-audit --no-fund && npm run build

# client-test runs the client's test against a running stack (make run):
# NOUNSAI_API_URL (default the proxy of make run), NOUNSAI_CHALLENGE_TOKEN,
# NOUNSAI_OUTBOX_DIR (default .run/outbox, where make run's emails land).
.PHONY: client-test
client-test: client ## the TS client's test against a running make run (signup, login, generate, list)
	@cd clients/ts && NOUNSAI_OUTBOX_DIR=$${NOUNSAI_OUTBOX_DIR:-$(CURDIR)/.run/outbox} npm test

# The reference page at /docs is Redoc's standalone bundle, pinned here and
# vendored (committed) into shared/apispec/docsui by this target.
REDOC_VERSION := 3.0.1

.PHONY: docs-ui
docs-ui: ## vendor the pinned Redoc bundle for /docs from the npm registry
	@REDOC_VERSION=$(REDOC_VERSION) scripts/docs-ui.sh

.PHONY: clean
clean: ## remove build and coverage outputs (keeps .run/: data, outbox, storage)
	rm -rf bin/ coverage.out coverage.html
	find . -name '*.test' -type f -delete -o -name '*.coverprofile' -type f -delete

.PHONY: distclean
distclean: clean ## also stop throwaway data stores and remove .run/
	scripts/services.sh stop
	if [[ -L .run/pg ]]; then rm -rf "$$(readlink -f .run/pg)"; fi
	rm -rf .run/
