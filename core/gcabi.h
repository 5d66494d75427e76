/*
 * gcabi.h — what the two halves of libnheap_gc.so.1 share: gcabi.c (bdwgc's interface) and
 * gcdebug.c (its GC_DEBUG allocators, smash checks and find-leak reports).
 */
#ifndef NH_GCABI_H
#define NH_GCABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GC_API __attribute__((visibility("default")))
typedef unsigned long GC_word;
typedef void (*GC_finalization_proc)(void *obj, void *client_data);

/* Starts nheap on the first call (bdwgc starts on GC_init or its first allocation); aborts
 * when it cannot, as bdwgc does (nheap has said why). */
void gcabi_start(void);
/* What an allocation that got p for n bytes returns: p, or the program's out-of-memory
 * function's answer (bdwgc's GC_oom_fn). */
void *gcabi_allocated(void *p, size_t n);
/* Find-leak mode is on (GC_set_find_leak or GC_FIND_LEAK before start-up). */
bool gcabi_find_leak(void);
/* Registers a finalizer of bdwgc's kind k (special.h's nh_final_kind) on obj, the old one's
 * function and data to *ofn, *ocd. */
void gcabi_register_finalizer(void *obj, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn, void **ocd,
                              int kind);

/* gcdebug.c: the leak report (gc_set_find_leak's callback), and the smash check of every
 * debug object, run after collections (gcabi.c's GC_gcollect, and the debug allocators once a
 * cycle has passed). */
void gcdebug_report_leaks(const uintptr_t *objs, size_t n, size_t more);
void gcdebug_check_heap(void);

#endif
