/*
 * test_malloc.c — the allocation API: every size class and the large path, zeroing rules,
 * usable size and nh_base for interior pointers, realloc and aligned_alloc, reuse after free,
 * spans going back to the page heap, and bad input (foreign, interior and double frees,
 * overflowing sizes, calls before nh_init), each reported and harmless.
 */
/* Requests past what any object can be are made on purpose (they must fail cleanly): GCC sees
 * them through nheap.h's alloc_size. Bad alignments go through opaque(), out of the
 * compilers' sight (alloc_align would have them assume the impossible; clang 14 crashes). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="
#endif
#include <errno.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/heap.h"
#include "tests/testutil.h"


/* A value the compiler cannot see through: bad alignments passed to nh_aligned_alloc, and the
 * addresses it returns when the test checks their alignment (alloc_align lets the compiler
 * assume it, which would make the check vacuous). */
static __attribute__((noinline)) size_t opaque(size_t a) {
  size_t volatile v = a;
  return v;
}
static int setup(void **state) {
  clear_nheap_env();
  capture_errors();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;      /* the explicit-free allocator: pointers live in malloc memory here */
  o.hugepages = NH_HUGEPAGES_NONE;
  assert_int_equal(nh_init(&o), 0);
  return 0;
}

static int teardown(void **state) {
  for (int n = 0; n < nh_rt.topo.nnodes; n++) {
    pageheap_validate(&nh_rt.nodes[n].ph);
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_validate(&nh_rt.nodes[n].central[ac]);
  }
  nh_shutdown();
  return 0;
}

static nh_stats_t stats(void) {
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), 0);
  return s;
}

static void test_every_class_and_large(void **state) {
  static const size_t sizes[] = {0, 1, 7, 8, 9, 16, 17, 24, 100, 1000, 1024, 1025, 4096, 10000,
                                 32767, 32768, 32769, 65536, 1 << 20, (64 << 20) + 123};
  void *p[NH_ARRAY_LEN(sizes)];
  for (size_t i = 0; i < NH_ARRAY_LEN(sizes); i++) {
    p[i] = nh_alloc(sizes[i]);
    assert_non_null(p[i]);
    assert_true(nh_usable_size(p[i]) >= sizes[i]);
    assert_true(nh_usable_size(p[i]) >= 1);
    assert_int_equal((uintptr_t)p[i] % 8, 0);
    for (size_t j = 0; j < sizes[i]; j += 512)
      assert_int_equal(((unsigned char *)p[i])[j], 0);   /* nh_alloc zeroes */
    memset(p[i], 0xa5, sizes[i]);
  }
  for (size_t i = 0; i < NH_ARRAY_LEN(sizes); i++)
    for (size_t j = i + 1; j < NH_ARRAY_LEN(sizes); j++)
      assert_true((char *)p[i] + nh_usable_size(p[i]) <= (char *)p[j] ||
                  (char *)p[j] + nh_usable_size(p[j]) <= (char *)p[i]);
  assert_int_equal(stats().large_objects, 4);
  for (size_t i = 0; i < NH_ARRAY_LEN(sizes); i++)
    nh_free(p[i]);
  assert_int_equal(stats().large_objects, 0);
  assert_int_equal(errors.count, 0);
  /* Each size class's objects are exactly its size apart in a span. */
  for (unsigned c = 1; c < NH_NUM_SIZE_CLASSES; c++) {
    char *a = nh_alloc_noscan(nh_class_to_size[c]);
    assert_int_equal(nh_usable_size(a), nh_class_to_size[c]);
    nh_free(a);
  }
}

static void test_interior_pointers_and_base(void **state) {
  char *small = nh_alloc(100), *large = nh_alloc(100000);
  assert_ptr_equal(nh_base(small), small);
  assert_ptr_equal(nh_base(small + 50), small);
  assert_ptr_equal(nh_base(small + nh_usable_size(small) - 1), small);
  assert_ptr_equal(nh_base(large + 99999), large);
  int local;
  assert_null(nh_base(&local));
  assert_null(nh_base(NULL));
  void *m = malloc(16);
  assert_null(nh_base(m));
  free(m);
  nh_free(large);
  assert_null(nh_base(large + 10));   /* a freed large object's pages are free */
  nh_free(small);
}

