/*
 * gcmodel.c — the collector's model test (gcmodel.h).
 *
 * A program is a byte string; each operation is an opcode byte and up to three operand bytes
 * (missing bytes read as 0, so every string is a program). The operations use only the public
 * API, the way a program would:
 *   alloc     a conservative, typed or noscan object (0..4 pointer slots, 8 B .. 200 KiB) into a
 *             root slot (a global array, scanned as the data segment)
 *   store     root a's object, slot k := root b's object (nh_store), or NULL
 *   load      root a := root b's object's slot k
 *   drop      root a := NULL
 *   free      nh_free of root a's object, when nothing else in the model refers to it
 *   realloc   the same condition; contents must survive up to the smaller size
 *   gc        nh_gc, then verify and reap (below)
 *   pace      nh_set_gc_percent(-1, 10, 50, 100 or 400): paced cycles at other rates
 *   thread    a new thread allocates a chain of objects, publishes its head in a root, exits
 *   area      nh_root_add / nh_root_remove of a malloc'd array of 16 slots; area-store puts
 *             a root's object there (a root only while the array is registered; cleared
 *             before it is registered again)
 *   verify    verify without collecting (with gc = concurrent, often during a mark)
 *   churn     garbage, to drive the pacer
 * The shadow model knows every object: its id, kind, size and which model object each slot
 * points at. Verify walks what is reachable in the model (roots, and the area while
 * registered) and checks every such object's header (its id), payload pattern and slots: a
 * reachable object freed and reused, or overwritten, fails there. Reap, after nh_gc: every
 * object the model cannot reach leaves the model, and its weak handle says whether the
 * collector freed it (died) or still holds it (retained: conservatively, by a stale word).
 * The model's own records are in malloc'd memory (not scanned) and keep addresses disguised (xor)
 * besides, so that they never act as roots or as pointer-like words (below).
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nheap.h"
#include "tests/gcmodel.h"

enum { NROOTS = 32, NAREA = 16, MAXOBJ = 2048, MAXSLOTS = 4, MAXLARGE = 32, CHAIN_MAX = 64 };
#define HIDE ((uintptr_t)0x5a5a5a5a5a5a5a5aull)

typedef enum { K_CONS = 0, K_TYPED = 1, K_NOSCAN = 2 } kind;

typedef struct mobj {
  uintptr_t hidden;         /* the program's pointer ^ HIDE; 0: free record */
  uint32_t id, size;        /* size: bytes asked for */
  uint8_t kind, nslots;
  bool reach;
  int16_t slot[MAXSLOTS];   /* model index each slot points at, -1: NULL */
  nh_weak_t *weak;
} mobj;

/* The model's records live in malloc'd memory, which the collector does not scan: in the data
 * segment, their small numbers side by side (an id beside a size of 192, four int16 indexes)
 * make words that look like heap addresses, which checkmark rightly reports when they are
 * written during a concurrent mark and point at garbage. The scalars left here are 64 bits. */
static mobj *objs;                    /* [MAXOBJ] */
static void *roots[NROOTS];           /* the program's roots: this global array */
static int16_t *root_of;              /* [NROOTS]: model index each root holds, -1 */
static void **area;                   /* malloc'd: a root only while registered */
static int16_t *area_of;              /* [NAREA] */
static bool area_on;
static const nh_type *types[MAXSLOTS + 1];
static uint64_t next_id = 1;
static int64_t nlarge;
static gcm_report *rep;

static void *reveal(const mobj *o) { return (void *)(o->hidden ^ HIDE); }

/* Pointer stores: nh_store, or plain stores (NH_GC_MODEL_PLAIN=1, for gc = concurrent-nobarrier,
 * where the kernel's write-protect tracking must make them safe). */
static bool plain;
static void model_store(void *slot, void *v) {
  if (plain)
    *(void *volatile *)slot = v;
  else
    nh_store((void **)slot, v);
}

static uint64_t header_of(uint32_t id) { return (uint64_t)id * 0x9e3779b97f4a7c15ull | 1; }

/* Object layout: word 0 = header_of(id); then the slots; then payload bytes (id*131 + i). */
static size_t payload_at(const mobj *o) { return 8 + 8 * (size_t)o->nslots; }

