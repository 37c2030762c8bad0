GO ?= go
# encoding/json on the v2 implementation: decoding a config cold (what every
# runtime start does) takes half the time.
export GOEXPERIMENT := jsonv2
BIN := bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# Static and on musl (Debian's musl-tools): the runtime starts for every
# container command, and a static musl binary reaches main() about 0.5 ms
# sooner than a glibc one. libseccomp is linked from Debian's static
# library, copied aside so that the linker never sees glibc's libc.a.
LDFLAGS := -s -w -X main.version=$(VERSION) -linkmode external -extldflags -static
TAGS := osusergo netgo
MUSL_LIB := $(BIN)/.musl-lib
BUILD_ENV := CC=musl-gcc CGO_CFLAGS="-O2 -idirafter /usr/include -idirafter /usr/include/$(shell gcc -dumpmachine)" \
	CGO_LDFLAGS="-L$(CURDIR)/$(MUSL_LIB)"

# musl when there is one (a static glibc binary is ten times larger).
MONITOR_CC := $(shell command -v musl-gcc >/dev/null 2>&1 && echo musl-gcc || echo gcc)
MONITOR_CFLAGS := -static -Os -s -Wall -Wextra -Werror

.PHONY: build test bench install clean conformance e2e-kubelet

build: $(MUSL_LIB)/libseccomp.a
	$(BUILD_ENV) $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/berth-runtime ./cmd/berth-runtime
	$(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/berth ./cmd/berth
	$(GO) build -trimpath -ldflags '-s -w -X main.version=$(VERSION)' -o $(BIN)/berthd ./cmd/berthd
	# The monitor runs once per container for its whole life: C, static,
	# small (cmd/berth-monitor/main.c says why; cmd/berth's tests build it
	# with the same command).
	$(MONITOR_CC) $(MONITOR_CFLAGS) -o $(BIN)/berth-monitor cmd/berth-monitor/*.c

$(MUSL_LIB)/libseccomp.a:
	@command -v musl-gcc >/dev/null || { echo "musl-gcc not found: apt-get install musl-tools" >&2; exit 1; }
	@test -f /usr/lib/$(shell gcc -dumpmachine)/libseccomp.a || { echo "libseccomp.a not found: apt-get install libseccomp-dev" >&2; exit 1; }
	mkdir -p $(MUSL_LIB) && cp /usr/lib/$(shell gcc -dumpmachine)/libseccomp.a $(MUSL_LIB)/

test: build
	# The integration tests drive the binary that ships, not a test build.
	BERTH_TEST_RUNTIME=$(CURDIR)/$(BIN)/berth-runtime $(GO) test -count=1 -timeout 20m ./...

bench: build
	bash bench/runtime.sh

e2e-kubelet: build
	# A real kubelet (built from the Go module proxy, cached) running static pods on a berthd.
	bash contrib/kubelet.sh

conformance: build
	bash ../shared/conformance/oci-validation/run.sh $(CURDIR)/$(BIN)/berth-runtime

install: build
	install -D -m 0755 $(BIN)/berth-runtime $(DESTDIR)/usr/local/bin/berth-runtime
	install -D -m 0755 $(BIN)/berth $(DESTDIR)/usr/local/bin/berth
	install -D -m 0755 $(BIN)/berth-monitor $(DESTDIR)/usr/local/bin/berth-monitor
	install -D -m 0755 $(BIN)/berthd $(DESTDIR)/usr/local/bin/berthd

clean:
	rm -rf $(BIN)