static void test_zeroing_rules(void **state) {
  /* A freed scanned object comes back zeroed; a noscan one as it was (malloc's rule: neither
   * its free nor its allocation touches it). */
  unsigned char *a = nh_alloc(64);
  memset(a, 0x77, 64);
  nh_free(a);
  unsigned char *b = nh_alloc(64);
  assert_ptr_equal(b, a);                       /* LIFO reuse on the same CPU */
  for (int i = 0; i < 64; i++)
    assert_int_equal(b[i], 0);
  uint64_t *c = nh_alloc_noscan(64);
  c[0] = c[1] = 0x1234;
  nh_free(c);
  uint64_t *d = nh_alloc_noscan(64);
  assert_ptr_equal(d, c);
  assert_int_equal(d[0], 0x1234);
  assert_int_equal(d[1], 0x1234);
  nh_free(b);
  nh_free(d);
  uint64_t *e = nh_calloc(8, 8);
  for (int i = 0; i < 8; i++)
    assert_int_equal(e[i], 0);
  nh_free(e);
}

static void test_realloc_paths(void **state) {
  char *p = nh_realloc(NULL, 10);
  memcpy(p, "0123456789", 10);
  char *q = nh_realloc(p, 12);          /* same class: in place */
  assert_ptr_equal(q, p);
  char *r = nh_realloc(q, 5000);
  assert_memory_equal(r, "0123456789", 10);
  char *s = nh_realloc(r, 200000);      /* to large */
  assert_memory_equal(s, "0123456789", 10);
  char *t = nh_realloc(s, 3);           /* back to small */
  assert_memory_equal(t, "012", 3);
  assert_null(nh_realloc(t, 0));        /* frees */
  assert_int_equal(errors.count, 0);
  int local;
  assert_null(nh_realloc(&local, 10));
  assert_int_equal(errno, EINVAL);
  assert_true(errors_contain("nh_realloc"));
}

static void test_aligned_alloc(void **state) {
  static const size_t aligns[] = {1, 8, 16, 32, 64, 256, 4096, 8192, 16384, 1 << 20};
  static const size_t sizes[] = {1, 24, 100, 3000, 40000};
  for (size_t i = 0; i < NH_ARRAY_LEN(aligns); i++) {
    for (size_t j = 0; j < NH_ARRAY_LEN(sizes); j++) {
      char *p = nh_aligned_alloc(aligns[i], sizes[j]);
      assert_non_null(p);
      if (opaque((uintptr_t)p) % aligns[i])
        fail_msg("nh_aligned_alloc(%zu, %zu) = %p", aligns[i], sizes[j], (void *)p);
      assert_true(nh_usable_size(p) >= sizes[j]);
      memset(p, 1, sizes[j]);
      nh_free(p);
    }
  }
  assert_null(nh_aligned_alloc(opaque(24), 10));
  assert_int_equal(errno, EINVAL);
  assert_true(errors_contain("not a power of two"));
}

static void test_bad_frees_are_reported_and_harmless(void **state) {
  int local;
  char *p = nh_alloc(48), *big = nh_alloc(50000);
  void *m = malloc(32);

  nh_free(&local);
  assert_true(errors_contain("not a pointer nheap returned (foreign memory)"));
  nh_free(m);
  nh_free((void *)0x10);
  nh_free(p + 8);
  assert_true(errors_contain("interior pointer"));
  nh_free(big + 4096);
  /* The tail of a span past its last object (48-byte objects: 170 in a page, 32 bytes left). */
  char *tail = (char *)((uintptr_t)p & ~(uintptr_t)(NH_PAGE_SIZE - 1)) + 170 * 48;
  nh_free(tail);
  nh_free(p);
  nh_free(p);                         /* double free, object still in this CPU's stack */
  assert_true(errors_contain("double free"));
  nh_free(big);
  nh_free(big);                       /* large double free: its pages are free */
  nh_stats_t s = stats();
  assert_int_equal(s.bad_frees, 8);
  assert_int_equal(s.double_frees, 1);
  free(m);

  /* The heap is consistent: the freed object is handed out once, not twice. */
  char *a = nh_alloc(48), *b = nh_alloc(48);
  assert_true(a != b);
  assert_int_equal(nh_usable_size(a), 48);
  nh_free(a);
  nh_free(b);
}

