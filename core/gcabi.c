/*
 * gcabi.c — libnheap_gc.so.1: bdwgc 8.2's binary interface on nheap, for programs linked to
 * Debian's libgc.so.1 that should run on nheap without a rebuild.
 *
 *   LD_LIBRARY_PATH=<build>/gcabi program    (gcabi/libgc.so.1 is a link to libnheap_gc.so.1,
 *                                             whose soname is bdwgc's, libgc.so.1)
 *   LD_PRELOAD=<build>/libnheap_gc.so.1 program
 *
 * What a bdwgc program expects, and what it gets here:
 *   - Start-up: bdwgc starts on GC_init or on the first allocation; so does this library
 *     (nh_init once, with barrier = none: bdwgc programs store pointers with plain stores, so the
 *     collector is gc = concurrent-nobarrier where the kernel tracks writes, else stw, as
 *     nheap_gc_compat.h chooses; NHEAP_GC=stw keeps stw). The calling thread is attached.
 *   - Settings: bdwgc's variables map onto nheap's options, and an NHEAP_* variable of the same
 *     option wins over them: GC_MARKERS=n -> mark_workers n; GC_MAXIMUM_HEAP_SIZE -> the memory
 *     limit (bytes, or with a k/M/G suffix as bdwgc reads it); GC_FREE_SPACE_DIVISOR=d ->
 *     gc_percent 300/d (bdwgc's default divisor, 3, is GOGC=100); GC_PRINT_STATS -> gctrace=1;
 *     GC_DONT_GC -> collection disabled (GC_disable); GC_FIND_LEAK -> find-leak mode (below).
 *     Not mapped, and said at start-up when set: GC_INITIAL_HEAP_SIZE (nheap maps arenas as the
 *     heap grows), GC_ENABLE_INCREMENTAL (the mode is already concurrent).
 *   - Roots: the data segments of the program and its libraries and the attached threads'
 *     stacks are scanned (nheap finds them itself: GC_add_roots adds ranges, GC_remove_roots
 *     removes the range registered at lo). Every interior pointer keeps its object, as in bdwgc's
 *     default (GC_all_interior_pointers = 1): setting it to 0 keeps more objects, never fewer,
 *     and GC_register_displacement has nothing left to add.
 *   - Threads: any thread that allocates is attached (bdwgc's GC_THREADS programs register
 *     theirs through GC_pthread_create or GC_register_my_thread: both attach at once).
 *     GC_pthread_sigmask never blocks nheap's stop signal, SIGPWR (bdwgc's is SIGPWR too).
 *   - Finalizers in bdwgc's three orders (GC_register_finalizer, _ignore_self, _no_order:
 *     special.h's nh_final_kind), run on nheap's finalizer thread rather than inside the
 *     allocating thread's next allocation, or, in bdwgc's finalize-on-demand mode, where the
 *     program calls GC_invoke_finalizers (the notifier says when).
 *   - Disappearing links, short and long (links.c), cleared with the world stopped; a program
 *     reads one inside GC_call_with_alloc_lock, which runs its function where the world cannot
 *     stop (a no-stop region), one program thread at a time.
 *   - Typed allocation (gc_typed.h): a descriptor is an nheap type (nh_type_new), so typed
 *     objects are scanned precisely.
 *   - GC_DEBUG's allocators and find-leak mode: gcdebug.c.
 *   - Failures: a NULL from nheap goes through GC_oom_fn (default: return NULL); nheap's
 *     warnings and refused allocations go to the warn proc (GC_set_warn_proc), other errors to
 *     stderr.
 *   - Collection events (GC_set_on_collection_event, GC_set_start_callback): nheap's hook,
 *     numbered as bdwgc's (nh_set_gc_event_hook); the reclaim events are not raised (nheap
 *     sweeps lazily). GC_call_with_gc_active runs its function as an ordinary thread inside
 *     GC_do_blocking (thread.c). GC_collect_a_little does nothing (nheap's marks run on its own
 *     threads) and says whether one runs.
 *
 * Not provided yet (a program that needs one fails to load, naming it, rather than running on
 * a stand-in): GC_register_finalizer_unreachable, kinds and mark procedures (gc_mark.h),
 * gc_disclaim.h, gcj-style allocation (gc_gcj.h), GC_is_visible and the other pointer checks
 * (ptr_chck.c's), GC_get_heap_usage_safe, and bdwgc's exported variables but the plausible-heap
 * bounds (GC_dont_gc, GC_java_finalization, ...).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/gcabi.h"
#include "core/heap.h"
#include "nheap.h"

/* bdwgc's types and codes, as its gc.h declares them (the ABI: C calling convention on LP64). */
typedef void (*GC_warn_proc)(char *msg, GC_word arg);
typedef void *(*GC_oom_func)(size_t bytes);
typedef void (*GC_on_collection_event_proc)(int event_type);
typedef int (*GC_stop_func)(void);
typedef void *(*GC_fn_type)(void *client_data);
struct GC_stack_base { void *mem_base; };
typedef void *(*GC_stack_base_func)(struct GC_stack_base *sb, void *arg);
enum { GC_SUCCESS = 0, GC_DUPLICATE = 1, GC_NO_MEMORY = 2, GC_UNIMPLEMENTED = 3, GC_NOT_FOUND = 4 };
typedef void (*GC_finalizer_notifier_proc)(void);
#define GC_VERSION_IMPLEMENTED ((8u << 16) | (2u << 8) | 2u)   /* bdwgc 8.2.2's interface */

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool started;                    /* nh_init succeeded (or nheap was already running) */
static pthread_mutex_t settings = PTHREAD_MUTEX_INITIALIZER;
static int disabled;                    /* GC_disable depth (under settings) */
static int saved_percent;               /* gc_percent before the first GC_disable */
static size_t uncollectable;            /* live uncollectable objects: GC_free looks for roots */
static bool finalizers;                 /* one was registered: GC_free looks for them */
static bool find_leak;                  /* GC_set_find_leak before start-up, or GC_FIND_LEAK */
static GC_on_collection_event_proc event_proc;

