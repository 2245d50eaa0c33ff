# Two commands on a fresh Debian 12 machine: `make demo` and `make test`.
# Both run the bootstrap first, which installs only what is missing.
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
FEDERATE_DATA ?= $(HOME)/.cache/federate
export FEDERATE_DATA

.PHONY: all bootstrap build demo test test-asan bench install clean fixtures fuzz

all: build

bootstrap:
	@bash scripts/bootstrap.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: bootstrap $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	$(BUILD)/federate run examples/mnist-fedavg.yaml

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(BUILD_ASAN)/CMakeCache.txt:
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DFEDERATE_SANITIZE=ON

test-asan: bootstrap $(BUILD_ASAN)/CMakeCache.txt
	cmake --build $(BUILD_ASAN) -j $(JOBS)
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1 FEDERATE_SANITIZED=1 ctest --output-on-failure -j $(JOBS)

bench: build
	@bash scripts/bootstrap.sh torch
	bash bench/run.sh

fixtures:
	@bash scripts/bootstrap.sh torch
	/usr/bin/python3 tests/fixtures/make_fixtures.py tests/fixtures

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)

# libFuzzer on every parser for 10 minutes each (make test runs 10 seconds each)
fuzz: bootstrap
	bash tests/fuzz/run.sh 600