static void test_double_free_after_drain(void **state) {
  /* Free enough objects that the first ones go back to their span, then free one again. */
  enum { N = 1000 };
  void *p[N];
  for (int i = 0; i < N; i++)
    p[i] = nh_alloc(16);
  for (int i = 0; i < N; i++)
    nh_free(p[i]);
  errors.all[0] = 0;
  uint64_t bad = stats().bad_frees;
  nh_free(p[0]);   /* its span may have gone back to the page heap with all its objects */
  assert_true(errors_contain("points into free heap memory") || errors_contain("double free"));
  assert_int_equal(stats().bad_frees, bad + 1);
  uint64_t doubles = stats().double_frees;
  /* A double free of an object whose span still holds live objects. */
  void *keep = nh_alloc(16), *gone = nh_alloc(16);
  nh_free(gone);
  for (int i = 0; i < 300; i++)    /* push it out of the per-CPU stack */
    nh_free(nh_alloc(16)), p[i] = nh_alloc(16);
  for (int i = 0; i < 300; i++)
    nh_free(p[i]);
  nh_free(gone);
  assert_true(errors_contain("double free"));
  nh_free(keep);
  /* A live object whose first word happens to be zero, or anything else, frees normally. */
  uintptr_t *q = nh_alloc(16);
  q[0] = 0;
  nh_free(q);
  assert_int_equal(stats().double_frees, doubles + 1);
  assert_int_equal(stats().bad_frees, bad + 2);
}

/* A free of an object the program does not own is refused whatever the object's bytes hold,
 * and no object is handed out twice (the review's two reproductions: the check used to trust a
 * freed mark in the object's first word). */
static void double_frees_whatever_the_bytes_hold(void) {
  uint64_t doubles = stats().double_frees, bad = stats().bad_frees;
  /* (a) freed, its first bytes written after the free, freed again. */
  uintptr_t *p = nh_alloc(64);
  nh_free(p);
  p[0] = 0x4141414141414141u;   /* a use after free */
  errors.all[0] = 0;
  nh_free(p);
  assert_true(errors_contain("double free"));
  void *a = nh_alloc(64), *b = nh_alloc(64);
  assert_ptr_not_equal(a, b);
  assert_int_equal(stats().double_frees, doubles + 1);
  /* (b) frees of object starts nobody was given: every other object of a fresh span (in this
   * CPU's stack from the refill, or still free in the span), whatever they hold. */
  char *x = nh_alloc(256);
  const nh_span_t *s = span_of(&nh_rt.arenas, x);
  assert_non_null(s);
  size_t others = 0;
  for (size_t i = 0; i < s->nelems; i++) {
    char *y = (char *)s->base + i * s->elemsize;
    if (y == x)
      continue;
    if (i % 2)
      memset(y, 0x5a, 8);   /* bytes of any kind: the check must not read them */
    nh_free(y);
    others++;
  }
  assert_int_equal(stats().double_frees, doubles + 1 + others);
  assert_int_equal(stats().bad_frees, bad + 1 + others);
  enum { N = 3 * 64 };
  char *got[N];
  for (int i = 0; i < N; i++) {
    got[i] = nh_alloc(256);
    assert_ptr_not_equal(got[i], x);
    for (int j = 0; j < i; j++)
      assert_ptr_not_equal(got[i], got[j]);
  }
  for (int i = 0; i < N; i++)
    nh_free(got[i]);
  nh_free(x);
  nh_free(a);
  nh_free(b);
  /* (c) realloc of a freed object whose bytes were rewritten: refused too. */
  uintptr_t *r = nh_alloc(64);
  nh_free(r);
  r[0] = 0;
  assert_null(nh_realloc(r, 128));
  assert_true(errors_contain("freed"));
}

static void test_double_free_whatever_the_bytes_hold(void **state) {
  (void)state;
  double_frees_whatever_the_bytes_hold();
  /* A typed object freed through its header's address (an object start in its span, but not
   * what the program was given): refused as an interior pointer, and the object is still the
   * program's. */
  const nh_type *t = nh_type_new(16, (size_t[]){0}, 1);
  void **o = nh_alloc_typed(16, t);
  uint64_t bad = stats().bad_frees;
  errors.all[0] = 0;
  nh_free((char *)o - 8);
  assert_true(errors_contain("interior pointer"));
  assert_int_equal(stats().bad_frees, bad + 1);
  nh_free(o);
  assert_int_equal(stats().bad_frees, bad + 1);   /* its real free is accepted */
}

/* The same with the collector (stw, concurrent) and in secure mode, each a heap of its own. */
static void test_double_free_every_mode(void **state) {
  (void)state;
  teardown(NULL);
  static const struct { nh_gc_mode gc; int secure; } modes[] = {
      {NH_GC_OFF, 1}, {NH_GC_STW, 0}, {NH_GC_CONCURRENT, 0}, {NH_GC_CONCURRENT, 1}};
  for (size_t m = 0; m < NH_ARRAY_LEN(modes); m++) {
    nh_options o;
    nh_options_init(&o);
    o.gc = modes[m].gc;
    o.secure = modes[m].secure;
    o.hugepages = NH_HUGEPAGES_NONE;
    assert_int_equal(nh_init(&o), 0);
    double_frees_whatever_the_bytes_hold();
    if (m + 1 < NH_ARRAY_LEN(modes))
      teardown(NULL);
  }
}