static void default_warn(char *msg, GC_word arg) { fprintf(stderr, msg, arg); }
static void *default_oom(size_t bytes) {
  (void)bytes;
  return NULL;
}
static GC_warn_proc warn_proc = default_warn;
static GC_oom_func oom_fn = default_oom;

/* nheap's funnel: warnings and refused allocations to the program's warn proc, as bdwgc warns
 * of both (its text is a printf format with one GC_word argument, so nheap's '%' are doubled;
 * the allocation itself then goes to the out-of-memory function), other errors to stderr. */
static void report(int code, const char *msg, void *arg) {
  (void)arg;
  if (code != 0 && code != -ENOMEM) {
    fprintf(stderr, "nheap: %s\n", msg);
    return;
  }
  char buf[640];
  size_t n = (size_t)snprintf(buf, sizeof buf, "GC Warning: ");
  for (const char *c = msg; *c && n + 3 < sizeof buf; c++) {
    if (*c == '%')
      buf[n++] = '%';
    buf[n++] = *c;
  }
  buf[n++] = '\n';
  buf[n] = 0;
  __atomic_load_n(&warn_proc, __ATOMIC_ACQUIRE)(buf, 0);
}

/* bdwgc's size syntax: a number with an optional k, M or G suffix (GC_parse_mem_size_arg). */
static bool mem_size(const char *s, int64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || end == s)
    return false;
  int shift = *end == 'k' || *end == 'K' ? 10 : *end == 'm' || *end == 'M' ? 20 : *end == 'g' || *end == 'G' ? 30 : 0;
  if (shift)
    end++;
  if (*end || v > (unsigned long long)INT64_MAX >> shift)
    return false;
  *out = (int64_t)(v << shift);
  return true;
}

/* A bdwgc setting, unless the same option's NHEAP_ variable is set (that one wins). */
static const char *bdwgc_env(const char *name, const char *nheap_name) {
  const char *v = getenv(name);
  if (!v || (nheap_name && getenv(nheap_name)))
    return NULL;
  return v;
}

static void start(void) {
  nh_set_error_handler(report, NULL);
  nh_options o;
  nh_options_init(&o);
  o.barrier = NH_BARRIER_NONE;
  const char *gc = getenv("NHEAP_GC");
  if (getenv("GC_FIND_LEAK"))
    find_leak = true;
  /* Find-leak mode stops the world: a free during a concurrent mark is left to the collector,
   * and the mark would report it. */
  o.gc = find_leak || (gc && strcmp(gc, "stw") == 0) ? NH_GC_STW : NH_GC_CONCURRENT_NOBARRIER;
  const char *v;
  int64_t n;
  if ((v = bdwgc_env("GC_MARKERS", "NHEAP_MARK_WORKERS")) && mem_size(v, &n) && n > 0)
    o.mark_workers = n;
  if ((v = bdwgc_env("GC_MAXIMUM_HEAP_SIZE", "NHEAP_MEMORY_LIMIT")) && !getenv("NHEAP_GOMEMLIMIT") && mem_size(v, &n))
    o.memory_limit = n;
  if ((v = bdwgc_env("GC_FREE_SPACE_DIVISOR", "NHEAP_GC_PERCENT")) && !getenv("NHEAP_GOGC") && mem_size(v, &n) && n > 0)
    o.gc_percent = 300 / n;
  if (bdwgc_env("GC_PRINT_STATS", "NHEAP_DEBUG"))
    o.debug = "gctrace=1";
  static const char *const unmapped[] = {"GC_INITIAL_HEAP_SIZE", "GC_ENABLE_INCREMENTAL"};
  for (size_t i = 0; i < sizeof unmapped / sizeof *unmapped; i++)
    if (getenv(unmapped[i]))
      fprintf(stderr, "nheap: %s is not used by nheap's bdwgc interface (README, \"bdwgc programs\")\n", unmapped[i]);
  int rc = nh_init(&o);
  started = rc == 0 || rc == -EBUSY;   /* -EBUSY: the program started nheap itself */
  if (started && getenv("GC_DONT_GC")) {
    disabled = 1;
    saved_percent = nh_set_gc_percent(-1);
  }
  if (started && find_leak && gc_set_find_leak(gcdebug_report_leaks) != 0)
    fprintf(stderr, "nheap: no memory for find-leak mode's report; leaks are collected unreported\n");
}

