/*
 * roots.c — the collector's roots (Go's markroot, bdwgc's conservative root scan), all
 * conservative:
 * each attached thread's stack from its stop sp (registers are
 * spilled there, thread.c), the collecting thread's stack from where it entered the collector
 * (cycle.c records it after spilling its registers; the collector's own frames below are not
 * scanned, so stale values in them retain nothing), the writable PT_LOAD segments of the program and every loaded library minus
 * PT_GNU_RELRO (dl_iterate_phdr, collected just before the world stops), and the ranges
 * registered with nh_root_add; nheap's own state (nh_rt) is cut out of its segment. Thread-local
 * variables outside those are not roots (as in bdwgc): register them.
 *
 *
 * Mark termination scans the stacks again (roots_rescan): a thread stopped between taking an
 * object from its cache and marking it holds it there alone; with concurrent-nobarrier the data
 * segments and registered ranges too (no barrier saw their stores). Each range is scanned by
 * mark.c (mark_range), word by word; r->bytes is what a cycle scanned, the pacer's root work.
 */
#include <errno.h>
#include <link.h>

#include "core/error.h"
#include "core/heap.h"

static bool push_range(nh_root_t **v, size_t *n, size_t *cap, uintptr_t lo, uintptr_t hi) {
  nh_root_t *nv = mem_meta_grow(&nh_rt.mem, *v, cap, *n, sizeof **v);
  if (!nv)
    return false;
  *v = nv;
  (*v)[(*n)++] = (nh_root_t){lo, hi};
  return true;
}

static int add_segments(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  nh_roots_t *r = arg;
  uintptr_t relro_lo = 0, relro_hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_GNU_RELRO) {
      relro_lo = info->dlpi_addr + ph->p_vaddr;
      relro_hi = relro_lo + ph->p_memsz;
    }
  }
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_W))
      continue;
    uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
    /* RELRO is read-only after relocation: cut it off the front (where the linker puts it). */
    if (relro_hi > lo && relro_lo <= lo)
      lo = relro_hi < hi ? relro_hi : hi;
    /* nheap's own state is not a root: the marker's fields hold heap addresses. */
    uintptr_t own_lo = (uintptr_t)&nh_rt, own_hi = own_lo + sizeof nh_rt;
    if (own_lo < hi && own_hi > lo) {
      if (own_lo > lo && !push_range(&r->data, &r->ndata, &r->capdata, lo, own_lo))
        return 1;
      lo = own_hi < hi ? own_hi : hi;
    }
    if (hi > lo && !push_range(&r->data, &r->ndata, &r->capdata, lo, hi))
      return 1;
  }
  return 0;
}

void roots_collect_data(nh_roots_t *r) {
  r->ndata = 0;
  if (dl_iterate_phdr(add_segments, r) != 0)
    nh_warn("gc: no memory to list the data segments; some roots may be missed this cycle");
}

NH_API int nh_root_add(void *addr, size_t len) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_root_add called before nh_init (or after nh_shutdown)");
    return -ENODEV;
  }
  uintptr_t lo = (uintptr_t)addr;
  if (!addr || len == 0 || lo + len < lo) {
    nh_error(-EINVAL, "nh_root_add(%p, %zu): not a valid range", addr, len);
    return -EINVAL;
  }
  nh_roots_t *r = &nh_rt.gc.roots;
  region_enter();
  nh_mutex_lock(&r->lock);
  bool ok = push_range(&r->user, &r->nuser, &r->capuser, lo, lo + len);
  nh_mutex_unlock(&r->lock);
  region_exit();
  if (!ok) {
    nh_error(-ENOMEM, "nh_root_add(%p, %zu): no memory for the root table", addr, len);
    return -ENOMEM;
  }
  return 0;
}

static int root_remove(void *addr, bool report) {
  if (!__atomic_load_n(&nh_rt.ready, __ATOMIC_ACQUIRE)) {
    nh_error(-ENODEV, "nh_root_remove called before nh_init (or after nh_shutdown)");
    return -ENODEV;
  }
  nh_roots_t *r = &nh_rt.gc.roots;
  int rc = -ENOENT;
  region_enter();
  nh_mutex_lock(&r->lock);
  for (size_t i = 0; i < r->nuser; i++) {
    if (r->user[i].lo == (uintptr_t)addr) {
      r->user[i] = r->user[--r->nuser];
      rc = 0;
      break;
    }
  }
  nh_mutex_unlock(&r->lock);
  region_exit();
  if (rc && report)
    nh_error(rc, "nh_root_remove(%p): no root was registered at that address", addr);
  return rc;
}

NH_API int nh_root_remove(void *addr) { return root_remove(addr, true); }
NH_API int nh_root_forget(void *addr) { return root_remove(addr, false); }

/* The stacks of the stopped threads (registers spilled), and the collecting thread's. */
static void scan_stacks(nh_marker_t *m, nh_threads_t *ts) {
  m->check_parent = 0;
  m->check_from = "a thread's stack";
  for (nh_thread_t *t = ts->first; t; t = t->next) {
    if (t == nh_self)
      continue;
    uintptr_t sp = __atomic_load_n(&t->stop_sp, __ATOMIC_ACQUIRE);
    nh_assert(sp != 0);   /* every listed thread is stopped: world_stop drops the gone ones */
    if (sp < t->stack_lo || sp > t->stack_hi)
      sp = t->stack_lo;   /* stopped on another stack (sigaltstack): take the whole range */
    m->check_parent = sp;
    mark_range(m, sp, t->stack_hi);
  }
  if (thread_attached(ts) && nh_rt.gc.collector_sp) {   /* the collector's caller */
    m->check_parent = nh_rt.gc.collector_sp;
    mark_range(m, nh_rt.gc.collector_sp, nh_self->stack_hi);
  }
}

void roots_scan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts) {
  uint64_t before = m->scanned_bytes;
  scan_stacks(m, ts);
  m->check_from = "a data segment";
  for (size_t i = 0; i < r->ndata; i++) {
    m->check_parent = r->data[i].lo;
    mark_range(m, r->data[i].lo, r->data[i].hi);
  }
  m->check_from = "a registered root";
  nh_mutex_lock(&r->lock);
  for (size_t i = 0; i < r->nuser; i++) {
    m->check_parent = r->user[i].lo;
    mark_range(m, r->user[i].lo, r->user[i].hi);
    /* A root inside a heap object keeps that object too (bdwgc's uncollectable objects are
     * nh_alloc + nh_root_add): its start, scanned as one more word. */
    uintptr_t self = r->user[i].lo;
    mark_range(m, (uintptr_t)&self, (uintptr_t)(&self + 1));
  }
  nh_mutex_unlock(&r->lock);
  r->bytes = m->scanned_bytes - before;
}

void roots_rescan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts, bool globals) {
  uint64_t bytes = r->bytes, before = m->scanned_bytes;
  if (globals)
    roots_scan(m, r, ts);
  else
    scan_stacks(m, ts);
  r->bytes = bytes + (m->scanned_bytes - before);
}