static void fail(const mobj *o, const char *what) {
  fprintf(stderr, "gcmodel: object id %u (%s, %u bytes, %u slots) at %p: %s\n", o->id,
          o->kind == K_CONS ? "conservative" : o->kind == K_TYPED ? "typed" : "noscan", o->size, o->nslots,
          reveal(o), what);
  rep->failure = what;
  abort();
}

static void fill_payload(const mobj *o, size_t from) {
  unsigned char *p = reveal(o);
  for (size_t i = payload_at(o) + from; i < o->size; i++)
    p[i] = (unsigned char)(o->id * 131 + i);
}

void gcm_setup(void) {
  plain = getenv("NH_GC_MODEL_PLAIN") != NULL;
  for (size_t n = 0; n <= MAXSLOTS; n++) {
    size_t off[MAXSLOTS];
    for (size_t i = 0; i < n; i++)
      off[i] = 8 + 8 * i;
    types[n] = nh_type_new(8 + 8 * n + 8, off, n);   /* header, slots, one payload word */
  }
}

static int new_record(void) {
  for (int i = 0; i < MAXOBJ; i++)
    if (!objs[i].hidden)
      return i;
  return -1;
}

/* Registers p (allocated and filled by the caller) in the model. */
static int track(void *p, uint32_t id, kind k, uint32_t size, uint8_t nslots) {
  int i = new_record();
  if (i < 0)
    return -1;
  mobj *o = &objs[i];
  *o = (mobj){.hidden = (uintptr_t)p ^ HIDE, .id = id, .size = size, .kind = (uint8_t)k, .nslots = nslots};
  for (int s = 0; s < MAXSLOTS; s++)
    o->slot[s] = -1;
  o->weak = nh_weak_new(p);
  rep->allocated++;
  return i;
}

static void set_root(int r, int idx) {
  model_store(&roots[r], idx >= 0 ? reveal(&objs[idx]) : NULL);
  root_of[r] = (int16_t)idx;
}

static void op_alloc(int r, uint8_t b2, uint8_t b3) {
  kind k = (kind)(b2 % 3);
  uint8_t nslots = k == K_NOSCAN ? 0 : (uint8_t)(b2 / 3 % (MAXSLOTS + 1));
  size_t min = 8 + 8 * (size_t)nslots, size;
  if (k == K_TYPED)
    size = min + 8;
  else if (b3 % 16 < 12)
    size = min + (size_t)(b3 * 7 % 200);
  else if (b3 % 16 < 15)
    size = min + 1000 + (size_t)b3 * 12;
  else
    size = nlarge < MAXLARGE ? 40000 + (size_t)b3 * 640 : min + 64;
  if (new_record() < 0)
    return;
  void *p = k == K_TYPED ? nh_alloc_typed(size, types[nslots]) : k == K_NOSCAN ? nh_alloc_noscan(size) : nh_alloc(size);
  if (!p) {
    fprintf(stderr, "gcmodel: allocation of %zu bytes failed\n", size);
    rep->failure = "allocation failed";
    abort();
  }
  uint32_t id = (uint32_t)next_id++;
  *(uint64_t *)p = header_of(id);
  for (unsigned s = 0; s < nslots; s++)
    ((void **)p)[1 + s] = NULL;   /* zeroed already (scanned kinds): the program's own stores */
  int i = track(p, id, k, (uint32_t)size, nslots);
  fill_payload(&objs[i], 0);
  nlarge += size > 32768;
  set_root(r, i);
}

static void op_store(int a, int k, int b) {
  int dst = root_of[a];
  if (dst < 0 || !objs[dst].nslots)
    return;
  mobj *o = &objs[dst];
  k %= o->nslots;
  int src = root_of[b];
  model_store(&((void **)reveal(o))[1 + k], src >= 0 ? reveal(&objs[src]) : NULL);
  o->slot[k] = (int16_t)src;
}

static void op_load(int a, int b, int k) {
  int src = root_of[b];
  if (src < 0 || !objs[src].nslots)
    return;
  k %= objs[src].nslots;
  set_root(a, objs[src].slot[k]);
}

/* References to model object idx from roots, the area and every model object's slots. */
static int references(int idx) {
  int n = 0;
  for (int r = 0; r < NROOTS; r++)
    n += root_of[r] == idx;
  for (int i = 0; i < NAREA; i++)
    n += area_of[i] == idx;
  for (int i = 0; i < MAXOBJ; i++)
    for (int s = 0; objs[i].hidden && s < objs[i].nslots; s++)
      n += objs[i].slot[s] == idx;
  return n;
}

