GO ?= go
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)

.PHONY: build test bench install clean conformance

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/berth-runtime ./cmd/berth-runtime

test: build
	$(GO) test -count=1 -timeout 20m ./...

bench: build
	bash bench/runtime.sh

conformance: build
	bash ../shared/conformance/oci-validation/run.sh $(CURDIR)/$(BIN)/berth-runtime

install: build
	install -D -m 0755 $(BIN)/berth-runtime $(DESTDIR)/usr/local/bin/berth-runtime

clean:
	rm -rf $(BIN)