/* A double free after a write over the freed object, of the only object of a span its class
 * keeps empty: refused at the free; and were it ever handed back to the span twice, the span
 * would not change (it was counted as kept a second time, which the teardown's validator
 * reports as a fatal error). */
static void test_hidden_double_free_into_kept_span(void **state) {
  uintptr_t *p = nh_alloc_noscan(20000);
  assert_non_null(p);
  nh_free(p);
  mcache_flush_all(&nh_rt.caches);   /* its span is empty, and kept by its class */
  p[0] = 0;                           /* a write after free hides the mark */
  errors.all[0] = 0;
  nh_free(p);                         /* not the program's: refused */
  assert_true(errors_contain("double free"));
  mcache_flush_all(&nh_rt.caches);
  /* The span's own line of defence: the object handed back to it a second time. */
  nh_span_t *s = span_of(&nh_rt.arenas, p);
  uint16_t idx = (uint16_t)span_obj_index(s, (uintptr_t)p);
  assert_int_equal(mcentral_free(s->central, s, &idx, 1), 1);
  for (int n = 0; n < nh_rt.topo.nnodes; n++)
    for (unsigned ac = 0; ac < NH_NUM_ALLOC_CLASSES; ac++)
      mcentral_validate(&nh_rt.nodes[n].central[ac]);
}

/* realloc of freed, interior and misaligned pointers, and a misaligned free: reported, NULL with
 * EINVAL, nothing changed; the freed object is not handed out twice. (The teardown runs the
 * page heap's and every mcentral's validator.) */
static void test_bad_reallocs_are_reported_and_harmless(void **state) {
  char *p = nh_alloc(48), *q = nh_alloc(48), *big = nh_alloc(100000);
  memset(q, 7, 48);
  nh_free(p);
  errno = 0;
  assert_null(nh_realloc(p, 40));            /* freed, would fit in place */
  assert_int_equal(errno, EINVAL);
  assert_true(errors_contain("nh_realloc") && errors_contain("an object that was freed"));
  assert_null(nh_realloc(p, 4000));          /* freed, would move */
  assert_null(nh_realloc(q + 8, 10));        /* interior */
  assert_null(nh_realloc(q + 3, 10));        /* misaligned */
  assert_null(nh_realloc(big + 4096, 10));
  nh_free(q + 3);                            /* misaligned free */
  assert_true(errors_contain("interior pointer"));
  nh_stats_t s = stats();
  assert_int_equal(s.bad_frees, 6);
  for (int i = 0; i < 48; i++)               /* q untouched */
    assert_int_equal(q[i], 7);
  char *a = nh_alloc(48), *b = nh_alloc(48);  /* p comes back once */
  assert_true(a != b && a != q && b != q);
  errno = 0;
  assert_null(nh_realloc(q, SIZE_MAX));      /* too big: q stays */
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(q[47], 7);
  assert_null(nh_alloc(SIZE_MAX));
  assert_null(nh_aligned_alloc(opaque(0), 16));
  assert_int_equal(errno, EINVAL);
  assert_null(nh_aligned_alloc(opaque((size_t)1 << 63), 16));
  static const uint64_t fake_type[4] = {16, 0, 0, 0};   /* looks like a type, is not one */
  assert_null(nh_alloc_typed(16, (const nh_type *)fake_type));
  assert_true(errors_contain("not a type nh_type_new returned"));
  nh_free(a);
  nh_free(b);
  nh_free(q);
  nh_free(big);
}

/* The types region full: nh_type_new says so, and an address past the region's end is no type
 * (heap_type_of must not read there, whatever the used mark says). */