void gcabi_start(void) {
  if (nh_likely(__atomic_load_n(&started, __ATOMIC_ACQUIRE)))
    return;
  pthread_once(&once, start);
  if (!started)
    abort();
}

void *gcabi_allocated(void *p, size_t n) { return p ? p : __atomic_load_n(&oom_fn, __ATOMIC_ACQUIRE)(n); }

bool gcabi_find_leak(void) { return __atomic_load_n(&find_leak, __ATOMIC_RELAXED); }

/* Leak mode is chosen before start-up, when the collector's mode is (a free during a concurrent
 * mark is the collector's to finish, and would be reported); later it is said and ignored. */
GC_API void GC_set_find_leak(int on) {
  if (__atomic_load_n(&started, __ATOMIC_ACQUIRE)) {
    if ((on != 0) != find_leak)
      fprintf(stderr, "nheap: GC_set_find_leak(%d) after start-up: set it before GC_INIT; unchanged\n", on);
    return;
  }
  __atomic_store_n(&find_leak, on != 0, __ATOMIC_RELAXED);
}
GC_API int GC_get_find_leak(void) { return gcabi_find_leak(); }
GC_API void GC_ignore_warn_proc(char *msg, GC_word arg) {
  (void)msg;
  (void)arg;
}

static bool stats(nh_stats_t *s) {
  s->size = sizeof *s;
  return nh_stats_read(s) == 0;
}

/* ---- start-up and settings ---- */

GC_API void GC_init(void) {
  gcabi_start();
  nh_thread_attach();
}
GC_API int GC_is_init_called(void) { return __atomic_load_n(&started, __ATOMIC_ACQUIRE); }
GC_API unsigned GC_get_version(void) { return GC_VERSION_IMPLEMENTED; }
GC_API void GC_allow_register_threads(void) { gcabi_start(); }
GC_API void GC_start_mark_threads(void) { gcabi_start(); }   /* nheap's markers run from nh_init */
GC_API void GC_enable_incremental(void) { gcabi_start(); }   /* already concurrent (or stw, said at start-up) */
GC_API int GC_is_incremental_mode(void) {
  gcabi_start();
  nh_stats_t s;
  return stats(&s) && s.gc_mode == NH_GC_CONCURRENT_NOBARRIER;
}
GC_API void GC_set_all_interior_pointers(int value) { (void)value; }   /* always on: see the essay */
GC_API int GC_get_all_interior_pointers(void) { return 1; }
GC_API void GC_register_displacement(size_t offset) { (void)offset; }
GC_API int GC_expand_hp(size_t bytes) {   /* arenas are mapped as the heap grows */
  (void)bytes;
  gcabi_start();
  return 1;
}
GC_API void GC_set_max_heap_size(GC_word bytes) {
  gcabi_start();
  nh_set_memory_limit(bytes > (GC_word)INT64_MAX ? 0 : (int64_t)bytes);
}
GC_API void GC_set_free_space_divisor(GC_word divisor) {
  gcabi_start();
  nh_set_gc_percent(divisor ? (int)(300 / divisor) : 300);
}
GC_API GC_word GC_get_free_space_divisor(void) {
  gcabi_start();
  nh_stats_t s;
  return stats(&s) && s.gc_percent > 0 ? (GC_word)(300 / s.gc_percent) + (300 % s.gc_percent != 0) : 3;
}

