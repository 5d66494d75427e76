/*
 * gcdebug.c — bdwgc's GC_DEBUG allocators on nheap (libnheap_gc.so.1's second half; gcabi.c is
 * the first): objects that carry where they were allocated and a trailer that catches writes
 * past their end, and the find-leak mode's report.
 *
 * A debug object is an nheap object laid out as
 *     [header: file, line, size, magic, cell][the program's size bytes][8 trailer bytes]
 * and the program holds the address just past the header (bdwgc's GC_base of it is the
 * object's start, as under bdwgc). The trailer is a fixed pattern right after the last byte
 * asked for (unaligned), so a write a few bytes past the end lands in it.
 *
 * Smashes are found where bdwgc finds them: GC_debug_free and GC_debug_realloc check the
 * object they are given, and the heap check runs after every collection (after GC_gcollect,
 * and at the next debug allocation once a cycle has passed): every live debug object's
 * trailer is compared, and a smashed one is reported once (its trailer is then rewritten),
 * "GC_check_heap: found smashed location at <addr> in or near object at <obj> (file:line,
 * sz=<n>)" on stderr. The live debug objects are found through a registry of cells, each a
 * disappearing link to its object (links.c): the collector empties the cell of an object that
 * dies, so the check never reads freed memory, and empty cells are reused.
 *
 * Find-leak mode (GC_set_find_leak, GC_FIND_LEAK): the collector keeps what it finds
 * unreachable (gc_set_find_leak) and this file reports it after the cycle, "Found <n> leaked
 * objects:" and one line each (the allocation's file and line for a debug object), then frees
 * it, so each leak is told once, as bdwgc does.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gcabi.h"
#include "core/heap.h"
#include "nheap.h"

typedef struct dbg_hdr {
  const char *file;            /* where it was allocated (the program's string) */
  GC_word line;
  GC_word size;                /* bytes the program asked for */
  GC_word magic;               /* DBG_MAGIC: a debug object (GC_debug_free checks it) */
  void **cell;                 /* its registry cell (NULL: unchecked) */
  GC_word pad;                 /* the program's bytes 16-byte aligned, as bdwgc's */
} dbg_hdr;

#define DBG_MAGIC ((GC_word)0x6e68656170646267ull)   /* "nheapdbg" */
static const unsigned char trailer[8] = {0xfe, 0xed, 0xfa, 0xce, 0xde, 0xad, 0xbe, 0xef};

/* ---- the registry of live debug objects ---- */

enum { CELLS = 4096 };
typedef struct cell_block {
  struct cell_block *next;
  void *cell[CELLS];           /* an object's start, a disappearing link to it; NULL: its
                                  object died (the collector cleared it); CELL_FREE: reusable */
} cell_block;
#define CELL_FREE ((void *)1)

static pthread_mutex_t registry = PTHREAD_MUTEX_INITIALIZER;
static cell_block *blocks;     /* malloc memory: never scanned, so a cell keeps nothing alive */
static size_t block_used;      /* cells handed out of the newest block */
static void **free_cells;      /* reusable cells (malloc'd stack) */
static size_t nfree, capfree;
static GC_word checked_gc;     /* the gc_no the last heap check saw */

static void push_free(void **cell) {
  if (nfree == capfree) {
    size_t cap = capfree ? capfree * 2 : 256;
    void **v = realloc(free_cells, cap * sizeof *v);
    if (!v)
      return;   /* the cell is lost to reuse, not to correctness */
    free_cells = v;
    capfree = cap;
  }
  free_cells[nfree++] = cell;
}

/* A cell for obj, registered as a link to it; NULL when memory ran out (the object goes
 * unchecked). */
static void **registry_add(dbg_hdr *obj) {
  pthread_mutex_lock(&registry);
  void **cell = NULL;
  if (nfree) {
    cell = free_cells[--nfree];
  } else {
    if (!blocks || block_used == CELLS) {
      cell_block *b = calloc(1, sizeof *b);
      if (b) {
        b->next = blocks;
        blocks = b;
        block_used = 0;
      }
    }
    if (blocks && block_used < CELLS)
      cell = &blocks->cell[block_used++];
  }
  if (cell) {
    *cell = obj;
    if (specials_link_add(cell, obj, false) < 0) {
      *cell = CELL_FREE;
      push_free(cell);
      cell = NULL;
    }
  }
  pthread_mutex_unlock(&registry);
  return cell;
}

/* An object freed by the program: its cell is emptied and reused. */
static void registry_remove(dbg_hdr *obj) {
  pthread_mutex_lock(&registry);
  void **cell = obj->cell;
  if (cell && *cell == obj) {
    specials_link_remove(cell, false);
    *cell = CELL_FREE;
    push_free(cell);
  }
  obj->cell = NULL;
  pthread_mutex_unlock(&registry);
}

/* ---- checking ---- */