static void test_types_region_full(void **state) {
  (void)state;
  const nh_type *first = nh_type_new((size_t)1 << 31, NULL, 0), *t;   /* 32 MiB of bitmap each */
  assert_non_null(first);
  assert_ptr_equal(first, nh_rt.types);   /* a fresh heap: the region's start */
  int made = 1;
  while ((t = nh_type_new((size_t)1 << 31, NULL, 0)) != NULL)
    made++;
  assert_true(made >= 1 && made < 4);
  assert_true(errors_contain("no memory for the type"));
  for (int i = 0; i < 3; i++)
    assert_null(nh_type_new((size_t)1 << 31, NULL, 0));
  assert_true(nh_rt.types_used <= NH_TYPES_BYTES);   /* a refusal reserves nothing */
  /* An unreadable page right after the region (where nothing else is mapped), so that a read
   * there faults rather than finding whatever another mapping holds. */
  char *after = nh_rt.types + NH_TYPES_BYTES;
  void *guard = mmap(after, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (guard != after)
    print_message("the page after the types region is taken; the read is not made to fault\n");
  const nh_type *past = (const nh_type *)(after + 64);
  errno = 0;
  assert_null(nh_alloc_typed(16, past));
  assert_int_equal(errno, EINVAL);
  void *p = nh_alloc(64);   /* the heap goes on */
  assert_non_null(p);
  nh_free(p);
  if (guard == after)
    munmap(guard, 4096);
}

/* nh_type_new's bad input and refusals are reported and harmless: a pointer offset near
 * SIZE_MAX is refused (its end wrapped past the size check, and the type's bitmap was written
 * far out of bounds), and a type that does not fit in what is left of the region reserves
 * nothing, so smaller ones still fit (a refusal had moved the used mark on for good, and every
 * later nh_type_new failed). */
static void test_type_new_refusals_are_harmless(void **state) {
  (void)state;
  static const size_t wraps[] = {0, SIZE_MAX - 7}, at_end[] = {16}, fits[] = {0, 8};
  errno = 0;
  assert_null(nh_type_new(16, wraps, 2));
  assert_int_equal(errno, EINVAL);
  assert_true(errors_contain("pointer offset"));
  assert_null(nh_type_new(16, at_end, 1));   /* the word past the end */
  assert_int_equal(errno, EINVAL);
  size_t used = nh_rt.types_used;
  assert_non_null(nh_type_new((size_t)1 << 31, NULL, 0));   /* 32 MiB of bitmap: fits once */
  errors.count = 0;
  for (int i = 0; i < 3; i++) {
    errno = 0;
    assert_null(nh_type_new((size_t)1 << 31, NULL, 0));
    assert_int_equal(errno, ENOMEM);
  }
  assert_int_equal(errors.count, 3);
  assert_true(errors_contain("no memory for the type"));
  assert_true(nh_rt.types_used <= NH_TYPES_BYTES);
  const nh_type *t = nh_type_new(16, fits, 2);   /* the region has room for it still */
  assert_non_null(t);
  assert_true((char *)t >= nh_rt.types + used && (char *)t < nh_rt.types + NH_TYPES_BYTES);
  void **p = nh_alloc_typed(32, t);
  assert_non_null(p);
  nh_free(p);
}

static void test_overflow_and_huge(void **state) {
  assert_null(nh_calloc(SIZE_MAX / 2, 3));
  assert_int_equal(errno, ENOMEM);
  assert_true(errors_contain("overflows"));
  assert_null(nh_alloc(SIZE_MAX - 10));
  assert_int_equal(errno, ENOMEM);
  assert_null(nh_alloc((size_t)1 << 60));   /* more than the OS will map */
  assert_int_equal(errno, ENOMEM);
  assert_true(errors_contain("larger than the largest object nheap hands out (274877898752 bytes)"));
  assert_false(errors_contain("the OS refused to map more"));   /* it was never asked */
  void *p = nh_alloc(100);                   /* and the heap still works */
  assert_non_null(p);
  nh_free(p);
}

static void test_spans_return_to_page_heap(void **state) {
  nh_stats_t before = stats();
  enum { N = 20000 };
  void **p = malloc(N * sizeof *p);
  for (int i = 0; i < N; i++)
    p[i] = nh_alloc(256);
  nh_stats_t during = stats();
  assert_true(during.heap_inuse_bytes >= before.heap_inuse_bytes + (uint64_t)N * 256);
  for (int i = 0; i < N; i++)
    nh_free(p[i]);
  mcache_flush_all(&nh_rt.caches);   /* empty the per-CPU caches */
  nh_scavenge(0);                     /* and the empty spans the mcentrals kept */
  nh_stats_t after = stats();
  assert_int_equal(after.small_spans, 0);
  assert_int_equal(after.heap_inuse_bytes, 0);
  assert_int_equal(after.heap_mapped_bytes, after.heap_inuse_bytes + after.heap_free_bytes + after.heap_released_bytes);
  free(p);
}

static void test_large_spans_reused(void **state) {
  unsigned char *a = nh_alloc(100000);
  memset(a, 0xee, 100000);
  uint64_t inuse = stats().heap_inuse_bytes;
  nh_free(a);
  assert_true(stats().heap_inuse_bytes < inuse);   /* a kept span counts as free */
  assert_null(nh_base(a + 10));                     /* and is out of the span map */
  errors.all[0] = 0;
  nh_free(a);                                       /* so a double free is caught */
  assert_true(errors_contain("points into free heap memory"));
  unsigned char *b = nh_alloc(100000);              /* the same length takes it back */
  assert_ptr_equal(b, a);
  for (size_t i = 0; i < 100000; i += 997)
    assert_int_equal(b[i], 0);                      /* zeroed again for nh_alloc */
  nh_free(b);
  nh_scavenge(0);                                   /* kept spans go back to the page heap */
  assert_null(nh_base(b));
}

/* Placement, verified with move_pages: on this machine's one node, the touched pages of what
 * was allocated lie on node 0 and none elsewhere; untouched ones are absent. (The QEMU guest in
 * tests/numa-vm checks several nodes.) */
static void test_node_placement(void **state) {
  (void)state;
  enum { BYTES = 16 << 20 };
  char *p = nh_alloc_noscan(BYTES);
  assert_non_null(p);
  memset(p, 1, BYTES / 2);   /* half touched */
  nh_node_stat_t nodes[4];
  long count = nh_stats_nodes(nodes, 4, 1000);
  assert_true(count >= 1);
  uint64_t on = 0, sampled = 0, absent = 0, inuse = 0;
  for (long i = 0; i < count && i < 4; i++) {
    assert_int_equal(nodes[i].node, i);
    assert_int_equal(nodes[i].pages_on_node + nodes[i].pages_elsewhere + nodes[i].pages_absent, nodes[i].sampled_pages);
    assert_true(nodes[i].sampled_pages <= 1000);
    on += nodes[i].pages_on_node, sampled += nodes[i].sampled_pages, absent += nodes[i].pages_absent;
    inuse += nodes[i].inuse_bytes;
  }
  print_message("%ld node(s): %llu MiB in use, %llu pages sampled: %llu on their node, %llu absent\n", count,
                (unsigned long long)(inuse >> 20), (unsigned long long)sampled, (unsigned long long)on,
                (unsigned long long)absent);
  assert_true(inuse >= BYTES);
  assert_true(sampled >= 500);
  if (count == 1) {   /* one node: every resident page is on it */
    assert_int_equal(nodes[0].pages_elsewhere, 0);
    assert_true(on >= sampled / 3 && absent >= sampled / 3);   /* about half each */
  }
  assert_int_equal(nh_stats_nodes(nodes, 4, 0), count);   /* no sample: in use only */
  assert_int_equal(nodes[0].sampled_pages, 0);
  nh_free(p);
}

/* The node whose arena holds p, from the arena table. */
static int node_of(const void *p) {
  nh_arena_stat_t a[64];
  long n = nh_stats_arenas(a, 64);
  for (long i = 0; i < n && i < 64; i++)
    if ((uintptr_t)p - a[i].base < a[i].bytes)
      return a[i].node;
  return -1;
}

static void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  assert_int_equal(sched_setaffinity(0, sizeof set, &set), 0);
}

