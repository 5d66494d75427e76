# Thin driver over CMake (as neovim's): every real rule lives in CMakeLists.txt.
#   make run    install what is missing, Release build, run the main job
#   make test   install what is missing, Debug build (internal checks on), the whole test suite
#   make test NH_SANITIZE=address|thread|undefined   the same under a sanitizer (its own build dir)
#   make soak   the long randomised model test
#   make bench  allocator micro-benchmarks beside the mallocs; collector pauses beside bdwgc and Go
JOBS    ?= $(shell nproc)
NH_SANITIZE ?=
RELEASE := build/release
DEBUG   := build/debug$(if $(NH_SANITIZE),-$(NH_SANITIZE))
CMAKE_FLAGS ?=

.PHONY: all deps release debug run test soak bench install clean

all: release

deps:
	@scripts/deps.sh

release: deps
	@cmake -S . -B $(RELEASE) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(RELEASE) -j $(JOBS)

debug: deps
	@cmake -S . -B $(DEBUG) -DCMAKE_BUILD_TYPE=Debug -DNH_SANITIZE=$(NH_SANITIZE) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(DEBUG) -j $(JOBS)

run: release
	$(RELEASE)/examples/nheap-demo configs/default.ini

test: debug
	cd $(DEBUG) && ctest --output-on-failure -j $(JOBS)

soak: debug
	NH_MODEL_STEPS=2000000 NH_MODEL_SEED=1 $(DEBUG)/tests/test_model
	NH_MODEL_STEPS=2000000 NH_MODEL_SEED=2 NHEAP_DEBUG=rseq=0 $(DEBUG)/tests/test_model

bench: release
	$(RELEASE)/bench/nheap-bench-malloc --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=build/bench-malloc.json --benchmark_out_format=json
	$(RELEASE)/bench/nheap-micro --benchmark_out=build/bench-micro.json --benchmark_out_format=json
	$(RELEASE)/bench/nheap-gc-pause concurrent 256 5 2
	$(RELEASE)/bench/nheap-gc-pause stw 256 5 2
	if [ -x $(RELEASE)/bench/nheap-gc-pause-bdwgc ]; then $(RELEASE)/bench/nheap-gc-pause-bdwgc bdwgc 256 5 2; fi
	if command -v go >/dev/null; then cd bench/go && go run ./gc_pause 256 5 2; fi
	$(RELEASE)/bench/nheap-binary-trees concurrent 18
	$(RELEASE)/bench/nheap-binary-trees stw 18
	if [ -x $(RELEASE)/bench/nheap-binary-trees-bdwgc ]; then $(RELEASE)/bench/nheap-binary-trees-bdwgc bdwgc 18; fi
	if command -v go >/dev/null; then cd bench/go && go run ./binary_trees 18; fi

install: release
	cmake --install $(RELEASE) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf build