GC_API void GC_set_warn_proc(GC_warn_proc p) { __atomic_store_n(&warn_proc, p ? p : default_warn, __ATOMIC_RELEASE); }
GC_API GC_warn_proc GC_get_warn_proc(void) { return __atomic_load_n(&warn_proc, __ATOMIC_ACQUIRE); }
GC_API void GC_set_oom_fn(GC_oom_func f) { __atomic_store_n(&oom_fn, f ? f : default_oom, __ATOMIC_RELEASE); }
GC_API GC_oom_func GC_get_oom_fn(void) { return __atomic_load_n(&oom_fn, __ATOMIC_ACQUIRE); }

/* The collection-event proc and the start callback share nheap's one hook. */
typedef void (*GC_start_callback_proc)(void);
static GC_start_callback_proc start_proc;
static void on_event(nh_gc_event_kind e) {
  GC_start_callback_proc s = __atomic_load_n(&start_proc, __ATOMIC_ACQUIRE);
  if (s && e == NH_EVENT_START)
    s();
  GC_on_collection_event_proc p = __atomic_load_n(&event_proc, __ATOMIC_ACQUIRE);
  if (p)
    p((int)e);   /* nheap's events carry bdwgc's numbers */
}
static void hook_events(void) {
  bool any = __atomic_load_n(&event_proc, __ATOMIC_ACQUIRE) || __atomic_load_n(&start_proc, __ATOMIC_ACQUIRE);
  nh_set_gc_event_hook(any ? on_event : NULL);
}
GC_API void GC_set_on_collection_event(GC_on_collection_event_proc p) {
  gcabi_start();
  __atomic_store_n(&event_proc, p, __ATOMIC_RELEASE);
  hook_events();
}
/* bdwgc calls it at each collection's start, holding its lock: it must not allocate. */
GC_API void GC_set_start_callback(GC_start_callback_proc fn) {
  gcabi_start();
  __atomic_store_n(&start_proc, fn, __ATOMIC_RELEASE);
  hook_events();
}
GC_API GC_start_callback_proc GC_get_start_callback(void) { return __atomic_load_n(&start_proc, __ATOMIC_ACQUIRE); }
GC_API GC_on_collection_event_proc GC_get_on_collection_event(void) { return __atomic_load_n(&event_proc, __ATOMIC_ACQUIRE); }

/* ---- allocation ---- */

GC_API void *GC_malloc(size_t n) {
  gcabi_start();
  return gcabi_allocated(nh_alloc(n), n);
}
GC_API void *GC_malloc_atomic(size_t n) {   /* find-leak mode: no tiny blocks, whose frees wait */
  gcabi_start();
  return gcabi_allocated(find_leak ? nh_alloc(n) : nh_alloc_noscan(n), n);
}
GC_API void *GC_malloc_ignore_off_page(size_t n) { return GC_malloc(n); }
GC_API void *GC_malloc_atomic_ignore_off_page(size_t n) { return GC_malloc_atomic(n); }

/* Uncollectable: a root over the object until GC_free (an atomic one is scanned as a root
 * too: it keeps what its words point to, never less). */
static void *uncollectable_alloc(size_t n, bool atomic) {
  gcabi_start();
  void *p = atomic ? nh_alloc_noscan(n) : nh_alloc(n);
  if (p && nh_root_add(p, nh_usable_size(p)) != 0) {
    nh_free(p);
    p = NULL;
  }
  if (p)
    __atomic_add_fetch(&uncollectable, 1, __ATOMIC_RELAXED);
  return gcabi_allocated(p, n);
}
GC_API void *GC_malloc_uncollectable(size_t n) { return uncollectable_alloc(n, false); }
GC_API void *GC_malloc_atomic_uncollectable(size_t n) { return uncollectable_alloc(n, true); }

/* Whether p was uncollectable; its root is gone now. */
static bool drop_root(void *p) {
  if (!__atomic_load_n(&uncollectable, __ATOMIC_RELAXED) || nh_root_forget(p) != 0)
    return false;
  __atomic_sub_fetch(&uncollectable, 1, __ATOMIC_RELAXED);
  return true;
}

GC_API void GC_free(void *p) {
  if (!p)
    return;
  drop_root(p);
  if (__atomic_load_n(&finalizers, __ATOMIC_RELAXED) && nh_get_finalizer(p, NULL))
    nh_set_finalizer(p, NULL, NULL);   /* bdwgc drops the finalizer of an object it frees */
  nh_free(p);
}

GC_API void *GC_realloc(void *p, size_t n) {
  gcabi_start();
  if (!p)
    return GC_malloc(n);
  bool root = drop_root(p);   /* an uncollectable object stays one (bdwgc keeps the kind) */
  void *q = nh_realloc(p, n);
  void *keep = q ? q : n ? p : NULL;
  if (root && keep) {
    if (nh_root_add(keep, nh_usable_size(keep)) == 0)
      __atomic_add_fetch(&uncollectable, 1, __ATOMIC_RELAXED);
  }
  return q || !n ? q : gcabi_allocated(NULL, n);
}

