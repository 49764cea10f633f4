# cni-multi: every entry point a developer or CI needs. `make test` is THE test command (README,
# .ci/run); it needs root because the e2e tests make network namespaces (never touching the
# machine's own: see .cargo/config.toml and tests/e2e/support).

CARGO  ?= cargo
PREFIX ?= /opt/cni/bin
# crt-static only with an explicit --target: without one, RUSTFLAGS would also reach the host's
# proc-macro crates and the build fails (DEPS.md section 5). Hence not in .cargo/config.toml.
STATIC_TARGET ?= x86_64-unknown-linux-gnu

.PHONY: all build release static deps test lint bench install uninstall demo readme clean fuzz reliability

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target $(STATIC_TARGET)
	@echo "static binary: target/$(STATIC_TARGET)/release/cni-multi"

# The system packages (.ci/packages) whose probe is missing, installed with apt-get; `make demo`
# needs only the `demo` lines. `.ci/deps --check` only says what it would install.
deps:
	./.ci/deps test

test: deps
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "make test must run as root: the e2e tests create network namespaces" >&2; exit 1; fi
	$(CARGO) test --all-targets
	$(MAKE) test-vm

# The e2e tests that need a kernel with dummy, 802.1Q, ipvlan, vrf, bonding, bridge VLAN
# filtering or a PCI NIC, run inside a QEMU VM (tests/vm/run.sh; the list: tests/vm/suites).
.PHONY: test-vm
test-vm:
	CARGO="$(CARGO)" ./tests/vm/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

bench:
	./bench/run.sh

# Installs the fully static build: the one binary that ships.
install: static
	./install.sh --prefix "$(PREFIX)" --binary "target/$(STATIC_TARGET)/release/cni-multi"

uninstall:
	./install.sh --prefix "$(PREFIX)" --uninstall

demo:
	./.ci/deps demo
	$(MAKE) install
	CNI_PATH="$(PREFIX)" ./demo/run.sh

# Regenerates README.md's applet table from the APPLETS table (a unit test checks they agree).
readme: build
	@table=$$(./target/debug/cni-multi --applet-table) && \
	  awk -v table="$$table" '/<!-- applets:begin -->/{print table; skip=1} \
	    /<!-- applets:end -->/{skip=0; next} !skip' README.md > README.md.new && \
	  mv README.md.new README.md

clean:
	$(CARGO) clean

# The long reliability runs whose figures RELIABILITY.md reports (root; not part of `make test`,
# which runs a short fixed-seed pass of each): FUZZ_CASES mutated inputs per parser target (8
# targets, the results one at a quarter: 10.15 million inputs in all by default), then 200
# random SIGKILLs of ADD per netfilter backend, 2000 mutated runs of every applet, 1000
# concurrent host-local ADDs.
FUZZ_CASES ?= 1400000
fuzz:
	CNI_MULTI_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release --lib fuzz_tests -- --nocapture

reliability: fuzz
	CNI_MULTI_LONG=1 $(CARGO) test --test e2e -- kill_steps:: fuzz_binary:: concurrency:: --nocapture