static bool smashed_at(const dbg_hdr *h, const unsigned char **where) {
  const unsigned char *t = (const unsigned char *)(h + 1) + h->size;
  for (size_t i = 0; i < sizeof trailer; i++) {
    if (t[i] != trailer[i]) {
      *where = t + i;
      return true;
    }
  }
  return false;
}

static void report_smash(const char *who, const dbg_hdr *h, const unsigned char *where) {
  fprintf(stderr, "%s: found smashed location at %p in or near object at %p (%s:%lu, sz=%lu)\n", who,
          (const void *)where, (const void *)(h + 1), h->file ? h->file : "?", (unsigned long)h->line,
          (unsigned long)h->size);
}

void gcdebug_check_heap(void) {
  GC_word gc = (GC_word)nh_stat(NH_STAT_GC_CYCLES);
  if (!__atomic_load_n(&blocks, __ATOMIC_ACQUIRE) || gc == __atomic_load_n(&checked_gc, __ATOMIC_RELAXED))
    return;
  pthread_mutex_lock(&registry);
  checked_gc = gc;
  for (cell_block *b = blocks; b; b = b->next) {
    size_t n = b == blocks ? block_used : CELLS;
    for (size_t i = 0; i < n; i++) {
      /* In a no-stop region: a cycle cannot empty the cell and free the object meanwhile. */
      region_enter();
      dbg_hdr *h = b->cell[i];
      const unsigned char *where;
      if (!h || h == CELL_FREE) {
        region_exit();
        if (!h) {   /* its object died (and its link went with it): reusable now */
          b->cell[i] = CELL_FREE;
          push_free(&b->cell[i]);
        }
        continue;
      }
      if (smashed_at(h, &where)) {
        report_smash("GC_check_heap", h, where);
        memcpy((unsigned char *)(h + 1) + h->size, trailer, sizeof trailer);   /* told once */
      }
      region_exit();
    }
  }
  pthread_mutex_unlock(&registry);
}

/* ---- the debug allocators ---- */

static void *debug_alloc(size_t n, const char *file, int line, bool atomic, bool uncollectable) {
  gcabi_start();
  if (n > SIZE_MAX - sizeof(dbg_hdr) - sizeof trailer)
    return gcabi_allocated(NULL, n);
  size_t total = sizeof(dbg_hdr) + n + sizeof trailer;
  dbg_hdr *h = atomic && !gcabi_find_leak() ? nh_alloc_noscan(total) : nh_alloc(total);
  if (!h)
    return gcabi_allocated(NULL, n);
  if (uncollectable && nh_root_add(h, total) != 0) {
    nh_free(h);
    return gcabi_allocated(NULL, n);
  }
  *h = (dbg_hdr){.file = file, .line = (GC_word)line, .size = n, .magic = DBG_MAGIC};
  memcpy((unsigned char *)(h + 1) + n, trailer, sizeof trailer);
  gcdebug_check_heap();   /* a cycle has passed since the last check: bdwgc checks at each */
  h->cell = registry_add(h);
  return h + 1;
}

/* The header of a debug object the program holds, or NULL (reported) when p is not one. */
static dbg_hdr *header_of(const char *who, void *p) {
  dbg_hdr *h = (dbg_hdr *)p - 1;
  if (nh_base(p) != (void *)h || h->magic != DBG_MAGIC) {
    fprintf(stderr, "%s called on pointer %p without debugging info\n", who, p);
    return NULL;
  }
  return h;
}

GC_API void *GC_debug_malloc(size_t n, const char *s, int i) { return debug_alloc(n, s, i, false, false); }
GC_API void *GC_debug_malloc_atomic(size_t n, const char *s, int i) { return debug_alloc(n, s, i, true, false); }
GC_API void *GC_debug_malloc_uncollectable(size_t n, const char *s, int i) { return debug_alloc(n, s, i, false, true); }
GC_API void *GC_debug_malloc_atomic_uncollectable(size_t n, const char *s, int i) {
  return debug_alloc(n, s, i, true, true);
}
GC_API void *GC_debug_malloc_ignore_off_page(size_t n, const char *s, int i) { return debug_alloc(n, s, i, false, false); }
GC_API void *GC_debug_malloc_atomic_ignore_off_page(size_t n, const char *s, int i) {
  return debug_alloc(n, s, i, true, false);
}
GC_API void *GC_debug_malloc_stubborn(size_t n, const char *s, int i) { return debug_alloc(n, s, i, false, false); }
GC_API void *GC_debug_malloc_replacement(size_t n) { return debug_alloc(n, "(malloc)", 0, false, false); }

GC_API char *GC_debug_strdup(const char *str, const char *s, int i) {
  size_t n = strlen(str) + 1;
  char *d = debug_alloc(n, s, i, true, false);
  return d ? memcpy(d, str, n) : NULL;
}
GC_API char *GC_debug_strndup(const char *str, size_t max, const char *s, int i) {
  size_t n = strnlen(str, max);
  char *d = debug_alloc(n + 1, s, i, true, false);
  if (d) {
    memcpy(d, str, n);
    d[n] = 0;
  }
  return d;
}

