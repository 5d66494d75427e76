/*
 * gcmodel.h — the collector's model test: an operation language over nheap's public API and a
 * shadow model of what must stay reachable (see gcmodel.c). Driven by random programs
 * (test_gc_model.c) and by libFuzzer (fuzz/fuzz_ops.c).
 */
#ifndef NH_GCMODEL_H
#define NH_GCMODEL_H

#include <stddef.h>
#include <stdint.h>

typedef struct gcm_report {
  uint64_t ops, cycles, verified;   /* operations run, nh_gc calls, objects checked intact */
  uint64_t allocated, freed, died;  /* objects allocated, freed explicitly, found unreachable */
  uint64_t retained;                /* unreachable objects the collector had not freed yet */
  uint64_t threads;                 /* threads started and exited */
  const char *failure;              /* NULL, or what was found wrong (the program aborts first) */
} gcm_report;

/* Once, after nh_init: the types the typed objects use. */
void gcm_setup(void);
/* Runs the program in code[0..n) (every byte string is a valid program) from an empty model,
 * checking after each collection that every reachable object is intact; a lost or corrupted
 * object is fatal (abort, with what and where). Drops everything at the end and collects. */
void gcm_run(const uint8_t *code, size_t n, gcm_report *r);

#endif