/* numa = fake:2 (CPU 0 is node 0, CPU 1 node 1): nh_alloc_onnode places small and large
 * objects on the node asked, from either node's CPU; a free from the other node's CPU is
 * counted and the object goes back to its own node (it is not handed out on this one); a bad
 * node is an error. */
static void test_alloc_onnode_and_remote_frees(void **state) {
  if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
    skip();
  nh_shutdown();
  nh_options o;
  nh_options_init(&o);
  o.gc = NH_GC_OFF;
  o.hugepages = NH_HUGEPAGES_NONE;
  o.numa = "fake:2";
  assert_int_equal(nh_init(&o), 0);
  cpu_set_t saved;
  sched_getaffinity(0, sizeof saved, &saved);
  pin_to_cpu(0);
  enum { N = 1000 };
  static void *small[N];
  for (int i = 0; i < N; i++) {
    small[i] = nh_alloc_onnode(48, 1);
    assert_non_null(small[i]);
    assert_int_equal(node_of(small[i]), 1);
    assert_true(((char *)small[i])[47] == 0);
  }
  void *large = nh_alloc_onnode(1 << 20, 1), *here = nh_alloc_onnode(64, 0), *plain = nh_alloc(64);
  assert_int_equal(node_of(large), 1);
  assert_int_equal(node_of(here), 0);
  assert_int_equal(node_of(plain), 0);
  for (int i = 0; i < N; i++)   /* remote: node 1's objects freed on node 0's CPU */
    nh_free(small[i]);
  nh_free(large);
  nh_free(here);
  nh_free(plain);
  assert_int_equal(stats().remote_frees, N + 1);
  nh_node_stat_t nodes[2];
  assert_int_equal(nh_stats_nodes(nodes, 2, 0), 2);
  assert_int_equal(nodes[1].remote_frees, N + 1);
  assert_int_equal(nodes[0].remote_frees, 0);
  for (int i = 0; i < N; i++)   /* node 0's CPU gets node 0's memory, not the freed objects */
    assert_int_equal(node_of(small[i] = nh_alloc(48)), 0);
  for (int i = 0; i < N; i++)
    nh_free(small[i]);
  pin_to_cpu(1);
  void *there = nh_alloc(48), *back = nh_alloc_onnode(48, 0);
  assert_int_equal(node_of(there), 1);
  assert_int_equal(node_of(back), 0);
  nh_free(there);
  nh_free(back);
  assert_int_equal(stats().remote_frees, N + 2);
  sched_setaffinity(0, sizeof saved, &saved);

  errno = 0;
  assert_null(nh_alloc_onnode(8, 2));
  assert_int_equal(errno, EINVAL);
  assert_true(errors_contain("nh_alloc_onnode(8, 2): no such node"));
  assert_null(nh_alloc_onnode(8, -1));
}