GC_API char *GC_strdup(const char *s) {
  if (!s)
    return NULL;
  size_t n = strlen(s) + 1;
  char *d = GC_malloc_atomic(n);
  return d ? memcpy(d, s, n) : NULL;
}
GC_API char *GC_strndup(const char *s, size_t max) {
  size_t n = strnlen(s, max);
  char *d = GC_malloc_atomic(n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = 0;
  }
  return d;
}
GC_API void *GC_memalign(size_t align, size_t n) {
  gcabi_start();
  return gcabi_allocated(nh_aligned_alloc(align < sizeof(void *) ? sizeof(void *) : align, n), n);
}
GC_API int GC_posix_memalign(void **out, size_t align, size_t n) {
  if (align < sizeof(void *) || (align & (align - 1)))
    return EINVAL;
  void *p = GC_memalign(align, n);
  if (!p)
    return ENOMEM;
  *out = p;
  return 0;
}

GC_API void *GC_base(void *p) { return __atomic_load_n(&started, __ATOMIC_ACQUIRE) ? nh_base(p) : NULL; }
GC_API int GC_is_heap_ptr(const void *p) { return GC_base((void *)p) != NULL; }
GC_API size_t GC_size(const void *p) { return nh_usable_size(p); }

/* ---- typed allocation (gc_typed.h) ---- */

/* A descriptor is a layout: bdwgc's bitmap of pointer words (len of them) and the nheap type
 * made from it (nh_type_new), so that typed objects are scanned precisely. The object may be
 * longer than the bitmap; its other words hold no pointers: a type of that size is made once
 * per size and kept on the descriptor. Descriptors are immortal, as bdwgc's are, and one
 * bitmap gets one descriptor. Where nheap cannot make the type (its types region is full, a
 * size past 2 GiB), the object is scanned conservatively: it keeps more, never less. */
typedef GC_word GC_descr;
typedef struct sized_type {
  size_t size;
  const nh_type *type;
} sized_type;
typedef struct layout {
  struct layout *next;
  size_t len;                  /* meaningful bits */
  sized_type *sized;           /* types of this layout by object size */
  size_t nsized, capsized;
  GC_word bits[];
} layout;
static pthread_mutex_t layouts_lock = PTHREAD_MUTEX_INITIALIZER;
static layout *layouts;

/* The type of an object of size bytes (a multiple of 8, at least the bitmap's) with l's layout. */
static const nh_type *layout_type(layout *l, size_t size) {
  pthread_mutex_lock(&layouts_lock);
  const nh_type *t = NULL;
  for (size_t i = 0; i < l->nsized && !t; i++)
    if (l->sized[i].size == size)
      t = l->sized[i].type;
  if (!t && size <= ((size_t)1 << 31)) {
    size_t n = 0, *offsets = malloc((l->len ? l->len : 1) * sizeof *offsets);
    for (size_t w = 0; offsets && w < l->len && w < size / 8; w++)
      if (l->bits[w / (8 * sizeof(GC_word))] >> (w % (8 * sizeof(GC_word))) & 1)
        offsets[n++] = w * 8;
    t = offsets ? nh_type_new(size, offsets, n) : NULL;
    free(offsets);
    if (t && l->nsized == l->capsized) {
      size_t cap = l->capsized ? l->capsized * 2 : 4;
      sized_type *v = realloc(l->sized, cap * sizeof *v);
      if (v) {
        l->sized = v;
        l->capsized = cap;
      }
    }
    if (t && l->nsized < l->capsized)
      l->sized[l->nsized++] = (sized_type){size, t};
  }
  pthread_mutex_unlock(&layouts_lock);
  return t;
}

GC_API GC_descr GC_make_descriptor(const GC_word *bm, size_t len) {
  gcabi_start();
  size_t words = (len + 8 * sizeof(GC_word) - 1) / (8 * sizeof(GC_word));
  pthread_mutex_lock(&layouts_lock);
  layout *l = layouts;
  while (l && (l->len != len || memcmp(l->bits, bm, words * sizeof *bm) != 0))
    l = l->next;
  if (!l && (l = calloc(1, sizeof *l + (words ? words : 1) * sizeof(GC_word)))) {
    l->len = len;
    memcpy(l->bits, bm, words * sizeof *bm);
    if (len % (8 * sizeof(GC_word)))   /* bits past len are not the layout's */
      l->bits[words - 1] &= ((GC_word)1 << (len % (8 * sizeof(GC_word)))) - 1;
    l->next = layouts;
    layouts = l;
  }
  pthread_mutex_unlock(&layouts_lock);
  return (GC_descr)l;   /* 0 (no memory): the objects are scanned conservatively */
}

