/*
 * percpu.h — restartable sequences (rseq) on glibc's registration: push and pop on a per-CPU
 * stack, and bump allocation in a per-CPU tiny block, with no lock and no atomic
 * read-modify-write. See percpu.c for the protocol.
 *
 * Layout the sequences rely on (checked by _Static_assert in mcache.h):
 *   caches[cpu]             -> the CPU's nh_mcache_t
 *   mcache + 0              uint32_t stopped: a remote operation owns this cache
 *   mcache + fs_off         nh_freestack {uint32_t top; uint32_t cap; void **items}, or for
 *                           percpu_bump the uintptr_t tiny cursor
 * Each sequence reads the CPU from glibc's struct rseq (cpu_id at +4 from the thread pointer +
 * __rseq_offset), checks cpu < ncpus and !stopped, and commits with one store (`top`, or the
 * tiny cursor).
 * The kernel restarts the sequence at its abort handler if the thread is preempted, migrated or
 * signalled before the commit; the handler jumps back to retry. Nothing is written to
 * kernel-owned rseq fields other than rseq_cs, which is what it is for.
 */
#ifndef NH_PERCPU_H
#define NH_PERCPU_H

#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/rseq.h>

#include "core/internal.h"
#include "nheap_rseq.h"   /* the prologue and abort handler, shared with nh_store */

#if defined(__x86_64__)
#define NH_HAVE_RSEQ_ASM 1

/* The common head: rcx = (char *)caches[cpu] + fs_off, or jump to slow (cpu out of range, or
 * the cache stopped). */
#define NH_RSEQ_FIND_FIELD                                                                        \
  "1:\n\t"                                                                                      \
  "movl %%fs:4(%[rs]), %%eax\n\t"                                                               \
  "cmpl %[ncpus], %%eax\n\t"                                                                    \
  "jae %l[slow]\n\t"                                                                            \
  "movq (%[caches], %%rax, 8), %%rcx\n\t"                                                       \
  "cmpl $0, (%%rcx)\n\t"                                                                        \
  "jne %l[slow]\n\t"                                                                            \
  "addq %[fs_off], %%rcx\n\t"

/* The stacks' head: rcx = &caches[cpu]->free[..], eax = its top. */
#define NH_RSEQ_FIND_STACK NH_RSEQ_FIND_FIELD "movl (%%rcx), %%eax\n\t"

/* Pops the top of the current CPU's stack into *out. Returns 1; 0 if the stack is empty, the
 * cache is stopped or the thread has no rseq (caller takes the slow path). */
static inline __attribute__((always_inline)) int
percpu_pop(void *const *caches, uint32_t ncpus, size_t fs_off, void **out) {
  const long rs = (long)__rseq_offset;
  for (;;) {
    __asm__ goto(
        NH_RSEQ_PROLOGUE
        NH_RSEQ_FIND_STACK
        "testl %%eax, %%eax\n\t"
        "jz %l[slow]\n\t"
        "subl $1, %%eax\n\t"
        "movq 8(%%rcx), %%rdx\n\t"
        "movq (%%rdx, %%rax, 8), %%rdx\n\t"
        "movq %%rdx, (%[out])\n\t"
        "movl %%eax, (%%rcx)\n\t"   /* commit */
        "2:\n\t"
        NH_RSEQ_EPILOGUE(abort)
        :
        : [rs] "r"(rs), [ncpus] "r"(ncpus), [caches] "r"(caches), [fs_off] "r"(fs_off), [out] "r"(out)
        : "rax", "rcx", "rdx", "memory", "cc"
        : slow, abort);
    return 1;
  abort:
    continue;
  slow:
    return 0;
  }
}

/* Pushes p on the current CPU's stack. Returns 1; 0 if full, stopped or no rseq. */
static inline __attribute__((always_inline)) int
percpu_push(void *const *caches, uint32_t ncpus, size_t fs_off, void *p) {
  const long rs = (long)__rseq_offset;
  for (;;) {
    __asm__ goto(
        NH_RSEQ_PROLOGUE
        NH_RSEQ_FIND_STACK
        "cmpl 4(%%rcx), %%eax\n\t"
        "jae %l[slow]\n\t"
        "movq 8(%%rcx), %%rdx\n\t"
        "movq %[p], (%%rdx, %%rax, 8)\n\t"
        "addl $1, %%eax\n\t"
        "movl %%eax, (%%rcx)\n\t"   /* commit */
        "2:\n\t"
        NH_RSEQ_EPILOGUE(abort)
        :
        : [rs] "r"(rs), [ncpus] "r"(ncpus), [caches] "r"(caches), [fs_off] "r"(fs_off), [p] "r"(p)
        : "rax", "rcx", "rdx", "memory", "cc"
        : slow, abort);
    return 1;
  abort:
    continue;
  slow:
    return 0;
  }
}

/* Pushes up to n of items[0..n) on the current CPU's stack in one sequence, items[0] first
 * (items[n - 1] ends on top): as many as there is room for, copied above the top and committed
 * with one store of the new top. Stores the count pushed in *pushed (0: full) and returns 1;
 * 0 if stopped or no rseq. n > 0. */