static void test_class_stats(void **state) {
  nh_class_stat_t cs[NH_NUM_SIZE_CLASSES];
  assert_int_equal(nh_stats_classes(cs, NH_ARRAY_LEN(cs)), 67);
  assert_int_equal(cs[0].size, 8);
  assert_int_equal(cs[66].size, 32768);
  uint64_t before = cs[size_to_class(48) - 1].spans;
  void *p[400];
  for (int i = 0; i < 400; i++)   /* 170 objects per 48-byte span: at least two more spans */
    p[i] = nh_alloc(48);
  nh_stats_classes(cs, NH_ARRAY_LEN(cs));
  assert_true(cs[size_to_class(48) - 1].spans >= before + 2);
  assert_int_equal(cs[size_to_class(48) - 1].objects_per_span, 170);
  for (int i = 0; i < 400; i++)
    nh_free(p[i]);
}

static void test_percpu_mode(void **state) {
  const char *dbg = getenv("NHEAP_DEBUG"), *tun = getenv("GLIBC_TUNABLES");
  bool forced_lock = (dbg && strstr(dbg, "rseq=0")) || (tun && strstr(tun, "glibc.pthread.rseq=0"));
  /* rseq unless turned off here, or this machine cannot (no glibc rseq, no membarrier RSEQ,
   * ThreadSanitizer): then the stats must say lock. */
  uint64_t want = forced_lock || !percpu_rseq_available() ? NH_PERCPU_LOCK : NH_PERCPU_RSEQ;
  print_message("per-CPU caches: %s\n", stats().percpu_mode == NH_PERCPU_RSEQ ? "rseq" : "lock");
  assert_int_equal(stats().percpu_mode, want);
}

/* The sequences themselves (percpu.h) on a cache of our own that every CPU maps to: pop,
 * push, and the batch push, which pushes what fits, in order, and refuses a stopped cache. */