static void *typed_alloc(size_t n, size_t size, GC_descr d) {
  gcabi_start();
  layout *l = (layout *)d;
  size_t bytes;
  if (__builtin_mul_overflow(n, size, &bytes))
    return gcabi_allocated(NULL, SIZE_MAX);
  size_t each = (size + 7) & ~(size_t)7, min = l ? l->len * 8 : 0;
  if (each < min)
    each = min;
  if (!each)
    each = 8;
  const nh_type *t = l && each == size ? layout_type(l, each) : NULL;
  if (!t && l && n == 1)
    t = layout_type(l, each);   /* one object: its size rounded up to a word */
  void *p = t ? nh_alloc_typed(n == 1 ? each : bytes, t) : nh_calloc(n, size);
  return gcabi_allocated(p, bytes);
}
GC_API void *GC_malloc_explicitly_typed(size_t size, GC_descr d) { return typed_alloc(1, size, d); }
GC_API void *GC_malloc_explicitly_typed_ignore_off_page(size_t size, GC_descr d) { return typed_alloc(1, size, d); }
GC_API void *GC_calloc_explicitly_typed(size_t n, size_t size, GC_descr d) { return typed_alloc(n, size, d); }

/* ---- collection ---- */

GC_API void GC_gcollect(void) {
  gcabi_start();
  if (!__atomic_load_n(&disabled, __ATOMIC_RELAXED)) {   /* bdwgc: no collection while disabled */
    nh_gc();
    gcdebug_check_heap();
  }
}
GC_API int GC_try_to_collect(GC_stop_func stop) {   /* nheap's cycle cannot be abandoned midway */
  (void)stop;
  GC_gcollect();
  return !__atomic_load_n(&disabled, __ATOMIC_RELAXED);
}
GC_API void GC_gcollect_and_unmap(void) {
  GC_gcollect();
  nh_scavenge(SIZE_MAX);
}
GC_API void GC_disable(void) {
  gcabi_start();
  pthread_mutex_lock(&settings);
  if (disabled++ == 0)
    saved_percent = nh_set_gc_percent(-1);
  pthread_mutex_unlock(&settings);
}
GC_API void GC_enable(void) {
  gcabi_start();
  pthread_mutex_lock(&settings);
  if (disabled > 0 && --disabled == 0)
    nh_set_gc_percent(saved_percent);
  pthread_mutex_unlock(&settings);
}
GC_API int GC_is_disabled(void) { return __atomic_load_n(&disabled, __ATOMIC_RELAXED) != 0; }

/* ---- finalization ---- */

void gcabi_register_finalizer(void *obj, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn, void **ocd,
                              int kind) {
  gcabi_start();
  __atomic_store_n(&finalizers, true, __ATOMIC_RELAXED);
  void *old_cd = NULL;
  nh_finalizer_fn old = nh_get_finalizer(obj, &old_cd);
  if (ofn)
    *ofn = (GC_finalization_proc)old;
  if (ocd)
    *ocd = old ? old_cd : NULL;
  specials_set_finalizer(obj, (nh_finalizer_fn)fn, cd, (nh_final_kind)kind);
}
GC_API void GC_register_finalizer(void *obj, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn, void **ocd) {
  gcabi_register_finalizer(obj, fn, cd, ofn, ocd, NH_FINAL_ORDERED);
}
GC_API void GC_register_finalizer_ignore_self(void *obj, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn,
                                              void **ocd) {
  gcabi_register_finalizer(obj, fn, cd, ofn, ocd, NH_FINAL_IGNORE_SELF);
}
GC_API void GC_register_finalizer_no_order(void *obj, GC_finalization_proc fn, void *cd, GC_finalization_proc *ofn,
                                           void **ocd) {
  gcabi_register_finalizer(obj, fn, cd, ofn, ocd, NH_FINAL_NO_ORDER);
}

/* Finalize-on-demand: ready finalizers wait for GC_invoke_finalizers, and the notifier is
 * called (from nheap's collector thread) when some are ready; off, nheap's finalizer thread
 * runs them. */
