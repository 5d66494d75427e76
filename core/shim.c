/*
 * shim.c — libnheap_malloc.so: the C allocation functions on nheap, for LD_PRELOAD.
 *
 *   LD_PRELOAD=libnheap_malloc.so program     (options from NHEAP_* and NHEAP_CONFIG)
 *
 * malloc, free, calloc, realloc, reallocarray, posix_memalign, aligned_alloc, memalign, valloc,
 * pvalloc and malloc_usable_size map onto nheap with gc = off (explicit free, no collector):
 * malloc is nh_alloc_noscan (not zeroed, as malloc), calloc is nh_calloc.
 *
 * Start-up. nheap starts on the first call. Starting it calls into libraries that allocate
 * (libnuma's constructor runs before main and mallocs; liburing's probe does; pthread_create
 * does), and those calls come back here. A thread that is starting nheap, and any call made
 * before it is ready, is served from a small static bootstrap area (bump allocation with a
 * size header; free of such a block is a no-op; realloc copies it out). Other threads that call
 * during start-up wait for it (nh_init's lock).
 *
 * If nheap cannot start (a bad NHEAP_* value, say: nh_init has reported it), the process goes
 * on with the C library's allocator (__libc_malloc and friends), after one line saying so.
 *
 * Errors follow the C library's rules: NULL with errno = ENOMEM, posix_memalign's return code,
 * EINVAL for bad alignments. Bad frees are reported through nheap's error funnel (one line on
 * stderr) and ignored, never abort. fork is safe: nheap's pthread_atfork handlers (init.c) hold
 * every allocator lock across it.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "core/error.h"
#include "core/internal.h"
#include "nheap.h"

#define SHIM_API __attribute__((visibility("default")))

enum { BOOT_BYTES = 1 << 20, BOOT_ALIGN = 16 };

static char boot[BOOT_BYTES] __attribute__((aligned(4096)));
static size_t boot_used;                  /* atomic bump pointer */
static __thread bool starting;            /* this thread is inside nh_init */
static int state;                         /* 0 not started, 1 starting, 2 ready, 3 failed */

/* glibc's own allocator, for a process in which nheap could not start. */
extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static bool in_boot(const void *p) { return (const char *)p >= boot && (const char *)p < boot + BOOT_BYTES; }

static void *boot_alloc(size_t size, size_t align) {
  if (align < BOOT_ALIGN)
    align = BOOT_ALIGN;
  for (;;) {
    size_t used = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
    size_t start = nh_align_up(used + sizeof(size_t), align);
    if (size > BOOT_BYTES || start + size > BOOT_BYTES) {
      errno = ENOMEM;
      return NULL;
    }
    if (__atomic_compare_exchange_n(&boot_used, &used, start + size, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
      ((size_t *)(boot + start))[-1] = size;
      return boot + start;
    }
  }
}

static size_t boot_size(const void *p) { return ((const size_t *)p)[-1]; }

/* True when nheap can serve this call; false: serve it from the bootstrap area. */
static bool ready(void) {
  if (nh_likely(__atomic_load_n(&state, __ATOMIC_ACQUIRE) == 2))
    return true;
  if (starting || __atomic_load_n(&state, __ATOMIC_ACQUIRE) == 3)
    return false;
  starting = true;
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;
  int rc = nh_init(&o);
  starting = false;
  if (rc == 0 || rc == -EBUSY) {   /* -EBUSY: another thread (or the program) started it */
    __atomic_store_n(&state, 2, __ATOMIC_RELEASE);
    return true;
  }
  __atomic_store_n(&state, 3, __ATOMIC_RELEASE);
  nh_warn("libnheap_malloc: nheap did not start (%s); this process uses the C library's malloc", nh_strerror(rc));
  return false;
}

static bool failed(void) { return __atomic_load_n(&state, __ATOMIC_ACQUIRE) == 3; }

SHIM_API void *malloc(size_t size) {
  if (ready())
    return nh_alloc_noscan(size);
  return failed() ? __libc_malloc(size) : boot_alloc(size, BOOT_ALIGN);
}

SHIM_API void free(void *p) {
  if (!p || in_boot(p))
    return;
  if (failed())
    __libc_free(p);
  else
    nh_free(p);
}

SHIM_API void *calloc(size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  if (ready())
    return nh_calloc(n, size);
  return failed() ? __libc_calloc(n, size) : boot_alloc(total, BOOT_ALIGN);  /* boot memory is zero */
}

SHIM_API void *realloc(void *p, size_t size) {
  if (p && in_boot(p)) {
    void *q = malloc(size);
    if (q)
      memcpy(q, p, boot_size(p) < size ? boot_size(p) : size);
    return q;
  }
  if (!ready()) {
    if (failed())
      return __libc_realloc(p, size);
    return p ? NULL : boot_alloc(size, BOOT_ALIGN);
  }
  if (p && size == 0) {   /* glibc: frees and returns NULL */
    nh_free(p);
    return NULL;
  }
  return nh_realloc(p, size);
}

SHIM_API void *reallocarray(void *p, size_t n, size_t size) {
  size_t total;
  if (__builtin_mul_overflow(n, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return realloc(p, total);
}

static void *aligned(size_t align, size_t size) {
  if (ready())
    return nh_aligned_alloc(align, size);
  return failed() ? __libc_memalign(align, size) : boot_alloc(size, align);
}

SHIM_API int posix_memalign(void **out, size_t align, size_t size) {
  if (align < sizeof(void *) || (align & (align - 1)))
    return EINVAL;
  int saved = errno;
  void *p = aligned(align, size);
  errno = saved;
  if (!p)
    return ENOMEM;
  *out = p;
  return 0;
}

SHIM_API void *aligned_alloc(size_t align, size_t size) {
  if (align == 0 || (align & (align - 1))) {
    errno = EINVAL;
    return NULL;
  }
  return aligned(align, size);
}

SHIM_API void *memalign(size_t align, size_t size) { return aligned_alloc(align, size); }

SHIM_API void *valloc(size_t size) { return aligned(4096, size); }

SHIM_API void *pvalloc(size_t size) {
  if (size > SIZE_MAX - 4095) {
    errno = ENOMEM;
    return NULL;
  }
  return aligned(4096, nh_align_up(size ? size : 1, 4096));
}

SHIM_API size_t malloc_usable_size(void *p) {
  if (!p)
    return 0;
  if (in_boot(p))
    return boot_size(p);
  if (failed()) {
    static size_t (*libc_usable)(void *);
    if (!libc_usable)
      libc_usable = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    return libc_usable ? libc_usable(p) : 0;
  }
  return nh_usable_size(p);
}