static void test_percpu_sequences(void **state) {
  (void)state;
  if (!percpu_rseq_available()) {
    print_message("no rseq here: the sequences are not used\n");
    return;
  }
  struct {
    uint32_t stopped;
    nh_freestack fs;
  } cache = {0};
  void *items[8], *in[5], *out = NULL;
  cache.fs = (nh_freestack){.top = 0, .cap = 8, .items = items};
  enum { MAXCPU = 1024 };
  static void *cpus[MAXCPU];
  uint32_t ncpus = (uint32_t)sysconf(_SC_NPROCESSORS_CONF);
  assert_true(ncpus <= MAXCPU);
  for (uint32_t c = 0; c < ncpus; c++)
    cpus[c] = &cache;
  size_t off = offsetof(__typeof__(cache), fs), pushed = 99;
  for (int i = 0; i < 5; i++)
    in[i] = (void *)(uintptr_t)(0x1000 * (i + 1));
  assert_int_equal(percpu_push(cpus, ncpus, off, (void *)0x10), 1);
  assert_int_equal(percpu_push(cpus, ncpus, off, (void *)0x20), 1);
  assert_int_equal(percpu_push(cpus, ncpus, off, (void *)0x30), 1);
  assert_int_equal(percpu_push_n(cpus, ncpus, off, in, 5, &pushed), 1);   /* exactly full */
  assert_int_equal(pushed, 5);
  assert_int_equal(cache.fs.top, 8);
  for (int i = 0; i < 5; i++)
    assert_ptr_equal(items[3 + i], in[i]);
  assert_int_equal(percpu_push_n(cpus, ncpus, off, in, 5, &pushed), 1);   /* no room */
  assert_int_equal(pushed, 0);
  assert_int_equal(percpu_pop(cpus, ncpus, off, &out), 1);
  assert_ptr_equal(out, in[4]);
  assert_int_equal(percpu_pop(cpus, ncpus, off, &out), 1);
  assert_int_equal(percpu_push_n(cpus, ncpus, off, in, 5, &pushed), 1);   /* room for two */
  assert_int_equal(pushed, 2);
  assert_ptr_equal(items[6], in[0]);
  assert_ptr_equal(items[7], in[1]);
  assert_int_equal(cache.fs.top, 8);
  cache.stopped = 1;   /* a remote operation owns it: the slow path */
  assert_int_equal(percpu_push_n(cpus, ncpus, off, in, 1, &pushed), 0);
  assert_int_equal(percpu_pop(cpus, ncpus, off, &out), 0);
  cache.stopped = 0;
  while (percpu_pop(cpus, ncpus, off, &out))
    ;
  assert_int_equal(cache.fs.top, 0);
  assert_ptr_equal(out, (void *)0x10);
}

static void test_before_init(void **state) {
  nh_shutdown();
  errno = 0;
  assert_null(nh_alloc(10));
  assert_int_equal(errno, ENODEV);
  assert_true(errors_contain("before nh_init"));
  nh_free((void *)0x1234);   /* reported, not a crash */
  assert_null(nh_base((void *)0x1234));
  assert_true(errors_contain("nh_base called before nh_init"));
  assert_int_equal(nh_scavenge(1 << 20), 0);
  assert_true(errors_contain("nh_scavenge called before nh_init"));
  assert_null(nh_weak_get((nh_weak_t *)0x1234));
  assert_true(errors_contain("nh_weak_get called before nh_init"));
  assert_int_equal(nh_usable_size((void *)0x1234), 0);
  assert_null(nh_realloc((void *)0x1234, 10));
  assert_null(nh_calloc(2, 8));
  assert_int_equal(nh_root_add(&errno, 8), -ENODEV);
  nh_stats_t s = {.size = sizeof s};
  assert_int_equal(nh_stats_read(&s), -ENODEV);
  assert_int_equal(setup(state), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_every_class_and_large, setup, teardown),
    cmocka_unit_test_setup_teardown(test_interior_pointers_and_base, setup, teardown),
    cmocka_unit_test_setup_teardown(test_zeroing_rules, setup, teardown),
    cmocka_unit_test_setup_teardown(test_realloc_paths, setup, teardown),
    cmocka_unit_test_setup_teardown(test_aligned_alloc, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_frees_are_reported_and_harmless, setup, teardown),
    cmocka_unit_test_setup_teardown(test_types_region_full, setup, teardown),
    cmocka_unit_test_setup_teardown(test_type_new_refusals_are_harmless, setup, teardown),
    cmocka_unit_test_setup_teardown(test_double_free_after_drain, setup, teardown),
    cmocka_unit_test_setup_teardown(test_double_free_whatever_the_bytes_hold, setup, teardown),
    cmocka_unit_test_setup_teardown(test_double_free_every_mode, setup, teardown),
    cmocka_unit_test_setup_teardown(test_hidden_double_free_into_kept_span, setup, teardown),
    cmocka_unit_test_setup_teardown(test_bad_reallocs_are_reported_and_harmless, setup, teardown),
    cmocka_unit_test_setup_teardown(test_overflow_and_huge, setup, teardown),
    cmocka_unit_test_setup_teardown(test_spans_return_to_page_heap, setup, teardown),
    cmocka_unit_test_setup_teardown(test_large_spans_reused, setup, teardown),
    cmocka_unit_test_setup_teardown(test_node_placement, setup, teardown),
    cmocka_unit_test_setup_teardown(test_alloc_onnode_and_remote_frees, setup, teardown),
    cmocka_unit_test_setup_teardown(test_class_stats, setup, teardown),
    cmocka_unit_test_setup_teardown(test_percpu_mode, setup, teardown),
    cmocka_unit_test_setup_teardown(test_percpu_sequences, setup, teardown),
    cmocka_unit_test_setup_teardown(test_before_init, setup, teardown),
  };
  return cmocka_run_group_tests_name("malloc", tests, NULL, NULL);
}