static bool on_demand;
static GC_finalizer_notifier_proc notifier;
GC_API void GC_set_finalize_on_demand(int on) {
  gcabi_start();
  pthread_mutex_lock(&settings);
  on_demand = on != 0;
  specials_set_on_demand(on_demand, notifier);
  pthread_mutex_unlock(&settings);
}
GC_API int GC_get_finalize_on_demand(void) { return __atomic_load_n(&on_demand, __ATOMIC_RELAXED); }
GC_API void GC_set_finalizer_notifier(GC_finalizer_notifier_proc fn) {
  gcabi_start();
  pthread_mutex_lock(&settings);
  notifier = fn;
  specials_set_on_demand(on_demand, notifier);
  pthread_mutex_unlock(&settings);
}
GC_API GC_finalizer_notifier_proc GC_get_finalizer_notifier(void) { return __atomic_load_n(&notifier, __ATOMIC_RELAXED); }
GC_API int GC_should_invoke_finalizers(void) { return specials_have_ready(); }
GC_API int GC_invoke_finalizers(void) { return (int)specials_run_ready(); }
/* nheap always keeps what a no-order object points to until its finalizer has run (bdwgc's
 * default, GC_java_finalization = 1); turning that off is accepted and changes nothing. */
GC_API void GC_set_java_finalization(int on) { (void)on; }
GC_API int GC_get_java_finalization(void) { return 1; }

/* ---- disappearing links ---- */

static int link_rc(int rc) {
  return rc == 0 ? GC_SUCCESS : rc == 1 || rc == -EEXIST ? GC_DUPLICATE : rc == -ENOENT ? GC_NOT_FOUND : GC_NO_MEMORY;
}
static int register_link(void **link, const void *obj, bool long_link, const char *fn) {
  gcabi_start();
  if (((uintptr_t)link & (sizeof(void *) - 1)) || !obj || nh_base(obj) != obj) {
    nh_error(-EINVAL, "%s(%p, %p): the link must be aligned and the object an object's start", fn, (void *)link, obj);
    return GC_NOT_FOUND;
  }
  return link_rc(specials_link_add(link, obj, long_link));
}
GC_API int GC_general_register_disappearing_link(void **link, const void *obj) {
  return register_link(link, obj, false, "GC_general_register_disappearing_link");
}
GC_API int GC_register_disappearing_link(void **link) {   /* cleared when link's own object dies */
  return register_link(link, GC_base(link), false, "GC_register_disappearing_link");
}
GC_API int GC_register_long_link(void **link, const void *obj) {
  return register_link(link, obj, true, "GC_register_long_link");
}
GC_API int GC_unregister_disappearing_link(void **link) {
  return __atomic_load_n(&started, __ATOMIC_ACQUIRE) && specials_link_remove(link, false);
}
GC_API int GC_unregister_long_link(void **link) {
  return __atomic_load_n(&started, __ATOMIC_ACQUIRE) && specials_link_remove(link, true);
}
GC_API int GC_move_disappearing_link(void **link, void **new_link) {
  return __atomic_load_n(&started, __ATOMIC_ACQUIRE) ? link_rc(specials_link_move(link, new_link, false)) : GC_NOT_FOUND;
}
GC_API int GC_move_long_link(void **link, void **new_link) {
  return __atomic_load_n(&started, __ATOMIC_ACQUIRE) ? link_rc(specials_link_move(link, new_link, true)) : GC_NOT_FOUND;
}

/* bdwgc runs fn holding its allocation lock, so no collection clears a link while fn reads
 * one. Here fn runs in a no-stop region: the world cannot stop (so no cycle can decide and
 * clear links) until it returns, and what it revealed is then in its registers or stack, a
 * root. One program thread at a time, as under bdwgc's lock. As there, fn must not allocate
 * or wait for another thread that does. */
static pthread_mutex_t alloc_lock = PTHREAD_MUTEX_INITIALIZER;
GC_API void *GC_call_with_alloc_lock(GC_fn_type fn, void *cd) {
  gcabi_start();
  if (!thread_attached(&nh_rt.gc.threads))
    nh_thread_attach();
  pthread_mutex_lock(&alloc_lock);
  region_enter();
  void *r = fn(cd);
  region_exit();
  pthread_mutex_unlock(&alloc_lock);
  return r;
}

/* ---- statistics ---- */

GC_API size_t GC_get_heap_size(void) { return (size_t)nh_stat(NH_STAT_HEAP_BACKED); }
GC_API size_t GC_get_free_bytes(void) {   /* a lower bound, as bdwgc's: free pages alone */
  uint64_t backed = nh_stat(NH_STAT_HEAP_BACKED), inuse = nh_stat(NH_STAT_HEAP_INUSE);
  return backed > inuse ? (size_t)(backed - inuse) : 0;
}
GC_API size_t GC_get_unmapped_bytes(void) {
  nh_stats_t s;
  return stats(&s) ? (size_t)s.heap_released_bytes : 0;
}
GC_API size_t GC_get_bytes_since_gc(void) {
  nh_stats_t s;
  return stats(&s) && s.heap_live_bytes > s.heap_marked_bytes ? (size_t)(s.heap_live_bytes - s.heap_marked_bytes) : 0;
}
GC_API GC_word GC_get_gc_no(void) { return (GC_word)nh_stat(NH_STAT_GC_CYCLES); }

