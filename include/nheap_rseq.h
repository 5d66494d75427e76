/*
 * nheap_rseq.h — the pieces every nheap restartable sequence shares (x86-64, GCC/clang inline
 * assembly), for nh_store in nheap.h and the per-CPU cache sequences in core/percpu.h. Installed
 * with nheap.h because nh_store is inline in the program; not an API of its own.
 *
 * A sequence runs from label 1 to label 2 (its commit, the last instruction before 2), with its
 * abort handler at label 4 and its rseq_cs descriptor at label 3; `%[rs]` holds glibc's
 * __rseq_offset (the thread's struct rseq is at %fs:rs: cpu_id at +4, rseq_cs at +8). rax is
 * clobbered by the prologue.
 */
#ifndef NHEAP_RSEQ_H
#define NHEAP_RSEQ_H

#define NH_RSEQ_SIG 0x53053053   /* glibc's registration signature on x86 */
#define NH__RSEQ_STR(x) #x
#define NH__RSEQ_XSTR(x) NH__RSEQ_STR(x)

/* The rseq_cs descriptor (label 3) for the sequence 1..2 with abort label 4, listed for the
 * kernel's and debuggers' sake in __rseq_cs_ptr_array, and the store that arms it. */
#define NH_RSEQ_PROLOGUE                                                                          \
  ".pushsection __rseq_cs, \"aw\"\n\t"                                                          \
  ".balign 32\n\t"                                                                              \
  "3:\n\t"                                                                                      \
  ".long 0x0, 0x0\n\t"                                                                          \
  ".quad 1f, (2f - 1f), 4f\n\t"                                                                 \
  ".popsection\n\t"                                                                             \
  ".pushsection __rseq_cs_ptr_array, \"aw\"\n\t"                                                \
  ".quad 3b\n\t"                                                                                \
  ".popsection\n\t"                                                                             \
  "leaq 3b(%%rip), %%rax\n\t"                                                                   \
  "movq %%rax, %%fs:8(%[rs])\n\t"

/* The abort handler: the signature the kernel checks (hidden in a ud1), then back to C at the
 * asm goto label abort_label. */
#define NH_RSEQ_EPILOGUE(abort_label)                                                             \
  ".pushsection __rseq_failure, \"ax\"\n\t"                                                     \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                                                                  \
  ".long " NH__RSEQ_XSTR(NH_RSEQ_SIG) "\n\t"                                                    \
  "4:\n\t"                                                                                      \
  "jmp %l[" #abort_label "]\n\t"                                                                \
  ".popsection\n\t"

#endif
