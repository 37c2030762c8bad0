GO ?= go
# encoding/json on the v2 implementation: decoding a config cold (what every
# runtime start does) takes half the time.
export GOEXPERIMENT := jsonv2
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Static: no dynamic loader work at each of the runtime's (many) starts.
LDFLAGS := -s -w -X main.version=$(VERSION) -linkmode external -extldflags -static
TAGS := osusergo netgo

.PHONY: build test bench install clean conformance

build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/berth-runtime ./cmd/berth-runtime

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