GC_API void GC_debug_free(void *p) {
  if (!p)
    return;
  dbg_hdr *h = header_of("GC_debug_free", p);
  if (!h)
    return;
  const unsigned char *where;
  if (smashed_at(h, &where))
    report_smash("GC_debug_free", h, where);
  registry_remove(h);
  nh_root_forget(h);   /* an uncollectable one's root */
  h->magic = 0;        /* a second free is told, not taken */
  nh_free(h);
}

GC_API void *GC_debug_realloc(void *p, size_t n, const char *s, int i) {
  if (!p)
    return debug_alloc(n, s, i, false, false);
  if (!n) {
    GC_debug_free(p);
    return NULL;
  }
  dbg_hdr *h = header_of("GC_debug_realloc", p);
  if (!h)
    return NULL;
  const unsigned char *where;
  if (smashed_at(h, &where))
    report_smash("GC_debug_realloc", h, where);
  void *q = debug_alloc(n, s, i, false, false);
  if (q) {
    memcpy(q, p, h->size < n ? h->size : n);
    GC_debug_free(p);
  }
  return q;
}
GC_API void *GC_debug_realloc_replacement(void *p, size_t n) { return GC_debug_realloc(p, n, "(realloc)", 0); }

/* A debug object's finalizer sees the address the program holds: a closure carries the
 * program's function and data (it is the finalizer's argument, which the collector keeps). */
typedef struct dbg_closure {
  GC_finalization_proc fn;
  void *cd;
} dbg_closure;

static void debug_invoke(void *obj, void *closure) {
  dbg_closure *c = closure;
  c->fn((dbg_hdr *)obj + 1, c->cd);
}

static void debug_finalizer(void *p, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn, void **ocd, int kind) {
  dbg_hdr *h = header_of("GC_debug_register_finalizer", p);
  if (!h)
    return;
  dbg_closure *c = NULL;
  if (fn && !(c = nh_alloc(sizeof *c)))
    return;
  if (c)
    *c = (dbg_closure){fn, cd};
  GC_finalization_proc old;
  void *old_cd;
  gcabi_register_finalizer(h, c ? debug_invoke : NULL, c, &old, &old_cd, kind);
  dbg_closure *oc = old == debug_invoke ? old_cd : NULL;
  if (ofn)
    *ofn = oc ? oc->fn : old;
  if (ocd)
    *ocd = oc ? oc->cd : old_cd;
}
GC_API void GC_debug_register_finalizer(void *p, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn, void **ocd) {
  debug_finalizer(p, fn, cd, ofn, ocd, NH_FINAL_ORDERED);
}
GC_API void GC_debug_register_finalizer_ignore_self(void *p, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn,
                                                    void **ocd) {
  debug_finalizer(p, fn, cd, ofn, ocd, NH_FINAL_IGNORE_SELF);
}
GC_API void GC_debug_register_finalizer_no_order(void *p, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn,
                                                 void **ocd) {
  debug_finalizer(p, fn, cd, ofn, ocd, NH_FINAL_NO_ORDER);
}

/* Stubborn objects are gone from bdwgc 8 (every object may change); what is left marks a
 * store for incremental collection, which nheap's write tracking sees by itself. */
GC_API void GC_change_stubborn(const void *p) { (void)p; }
GC_API void GC_end_stubborn_change(const void *p) { (void)p; }
GC_API void GC_debug_change_stubborn(const void *p) { (void)p; }
GC_API void GC_debug_end_stubborn_change(const void *p) { (void)p; }
GC_API void GC_ptr_store_and_dirty(void *p, const void *q) { *(const void **)p = q; }
GC_API void GC_debug_ptr_store_and_dirty(void *p, const void *q) { *(const void **)p = q; }
GC_API void GC_debug_register_displacement(size_t n) { (void)n; }   /* interior pointers all count */

/* ---- find-leak mode ---- */

void gcdebug_report_leaks(const uintptr_t *objs, size_t n, size_t more) {
  fprintf(stderr, "Found %zu leaked objects:\n", n + more);
  for (size_t i = 0; i < n; i++) {
    const dbg_hdr *h = (const dbg_hdr *)objs[i];
    if (h->magic == DBG_MAGIC)
      fprintf(stderr, "Leaked object at %p (%s:%lu, sz=%lu)\n", (const void *)(h + 1), h->file ? h->file : "?",
              (unsigned long)h->line, (unsigned long)h->size);
    else
      fprintf(stderr, "Leaked object at %p, %zu bytes\n", (const void *)h, nh_usable_size(h));
  }
  if (more)
    fprintf(stderr, "(and %zu more)\n", more);
  for (size_t i = 0; i < n; i++) {   /* told once, as bdwgc does: freed now */
    dbg_hdr *h = (dbg_hdr *)objs[i];
    if (h->magic == DBG_MAGIC) {
      registry_remove(h);
      h->magic = 0;
    }
    nh_free(h);
  }
}
