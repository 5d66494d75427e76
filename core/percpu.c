/*
 * percpu.c — the rseq mode's set-up and the cross-CPU fence (percpu.h has the sequences).
 *
 * Protocol for per-CPU caches in rseq mode (TCMalloc's, on glibc's rseq registration):
 *   - a CPU's free stacks change only inside the sequences (push, pop), from any thread that
 *     is running on that CPU at that moment;
 *   - anything else that touches a CPU's stacks (flushing them, scanning them for a double
 *     free) first takes the cache's lock, sets cache->stopped, and fences the CPU: after
 *     percpu_fence no sequence that saw stopped == 0 can still commit; the sequences that start
 *     later see stopped and take the slow path, which waits for the lock. Then stopped is
 *     cleared (release) and the lock dropped.
 * Without glibc's rseq (GLIBC_TUNABLES=glibc.pthread.rseq=0), without membarrier's RSEQ
 * command, under ThreadSanitizer, or with NHEAP_DEBUG=rseq=0, nheap uses the per-CPU lock
 * mode instead: every cache operation takes that CPU's lock. The stats say which.
 */
#include <errno.h>
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/error.h"
#include "core/percpu.h"

static long membarrier(int cmd, unsigned flags, int cpu) {
  return syscall(__NR_membarrier, cmd, flags, cpu);
}

bool percpu_rseq_available(void) {
  if (!NH_HAVE_RSEQ_ASM || nh_config_tsan || __rseq_size == 0)
    return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
}

void percpu_fence(int cpu) {
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, MEMBARRIER_CMD_FLAG_CPU, cpu) == 0)
    return;
  if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) != 0)
    nh_fatal("membarrier(PRIVATE_EXPEDITED_RSEQ) failed after registering (errno %d)", errno);
}
