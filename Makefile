# toolbus — build, run, test, bench.
#   make run    embedded NATS + demo MCP server + worker, sync, scheduler, bridge
#   make test   everything CI runs (installs its own test tools first)
GO        ?= go
BIN       := $(CURDIR)/bin
NATS_VER  := v2.15.2
SOAK_CALLS ?= 3000

STATICCHECK_VER := v0.8.2
DEADCODE_VER    := v0.52.0

.PHONY: all build run lint test test-deps bench bench-doc bench-sizes bench-floor bench-soak bench-inflight soak cluster-test fuzz clean

all: build

# -buildvcs=auto stamps the git revision into the binaries (toolbus --version)
# even where GOFLAGS turns stamping off.
build:
	$(GO) build -buildvcs=auto -o $(BIN)/toolbus ./cmd/toolbus
	$(GO) build -buildvcs=auto -o $(BIN)/mcp-demo ./cmd/mcp-demo

run: build
	$(BIN)/toolbus serve

# Test tools: a standalone nats-server (for tests that kill and restart it)
# and the npm packages the cross-language tests use. Tests that need npm
# skip with a message when node is absent.
test-deps: $(BIN)/nats-server $(BIN)/nats testdata/node/node_modules/.installed

$(BIN)/nats-server:
	GOBIN=$(BIN) $(GO) install github.com/nats-io/nats-server/v2@$(NATS_VER)

# The nats CLI, for the README's natscli example (v0.4.0 builds here; @latest is refused).
$(BIN)/nats:
	rm -rf $(BIN)/.natscli && mkdir -p $(BIN)/.natscli
	cd $(BIN)/.natscli && $(GO) mod init scratch >/dev/null 2>&1 && \
		$(GO) get github.com/nats-io/natscli/nats@v0.4.0 && $(GO) build -o $(BIN)/nats github.com/nats-io/natscli/nats
	rm -rf $(BIN)/.natscli

testdata/node/node_modules/.installed: testdata/node/package.json
	@if command -v npm >/dev/null 2>&1; then \
		cd testdata/node && npm install --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: tests that use npm packages will be skipped"; fi

# Lint: go vet, staticcheck and deadcode (with -test, so a function only
# tests use is not dead), pinned and installed into bin/.
$(BIN)/staticcheck:
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VER)

$(BIN)/deadcode:
	GOBIN=$(BIN) $(GO) install golang.org/x/tools/cmd/deadcode@$(DEADCODE_VER)

lint: $(BIN)/staticcheck $(BIN)/deadcode
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "$$out"; echo "gofmt: run gofmt -w on the files above"; exit 1; fi
	$(GO) vet ./...
	$(BIN)/staticcheck ./...
	@out=$$($(BIN)/deadcode -test ./...); if [ -n "$$out" ]; then echo "$$out"; echo "deadcode: unreachable functions above"; exit 1; fi

test: lint build test-deps
	TOOLBUS_NATS_SERVER=$(BIN)/nats-server TOOLBUS_NATS_CLI=$(BIN)/nats $(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /faulttest)
	@echo "fault-injection runs (SOAK_CALLS=$(SOAK_CALLS)):"
	@TOOLBUS_NATS_SERVER=$(BIN)/nats-server SOAK_CALLS=$(SOAK_CALLS) $(GO) test -v -count=1 -timeout 20m -run 'TestFault' ./internal/faulttest/ > $(BIN)/faulttest.log 2>&1; \
		status=$$?; grep -E '^(--- |ok|FAIL|\|)' $(BIN)/faulttest.log; \
		if [ $$status -ne 0 ]; then tail -100 $(BIN)/faulttest.log; fi; exit $$status

bench: build
	$(BIN)/toolbus bench

# docs/benchmarks.md's paths section: at 100 B and concurrency 1, 16, 64,
# direct, the bus (echo, echo_plain), the MCP front door and, with
# MCP_PROXY=<mcp-proxy binary>, TBXark/mcp-proxy; with SERVE_BINS="old new"
# a second table of the bus on echo_plain through each binary run as
# `serve` (about 2 minutes on 2 cores). bench-sizes (5.5 minutes) refreshes
# the 3 sizes x 4 levels table, bench-soak (10 minutes) and bench-inflight
# (two minutes: a burst of sleep, then of sleep_plain, which has no
# annotations; with SERVE_BINS, each through each binary's serve, 3 rounds)
# the memory sections.
MCP_PROXY  ?=
SERVE_BINS ?=
bench-doc: build
	$(BIN)/toolbus bench --concurrency 1,16,64 --sizes 100 --section paths --doc docs/benchmarks.md \
		$(if $(MCP_PROXY),--mcp-proxy $(MCP_PROXY)) $(foreach b,$(SERVE_BINS),--serve-bin $(b))

bench-sizes: build
	$(BIN)/toolbus bench --only direct,bus --doc docs/benchmarks.md

# docs/benchmarks.md's floor section: direct, the floor (a minimal
# JetStream worker with the bus's durability) and the bus taking turns
# (about 2 minutes).
bench-floor: build
	$(BIN)/toolbus bench --only direct,floor,bus --concurrency 1,16,64 --sizes 100 --duration 2s --rounds 3 --memory-limit off --section floor --doc docs/benchmarks.md

bench-soak: build
	$(BIN)/toolbus bench --soak 10m --sample-every 30s --doc docs/benchmarks.md

bench-inflight: build
	$(BIN)/toolbus bench --inflight 10000 --doc docs/benchmarks.md $(foreach b,$(SERVE_BINS),--serve-bin $(b))
	$(BIN)/toolbus bench --inflight 10000 --inflight-tool sleep_plain --section inflight-plain --doc docs/benchmarks.md $(foreach b,$(SERVE_BINS),--serve-bin $(b))

soak: build test-deps
	TOOLBUS_NATS_SERVER=$(BIN)/nats-server SOAK_CALLS=20000 $(GO) test -count=1 -timeout 60m -run 'TestFault' ./internal/faulttest/ -v

# The destructive-call and 3-node cluster fault scenarios alone (make test runs
# them too, at SOAK_CALLS).
cluster-test: build test-deps
	TOOLBUS_NATS_SERVER=$(BIN)/nats-server SOAK_CALLS=$(SOAK_CALLS) $(GO) test -v -count=1 -timeout 20m -run 'TestFaultCluster|TestFaultDestroy' ./internal/faulttest/ | grep -E '^(--- |ok|FAIL|\|)'

fuzz:
	$(GO) test ./subjects/ -run XXX -fuzz FuzzEscapeToken -fuzztime 30s
	$(GO) test ./subjects/ -run XXX -fuzz FuzzUnescapeToken -fuzztime 30s

clean:
	rm -rf bin data
