# Thin driver over CMake (as neovim's): every real rule lives in CMakeLists.txt.
#   make run         install what is missing, Release build, the main job: the benchmark report
#                    (build/report: report.md, results.json, plots), quick sizes, < 10 min on 2 CPUs
#   make bench-full  the same report at full sizes (binary-trees depth 21, a 1 GiB live heap)
#   make test        install what is missing, then every test in each configuration of the matrix,
#                    one after another, each in its own build directory (TEST_CONFIGS):
#                      debug    Debug with internal checks (validators after every page-heap change,
#                               assertions); includes valgrind's memcheck runs and the NUMA guest
#                      release  Release
#                      asan     AddressSanitizer (clang): all but the tests that replace malloc
#                      ubsan    UndefinedBehaviorSanitizer (clang)
#                      tsan     ThreadSanitizer (clang): the allocator's threaded tests (the
#                               collector's need the stop signal, which TSan holds back)
#   make check       the debug configuration alone (the quick loop)
#   make test NH_SANITIZE=address|thread|undefined   that sanitizer's configuration alone
#   make numa-check  the NUMA guest test on a 4-node QEMU machine (make test boots a 2-node one)
#   make numa-bench  the NUMA scaling benchmark in QEMU guests of 1, 2 and 4 nodes (build/numa-scale;
#                    on a multi-socket host run build/release/bench/nheap-numa-scale directly)
#   make soak        the long randomised model tests (allocator and collector)
#   make fuzz        the libFuzzer targets (clang, ASan), FUZZ_SECONDS each (60); crashes land in
#                    build/fuzz/crashes/ (copy them to tests/fuzz/<target>/ to keep them as tests)
#   make bench       the raw micro-benchmarks (Google Benchmark): OS layer, allocator beside the mallocs
JOBS    ?= $(shell nproc)
NH_SANITIZE ?=
RELEASE := build/release
DEBUG   := build/debug$(if $(NH_SANITIZE),-$(NH_SANITIZE))
CMAKE_FLAGS ?=

.PHONY: all deps release debug run bench-full test check numa-check numa-bench soak fuzz bench install clean

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
	NHEAP_CONFIG=configs/default.ini $(RELEASE)/bench/nheap-report --quick --out build/report

bench-full: release
	NHEAP_CONFIG=configs/default.ini $(RELEASE)/bench/nheap-report --full --out build/report

TEST_CONFIGS ?= debug release asan ubsan tsan
SAN_CC := -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++
test_debug   := check NH_SANITIZE=
test_release := check-release
test_asan    := check NH_SANITIZE=address CMAKE_FLAGS="$(SAN_CC)"
test_ubsan   := check NH_SANITIZE=undefined CMAKE_FLAGS="$(SAN_CC)"
test_tsan    := check NH_SANITIZE=thread CMAKE_FLAGS="$(SAN_CC)"

ifeq ($(NH_SANITIZE),)
test: deps
	@failed=""; for c in $(TEST_CONFIGS); do \
	  echo "=== make test: $$c"; \
	  case $$c in debug) args='$(test_debug)';; release) args='$(test_release)';; asan) args='$(test_asan)';; \
	    ubsan) args='$(test_ubsan)';; tsan) args='$(test_tsan)';; *) echo "unknown configuration $$c"; exit 2;; esac; \
	  eval $(MAKE) --no-print-directory $$args || failed="$$failed $$c"; \
	done; \
	if [ -n "$$failed" ]; then echo "=== make test: FAILED in:$$failed"; exit 1; fi; \
	echo "=== make test: every configuration passed ($(TEST_CONFIGS))"
else
test: check
endif

check: debug
	cd $(DEBUG) && ctest --output-on-failure -j $(JOBS)

check-release: release
	cd $(RELEASE) && ctest --output-on-failure -j $(JOBS)

numa-check: debug
	tests/numa-vm/run.sh $(DEBUG)/tests/numa_guest 4 $(DEBUG)/numa-vm

numa-bench: release
	NHEAP_NUMA_CACHE=$(RELEASE)/numa-vm bench/numa_scale.sh $(RELEASE)/bench/nheap-numa-scale build/numa-scale 1 2 4

soak: debug
	NH_MODEL_STEPS=2000000 NH_MODEL_SEED=1 $(DEBUG)/tests/test_model
	NH_MODEL_STEPS=2000000 NH_MODEL_SEED=2 NHEAP_DEBUG=rseq=0 $(DEBUG)/tests/test_model
	for seed in 11 12 13 14; do NH_GC_MODEL_OPS=2000000 NH_MODEL_SEED=$$seed NHEAP_DEBUG=checkmark=2 \
	  $(DEBUG)/tests/test_gc_model || exit 1; done
	NH_GC_MODEL_OPS=2000000 NH_MODEL_SEED=15 NHEAP_GC=stw $(DEBUG)/tests/test_gc_model
	NH_GC_MODEL_OPS=1000000 NH_MODEL_SEED=16 NHEAP_NUMA=fake:2 $(DEBUG)/tests/test_gc_model

FUZZ_SECONDS ?= 60
FUZZ := build/fuzz
fuzz: deps
	@cmake -S . -B $(FUZZ) -DCMAKE_BUILD_TYPE=Debug -DNH_SANITIZE=address -DNH_FUZZ=ON \
	  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ >/dev/null
	@cmake --build $(FUZZ) -j $(JOBS) --target fuzz_ops fuzz_config
	@mkdir -p $(FUZZ)/corpus-ops $(FUZZ)/corpus-config $(FUZZ)/crashes
	$(FUZZ)/tests/fuzz_config -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(FUZZ)/crashes/config- \
	  $(FUZZ)/corpus-config tests/fuzz/config
	$(FUZZ)/tests/fuzz_ops -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -artifact_prefix=$(FUZZ)/crashes/ops- \
	  $(FUZZ)/corpus-ops tests/fuzz/ops

bench: release
	$(RELEASE)/bench/nheap-bench-malloc --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=build/bench-malloc.json --benchmark_out_format=json
	$(RELEASE)/bench/nheap-micro --benchmark_out=build/bench-micro.json --benchmark_out_format=json

install: release
	cmake --install $(RELEASE) $(if $(PREFIX),--prefix $(PREFIX))

clean:
	rm -rf build