static void forget(int idx) {
  mobj *o = &objs[idx];
  nh_weak_free(o->weak);
  nlarge -= o->size > 32768;
  memset(o, 0, sizeof *o);
}

static void verify_one(const mobj *o) {
  const unsigned char *p = reveal(o);
  if (*(const uint64_t *)p != header_of(o->id))
    fail(o, "header overwritten: the object was freed and reused while reachable");
  for (unsigned s = 0; s < o->nslots; s++) {
    void *want = o->slot[s] >= 0 ? reveal(&objs[o->slot[s]]) : NULL;
    if (((void *const *)p)[1 + s] != want)
      fail(o, "a pointer slot changed");
  }
  for (size_t i = payload_at(o); i < o->size; i++)
    if (p[i] != (unsigned char)(o->id * 131 + i))
      fail(o, "payload corrupted");
  rep->verified++;
}

/* Marks what the model reaches; checks each reached object. */
static void verify(void) {
  int stack[MAXOBJ], n = 0;
  for (int i = 0; i < MAXOBJ; i++)
    objs[i].reach = false;
  for (int r = 0; r < NROOTS + NAREA; r++) {
    int idx = r < NROOTS ? root_of[r] : area_on ? area_of[r - NROOTS] : -1;
    if (idx >= 0 && !objs[idx].reach) {
      objs[idx].reach = true;
      stack[n++] = idx;
    }
  }
  while (n) {
    mobj *o = &objs[stack[--n]];
    verify_one(o);
    for (unsigned s = 0; s < o->nslots; s++)
      if (o->slot[s] >= 0 && !objs[o->slot[s]].reach) {
        objs[o->slot[s]].reach = true;
        stack[n++] = o->slot[s];
      }
  }
}

/* After a collection: what the model cannot reach leaves it; the weak handle says whether the
 * collector freed it. */
static void reap(void) {
  for (int i = 0; i < MAXOBJ; i++) {
    if (!objs[i].hidden || objs[i].reach)
      continue;
    if (nh_weak_get(objs[i].weak))
      rep->retained++;
    else
      rep->died++;
    forget(i);
  }
  for (int i = 0; i < NAREA; i++)   /* an unregistered area's entries: dangling now */
    if (area_of[i] >= 0 && !objs[area_of[i]].hidden)
      area_of[i] = -1, area[i] = NULL;
}

static void op_gc(void) {
  nh_gc();
  rep->cycles++;
  verify();
  reap();
}

static bool exclusive(int a) {
  int idx = root_of[a];
  return idx >= 0 && references(idx) == 1;
}

static void op_free(int a) {
  if (!exclusive(a))
    return;
  int idx = root_of[a];
  void *p = reveal(&objs[idx]);
  set_root(a, -1);
  forget(idx);
  nh_free(p);
  rep->freed++;
}

static void op_realloc(int a, uint8_t b) {
  if (!exclusive(a) || objs[root_of[a]].kind == K_TYPED)
    return;
  int idx = root_of[a];
  mobj *o = &objs[idx];
  size_t size = payload_at(o) + (size_t)b * (b % 4 == 0 ? 300 : 3);
  void *q = nh_realloc(reveal(o), size);
  if (!q) {
    rep->failure = "realloc failed";
    abort();
  }
  uint32_t old = o->size;
  nh_weak_free(o->weak);
  o->hidden = (uintptr_t)q ^ HIDE;
  o->weak = nh_weak_new(q);
  nlarge += (size > 32768) - (old > 32768);
  o->size = (uint32_t)(size < old ? size : old);
  verify_one(o);   /* contents kept up to the smaller size */
  o->size = (uint32_t)size;
  fill_payload(o, 0);
  set_root(a, idx);
}

typedef struct chain { int n; uint32_t first_id; uintptr_t hidden[CHAIN_MAX]; int root; } chain;

static void *chain_thread(void *arg) {
  chain *c = arg;
  void *prev = NULL;
  for (int i = 0; i < c->n; i++) {
    unsigned char *p = nh_alloc(8 + 8 + 24);
    if (!p)
      return NULL;
    *(uint64_t *)p = header_of(c->first_id + (uint32_t)i);
    model_store((void **)p + 1, prev);
    for (size_t j = 16; j < 40; j++)
      p[j] = (unsigned char)((c->first_id + (uint32_t)i) * 131 + j);
    c->hidden[i] = (uintptr_t)p ^ HIDE;
    prev = p;
  }
  model_store(&roots[c->root], prev);
  return NULL;
}