static inline __attribute__((always_inline)) int
percpu_push_n(void *const *caches, uint32_t ncpus, size_t fs_off, void *const *items, size_t n, size_t *pushed) {
  const long rs = (long)__rseq_offset;
  for (;;) {
    __asm__ goto(
        NH_RSEQ_PROLOGUE
        NH_RSEQ_FIND_STACK
        "movl 4(%%rcx), %%edx\n\t"
        "subl %%eax, %%edx\n\t"            /* room = cap - top (zero-extended) */
        "cmpq %[n], %%rdx\n\t"
        "cmovaq %[n], %%rdx\n\t"           /* k = min(room, n) */
        "movq 8(%%rcx), %%r8\n\t"
        "leaq (%%r8, %%rax, 8), %%r8\n\t"  /* items + top */
        "xorl %%r9d, %%r9d\n\t"
        "jmp 6f\n\t"
        "5:\n\t"
        "movq (%[items], %%r9, 8), %%r10\n\t"
        "movq %%r10, (%%r8, %%r9, 8)\n\t"
        "addq $1, %%r9\n\t"
        "6:\n\t"
        "cmpq %%rdx, %%r9\n\t"
        "jb 5b\n\t"
        "movq %%rdx, (%[pushed])\n\t"
        "addl %%edx, %%eax\n\t"
        "movl %%eax, (%%rcx)\n\t"   /* commit */
        "2:\n\t"
        NH_RSEQ_EPILOGUE(abort)
        :
        : [rs] "r"(rs), [ncpus] "r"(ncpus), [caches] "r"(caches), [fs_off] "r"(fs_off),
          [items] "r"(items), [n] "r"(n), [pushed] "r"(pushed)
        : "rax", "rcx", "rdx", "r8", "r9", "r10", "memory", "cc"
        : slow, abort);
    return 1;
  abort:
    continue;
  slow:
    return 0;
  }
}

/* Bump allocation in the current CPU's tiny block (mcache.h): the word at fs_off is the next
 * free byte of a 16-byte block, just past its last object (0: none). Places size bytes at the
 * next multiple of amask + 1 if they fit before the block ends, stores the address in *out and
 * commits the word's new value. Returns 1; 0 if no room, no block, stopped or no rseq. */
static inline __attribute__((always_inline)) int
percpu_bump(void *const *caches, uint32_t ncpus, size_t fs_off, size_t size, size_t amask, void **out) {
  const long rs = (long)__rseq_offset;
  const size_t nmask = ~amask;
  for (;;) {
    __asm__ goto(
        NH_RSEQ_PROLOGUE
        NH_RSEQ_FIND_FIELD
        "movq (%%rcx), %%rax\n\t"           /* cur */
        "testq %%rax, %%rax\n\t"
        "jz %l[slow]\n\t"
        "leaq (%%rax, %[amask]), %%rdx\n\t"
        "andq %[nmask], %%rdx\n\t"           /* p = cur aligned up */
        "subq $1, %%rax\n\t"
        "orq $15, %%rax\n\t"
        "addq $1, %%rax\n\t"                 /* the block's end */
        "subq %[size], %%rax\n\t"
        "cmpq %%rax, %%rdx\n\t"              /* p + size > end: no room */
        "ja %l[slow]\n\t"
        "movq %%rdx, (%[out])\n\t"
        "addq %[size], %%rdx\n\t"
        "movq %%rdx, (%%rcx)\n\t"            /* commit */
        "2:\n\t"
        NH_RSEQ_EPILOGUE(abort)
        :
        : [rs] "r"(rs), [ncpus] "r"(ncpus), [caches] "r"(caches), [fs_off] "r"(fs_off),
          [size] "r"(size), [amask] "r"(amask), [nmask] "r"(nmask), [out] "r"(out)
        : "rax", "rcx", "rdx", "memory", "cc"
        : slow, abort);
    return 1;
  abort:
    continue;
  slow:
    return 0;
  }
}
#else
#define NH_HAVE_RSEQ_ASM 0
static inline int percpu_pop(void *const *caches, uint32_t ncpus, size_t fs_off, void **out) { return 0; }
static inline int percpu_push(void *const *caches, uint32_t ncpus, size_t fs_off, void *p) { return 0; }
static inline int percpu_push_n(void *const *caches, uint32_t ncpus, size_t fs_off, void *const *items, size_t n,
                                size_t *pushed) { return 0; }
static inline int percpu_bump(void *const *caches, uint32_t ncpus, size_t fs_off, size_t size, size_t amask, void **out) { return 0; }
#endif

/* The calling thread's CPU in [0, ncpus): rseq's cpu_id when glibc registered rseq (2 ns),
 * else sched_getcpu. Only a hint outside a sequence: the thread may move at once. */
static inline int percpu_current_cpu(uint32_t ncpus) {
  int cpu = -1;
  if (__rseq_size > 0) {
    const struct rseq *rs = (const struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
    cpu = (int)__atomic_load_n(&rs->cpu_id, __ATOMIC_RELAXED);
  }
  if (cpu < 0)
    cpu = sched_getcpu();
  return cpu < 0 ? 0 : cpu % (int)ncpus;
}

/* Whether this process can use the sequences: glibc registered rseq, membarrier can fence
 * CPUs, and the build is not under ThreadSanitizer (which cannot see inside them). Registers
 * with membarrier on first call. */
bool percpu_rseq_available(void);

/* Makes sure no sequence is in flight on cpu: any that started before returns has committed or
 * will restart (membarrier PRIVATE_EXPEDITED_RSEQ). */
void percpu_fence(int cpu);

#endif
