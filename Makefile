# Shale's targets. `make run` serves on a local directory; `make test` builds
# and starts a real MinIO (first time: about 4 minutes) and runs every test.

GO        ?= go
GOBIN     := $(shell $(GO) env GOPATH)/bin
MINIO     := $(GOBIN)/minio
MINIO_VERSION := v0.0.0-20260212201848-7aac2a2c5b7c
BIN       := bin/shale
TESTFLAGS ?= -race -timeout 30m

.PHONY: all build run test bench lint minio arrowjs kcat fuzz faults clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/shale

# Serve on the embedded default: ./shale-data/bucket as the bucket.
run: build
	./$(BIN) serve

# The real MinIO server the S3 and MinIO tests run against. Tests start it
# themselves on a free loopback port with a temporary data directory.
minio: $(MINIO)
$(MINIO):
	@echo "building MinIO $(MINIO_VERSION) from the Go module proxy (about 4 minutes the first time)..."
	GOFLAGS=-mod=mod $(GO) install github.com/minio/minio@$(MINIO_VERSION)

# Arrow JS, a stock reader that shares no code with shale's writer, checks
# that objects open outside Go (pinned in its package-lock.json).
ARROWJS := tier/object/testdata/arrowjs
arrowjs: $(ARROWJS)/node_modules
$(ARROWJS)/node_modules: $(ARROWJS)/package-lock.json
	npm ci --prefix $(ARROWJS) --no-audit --no-fund
	touch $@

# kcat (librdkafka's command line client, Debian's package) is a stock
# Kafka client the Kafka protocol tests drive.
kcat:
	@command -v kcat >/dev/null || { sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat; }

test: minio arrowjs kcat
	SHALE_MINIO_BIN=$(MINIO) $(GO) test $(TESTFLAGS) ./...

# Short fuzz runs of every decoder of outside bytes (FUZZTIME=5m for more).
# The seed corpora also run in `make test`.
FUZZTIME ?= 20s
FUZZ = $(GO) test -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 1x
fuzz:
	$(FUZZ) -fuzz FuzzDecodeRecords ./tier/object
	$(FUZZ) -fuzz FuzzDecodeBatch ./tier/object
	$(FUZZ) -fuzz 'FuzzDecode$$' ./tier/object
	$(FUZZ) -fuzz FuzzDecodeSegment ./ingest
	$(FUZZ) -fuzz FuzzDecodeCommit ./tier/manifest
	$(FUZZ) -fuzz FuzzCheckpoint ./tier/manifest
	$(FUZZ) -fuzz FuzzScanRecords ./httpapi
	$(FUZZ) -fuzz FuzzConn ./kafka
	$(FUZZ) -fuzz FuzzDecodeBatches ./kafka
	$(FUZZ) -fuzz FuzzDecodeState ./group

# The multi-node fault-injection test (3 nodes, one bucket, injected
# errors, hangs, latency, ambiguous and late writes) on the in-memory store,
# the file store and MinIO, for longer than in `make test`
# (FAULT_DURATION=30m for more; SHALE_FAULT_SEED=N replays a run).
FAULT_DURATION ?= 5m
faults: minio
	SHALE_MINIO_BIN=$(MINIO) CI=true SHALE_FAULT_DURATION=$(FAULT_DURATION) $(GO) test -run '^TestFaults' -count=1 -v -timeout 2h .

# Benchmarks against a real MinIO on loopback, beside its raw PUT/GET ceiling.
bench: minio
	SHALE_MINIO_BIN=$(MINIO) $(GO) test ./cmd/shale -run '^$$' -bench BenchmarkShale -benchtime 1x -timeout 30m

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin shale-data