static void op_thread(int r, uint8_t len) {
  int free_records = 0;
  for (int i = 0; i < MAXOBJ; i++)
    free_records += !objs[i].hidden;
  chain c = {.n = 1 + len % CHAIN_MAX, .first_id = (uint32_t)next_id, .root = r};
  if (free_records < c.n)
    return;
  next_id += (uint32_t)c.n;
  pthread_t t;
  if (pthread_create(&t, NULL, chain_thread, &c) != 0)
    return;
  pthread_join(t, NULL);
  rep->threads++;
  int prev = -1;
  for (int i = 0; i < c.n; i++) {
    if (!c.hidden[i]) {
      rep->failure = "allocation failed in a thread";
      abort();
    }
    int idx = track((void *)(c.hidden[i] ^ HIDE), c.first_id + (uint32_t)i, K_CONS, 40, 1);
    objs[idx].slot[0] = (int16_t)prev;
    prev = idx;
  }
  root_of[r] = (int16_t)prev;   /* the thread stored it */
}

/* An unregistered area's pointers are hidden from the collector: what only they hold may be
 * freed at any time (or be white in a mark running now), so the program clears the area before
 * it registers it again, as a program must (bdwgc's GC_add_roots has the same rule). */
static void op_area_toggle(void) {
  if (area_on) {
    nh_root_remove(area);
  } else {
    for (int i = 0; i < NAREA; i++)
      area[i] = NULL, area_of[i] = -1;
    nh_root_add(area, NAREA * sizeof *area);
  }
  area_on = !area_on;
}

static void op_area_store(int i, int b) {
  int src = root_of[b];
  model_store(&area[i], src >= 0 ? reveal(&objs[src]) : NULL);
  area_of[i] = (int16_t)src;
}

static void op_churn(uint8_t n) {
  for (int i = 0; i < 16 * (n % 64); i++) {
    void *volatile g = nh_alloc(16 + (size_t)(i * 37 % 500));
    (void)g;
  }
}

static const int paces[] = {-1, 10, 50, 100, 400};

void gcm_run(const uint8_t *code, size_t n, gcm_report *r) {
  rep = r;
  if (!area && (!(area = calloc(NAREA, sizeof *area)) || !(objs = calloc(MAXOBJ, sizeof *objs)) ||
                !(root_of = calloc(NROOTS, sizeof *root_of)) || !(area_of = calloc(NAREA, sizeof *area_of))))
    abort();
  for (int i = 0; i < NROOTS; i++)
    root_of[i] = -1;
  for (int i = 0; i < NAREA; i++)
    area_of[i] = -1;
  int pace = nh_set_gc_percent(100);
  for (size_t pc = 0; pc < n; pc += 4) {
    uint8_t op = code[pc], b1 = pc + 1 < n ? code[pc + 1] : 0, b2 = pc + 2 < n ? code[pc + 2] : 0,
            b3 = pc + 3 < n ? code[pc + 3] : 0;
    int ra = b1 % NROOTS, rb = b2 % NROOTS;
    switch (op % 16) {
    case 0: case 1: case 2: op_alloc(ra, b2, b3); break;
    case 3: case 4: op_store(ra, b3, rb); break;
    case 5: op_load(ra, rb, b3); break;
    case 6: set_root(ra, -1); break;
    case 7: op_free(ra); break;
    case 8: op_realloc(ra, b2); break;
    case 9: if (b1 % 4 == 0) op_gc(); else verify(); break;
    case 10: nh_set_gc_percent(paces[b1 % 5]); break;
    case 11: if (b1 % 8 == 0) op_thread(ra, b2); break;
    case 12: op_area_toggle(); break;
    case 13: op_area_store(b1 % NAREA, rb); break;
    case 14: op_churn(b1); break;
    default: verify(); break;
    }
    r->ops++;
  }
  op_gc();   /* the program's state, checked; then everything dropped and collected */
  for (int i = 0; i < NROOTS; i++)
    set_root(i, -1);
  for (int i = 0; i < NAREA; i++) {
    model_store(&area[i], NULL);
    area_of[i] = -1;
  }
  if (area_on)
    op_area_toggle();
  op_gc();
  op_gc();
  nh_set_gc_percent(pace);
}
