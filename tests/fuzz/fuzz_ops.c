/*
 * fuzz_ops.c — libFuzzer target over the collector's operation language (tests/gcmodel.c):
 * every input is a program of allocations, pointer stores and loads, frees, reallocs,
 * collections, threads and root changes, run against the shadow model with checkmark on, so
 * a lost or corrupted reachable object, a mark that missed one, or a memory error (ASan)
 * stops the fuzzer with the input (checkmark=1, not 2: libFuzzer's coverage counters are
 * integers in the data segment that change during a mark, and one that looks like a pointer to a
 * dead object is only doubtful). Programs are cut at 4096 bytes (1024 operations).
 * Built by `make fuzz` (clang, -fsanitize=fuzzer,address); replay.c runs the saved inputs in
 * tests/fuzz/ops/ in every `make test`.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "nheap.h"
#include "tests/gcmodel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bool ready;
  if (!ready) {
    nh_options o;
    nh_options_init(&o);
    o.hugepages = NH_HUGEPAGES_NONE;
    o.debug = "checkmark=1";
    if (nh_init(&o) != 0)
      abort();
    gcm_setup();
    ready = true;
  }
  gcm_report r = {0};
  gcm_run(data, size > 4096 ? 4096 : size, &r);
  return 0;
}