/* nheap's concurrent marks run on its own threads: there is no share of one to do here. True
 * while one runs (bdwgc's "a collection is in progress"). */
GC_API int GC_collect_a_little(void) {
  gcabi_start();
  return __atomic_load_n(&nh__marking, __ATOMIC_RELAXED) != 0;
}
GC_API void GC_dump(void) { nh_stats_print(2); }
/* Where a heap pointer can be (bdwgc's quick filter for candidate words): nheap's arenas may
 * be mapped anywhere a hint fails, so every address is plausible. */
GC_API void *GC_least_plausible_heap_addr = (void *)0;
GC_API void *GC_greatest_plausible_heap_addr = (void *)UINTPTR_MAX;

/* ---- roots ---- */

GC_API void GC_add_roots(void *lo, void *hi) {
  gcabi_start();
  if ((char *)hi > (char *)lo)
    nh_root_add(lo, (size_t)((char *)hi - (char *)lo));
}
GC_API void GC_remove_roots(void *lo, void *hi) {
  (void)hi;
  nh_root_forget(lo);
}

/* ---- threads ---- */

GC_API int GC_thread_is_registered(void) {
  return __atomic_load_n(&started, __ATOMIC_ACQUIRE) && thread_attached(&nh_rt.gc.threads);
}
GC_API int GC_register_my_thread(const struct GC_stack_base *sb) {
  (void)sb;   /* nheap finds the stack's base itself */
  gcabi_start();
  if (GC_thread_is_registered())
    return GC_DUPLICATE;
  return nh_thread_attach() == 0 ? GC_SUCCESS : GC_UNIMPLEMENTED;
}
GC_API int GC_unregister_my_thread(void) {
  nh_thread_detach();
  return GC_SUCCESS;
}
GC_API void *GC_do_blocking(GC_fn_type fn, void *cd) { return nh_do_blocking(fn, cd); }
GC_API void *GC_call_with_gc_active(GC_fn_type fn, void *cd) {
  gcabi_start();
  return thread_call_active(fn, cd);
}
GC_API int GC_get_suspend_signal(void) { return SIGPWR; }   /* nheap's stop signal (thread.c) */

GC_API int GC_get_stack_base(struct GC_stack_base *sb) {
  pthread_attr_t a;
  void *lo;
  size_t size;
  if (pthread_getattr_np(pthread_self(), &a) != 0)
    return GC_UNIMPLEMENTED;
  int rc = pthread_attr_getstack(&a, &lo, &size);
  pthread_attr_destroy(&a);
  if (rc != 0)
    return GC_UNIMPLEMENTED;
  sb->mem_base = (char *)lo + size;   /* the stack grows down: its base is its top */
  return GC_SUCCESS;
}
GC_API void *GC_call_with_stack_base(GC_stack_base_func fn, void *arg) {
  struct GC_stack_base sb = {.mem_base = __builtin_frame_address(0)};
  return fn(&sb, arg);
}

typedef struct start_args {
  void *(*fn)(void *);
  void *arg;
} start_args;

static void *trampoline(void *a) {
  start_args s = *(start_args *)a;
  free(a);
  nh_thread_attach();   /* before the routine can hold a heap pointer */
  return s.fn(s.arg);
}

GC_API int GC_pthread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
  gcabi_start();
  start_args *s = malloc(sizeof *s);
  if (!s)
    return EAGAIN;
  *s = (start_args){fn, arg};
  int rc = pthread_create(t, attr, trampoline, s);
  if (rc != 0)
    free(s);
  return rc;
}
GC_API int GC_pthread_join(pthread_t t, void **ret) { return pthread_join(t, ret); }
GC_API int GC_pthread_detach(pthread_t t) { return pthread_detach(t); }
GC_API int GC_pthread_cancel(pthread_t t) { return pthread_cancel(t); }
GC_API void GC_pthread_exit(void *ret) { pthread_exit(ret); }   /* the thread detaches as it exits */
GC_API int GC_pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
  sigset_t s;
  if (set && how != SIG_UNBLOCK) {   /* the stop signal stays deliverable */
    s = *set;
    sigdelset(&s, SIGPWR);
    set = &s;
  }
  return pthread_sigmask(how, set, old);
}
GC_API void *GC_dlopen(const char *path, int flags) { return dlopen(path, flags); }   /* data segments are found each cycle */
