/*
 * mark.h — marking (mark.c), its roots (roots.c) and the checkmark debug mode (checkmark.c):
 * grey blocks, markers, the shared work of a concurrent mark.
 */
#ifndef NH_MARK_H
#define NH_MARK_H

#include "core/lock.h"
#include "core/span.h"
#include "core/thread.h"
#include "numa/topology.h"

/* A block of grey objects (Go's workbuf), in metadata memory and reused across cycles. */
#define NH_WORKBUF_BYTES (64 << 10)
typedef struct nh_workbuf {
  struct nh_workbuf *next;
  size_t n;
  uintptr_t obj[(NH_WORKBUF_BYTES - 16) / sizeof(uintptr_t)];
} nh_workbuf_t;

typedef struct nh_root { uintptr_t lo, hi; } nh_root_t;

/* Grey blocks shared by the concurrent markers (the collector thread, the mark workers and
 * the write barrier's flushes): Go's work.full list, one per NUMA node (NumaGiC): a block
 * waits on the list of the node whose memory holds its objects, and a marker takes from its
 * own node's list first and from the others' only when its own is empty. */
typedef struct nh_markwork {
  nh_mutex_t lock;                 /* LOCK_RANK_MARKWORK */
  pthread_cond_t cv;               /* work arrived, or the phase ended; with lock.m */
  nh_workbuf_t *full[NH_MAX_NODES]; /* grey blocks anyone may take, by node */
  size_t nfull;                    /* blocks on all the lists */
  nh_workbuf_t *spare;             /* empty blocks */
  unsigned busy;                   /* markers draining now */
  bool overflow;                   /* a grey object was dropped somewhere: rescan marked ones */
  uint64_t marked_bytes, marked_objects; /* relaxed: by the barrier and black allocation */
  uint64_t scanned_bytes;          /* relaxed: by the workers and assists */
  uint64_t scanned_local, scanned_remote, steals; /* relaxed: the same, by where they ran */
} nh_markwork_t;

/* Checkmark's side bitmaps: one bit per 8 bytes of each arena that existed when they were made. */
typedef struct nh_sidemap {
  uint64_t **bits;                 /* per arena id; NULL: none made */
  uint32_t narenas;
} nh_sidemap_t;

typedef struct nh_marker {
  nh_workbuf_t *cur;               /* the stack's top block */
  nh_workbuf_t *full;              /* blocks below it */
  nh_workbuf_t *spare;             /* empty blocks */
  size_t nspare;
  nh_markwork_t *pool;             /* where spare blocks beyond a few go, and come from */
  nh_markwork_t *shared;           /* concurrent mode: full blocks go here, and work comes from it */
  int node;                        /* the node it runs on: its stack holds that node's objects */
  uint64_t out_nodes;              /* shared, several nodes: which out[] blocks hold objects */
  nh_workbuf_t *out[NH_MAX_NODES]; /* grey objects of other nodes, on their way to those lists */
  bool overflow;                   /* a grey object was dropped: rescan marked objects */
  uint64_t overflow_rounds;        /* this mark's overflow recovery rounds */
  bool keeps_reserve;              /* the collector's: keeps one block for overflow recovery */
  nh_workbuf_t *reserve;           /* that block, when no marker is using it */
  uint64_t marked_bytes, marked_objects, scanned_bytes;
  uint64_t scanned_local, scanned_remote; /* of scanned_bytes, heap objects on its node or not */
  uint64_t steals;                 /* blocks taken from another node's list */
  /* The drain's candidate pipeline (mark.c): words that point into a span's pages, waiting
   * while the span's first line and the line of the object's bitmap words are fetched. */
  bool piped;
  const struct nh_span *scanning;  /* the span of the object being scanned */
  uint32_t pipe_head, pipe_tail;
  struct { uintptr_t w; struct nh_span *s; } pipe[8];
  /* Checkmark mode: a second, independent mark into side bitmaps (one bit per 8 bytes). */
  bool checking;
  bool snapshotting;               /* the traversal at a concurrent mark's setup: records only */
  nh_sidemap_t check;              /* what the check reached */
  nh_sidemap_t snap_alloc, snap_reach; /* a concurrent mark's: allocated, reachable at its setup */
  uint64_t check_doubtful;         /* unmarked objects reached that were garbage at setup */
  const char *check_from;          /* what the word being scanned belongs to */
  uintptr_t check_parent;
} nh_marker_t;

typedef struct nh_roots {
  nh_mutex_t lock;                 /* LOCK_RANK_ROOTS: the registered ranges */
  nh_root_t *user;                 /* nh_root_add */
  size_t nuser, capuser;
  nh_root_t *data;                 /* writable segments of the program and its libraries */
  size_t ndata, capdata;
  uint64_t bytes;                  /* scanned last cycle: stacks + data + registered */
} nh_roots_t;

/* Roots (roots.c). roots_collect_data lists the program's and libraries' writable segments
 * (dl_iterate_phdr); called before the world stops (the loader lock may be held by a thread
 * that is about to be stopped). roots_scan greys what the roots hold: the attached threads'
 * stacks (from their stop sp; the collecting thread's from where it entered the collector,
 * registers spilled), data segments, registered ranges; the world is stopped. roots_rescan, at
 * mark termination: the stacks again (an object a thread allocated just before the stop may
 * not be marked yet), and with globals the data segments and registered roots (no barrier saw
 * their stores: concurrent-nobarrier). */
void roots_collect_data(nh_roots_t *r);
void roots_scan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);
void roots_rescan(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts, bool globals);

/* Marking (mark.c). A mark, world stopped (gc = stw): mark_begin(m, NULL), the roots and the
 * specials greyed (roots_scan, mark_specials), then mark_drain_all: drains, and recovers from
 * overflow. Concurrent marking (cycle.c runs the phases):
 *   mark_begin(m, w)   world stopped: m's full blocks go to the shared work w from now on;
 *                      the roots and specials are greyed into m, then mark_publish shares them;
 *   mark_drain_shared  drains m and the shared blocks until none is left, or until about
 *                      budget bytes were scanned (returns true then: work may be left);
 *   mark_give_back     m's grey blocks, to the shared list (before a marker rests);
 *   mark_finish        world stopped: overflow recovery; adds what the barrier and black
 *                      allocation marked to m's counts and detaches m from w;
 *   mark_shade_batch   marks the objects holding v[0..n) and shares the new grey ones (v is
 *                      overwritten);
 *   mark_new_object    black allocation: marks the object (or tiny block) at p (a test
 *                      only, when its refill marked it already);
 *   mark_flush_wbufs   world stopped: every thread's barrier buffer, shaded;
 *   mark_work_left     whether a shared block waits or a marker is draining;
 *   mark_thread_leaving a detaching thread's buffer, shaded (threads lock held). */
void mark_begin(nh_marker_t *m, nh_markwork_t *w);
void mark_publish(nh_marker_t *m);
void mark_drain_all(nh_marker_t *m);
/* Gives m a grey block of its own for overflow recovery, kept across cycles (the collector's
 * marker: the only one that recovers). -ENOMEM when there is no memory for it. */
int mark_reserve(nh_marker_t *m);
/* Scans the words of [lo, hi) conservatively into m (roots, checkmark's traversal). */
void mark_range(nh_marker_t *m, uintptr_t lo, uintptr_t hi);
/* For checkmark.c: the allocated object holding w (its span and index, or NULL); a grey push;
 * a drain to the end; fn for every span in use (world stopped). */
nh_span_t *mark_find(uintptr_t w, size_t *idx);
void mark_grey(nh_marker_t *m, uintptr_t obj, int node);
void mark_drain(nh_marker_t *m);
void mark_each_span(nh_marker_t *m, void (*fn)(nh_marker_t *m, nh_span_t *s));
bool mark_drain_shared(nh_marker_t *m, uint64_t budget);
void mark_give_back(nh_marker_t *m);
size_t mark_assist(nh_markwork_t *w, size_t budget);
/* Adds m's counts to its shared work's and clears them (a worker's, an assist's). */
void mark_report(nh_marker_t *m);
/* concurrent-nobarrier: [lo, hi) was written since it was protected; the words there of every
 * marked object are scanned again (a pointer stored into an object already scanned). */
void mark_rescan_dirty(nh_marker_t *m, uintptr_t lo, uintptr_t hi);
void mark_finish(nh_marker_t *m);
/* Debug: after mark_finish (w: the concurrent mark's shared work, NULL for stop-the-world),
 * nothing is grey anywhere, no marker is draining, and the marked counts agree; fatal
 * otherwise. */
void mark_validate_done(const nh_marker_t *m, nh_markwork_t *w);
void mark_shade_batch(nh_markwork_t *w, uintptr_t *v, size_t n);
void mark_new_object(nh_markwork_t *w, uintptr_t p);
/* Black allocation in bulk (mcache.c marks a refill's objects): adds them to w's counts. */
void mark_new_counted(nh_markwork_t *w, size_t bytes, size_t objects);
void mark_flush_wbufs(nh_markwork_t *w, nh_threads_t *ts);
bool mark_work_left(nh_markwork_t *w);
void mark_thread_leaving(nh_thread_t *t);

/* For the specials: marks what obj points to (not obj) / the object holding word w; tells
 * whether obj is marked (LIVE), allocated but unmarked (DEAD) or not allocated (GONE); marks a
 * dead object without scanning it (its referents were marked by mark_referents). */
enum { MARK_GONE = 0, MARK_DEAD = 1, MARK_LIVE = 2 };
void mark_referents(nh_marker_t *m, uintptr_t obj);
void mark_referents_except_self(nh_marker_t *m, uintptr_t obj);   /* a self-pointer does not count */
void mark_root_word(nh_marker_t *m, uintptr_t w);
int mark_state(uintptr_t obj);
void mark_resurrect(nh_marker_t *m, uintptr_t obj);
/* Find-leak mode, world stopped after the mark and the specials: every allocated object left
 * white is marked (kept) and its address put in out (the first cap); returns how many. */
size_t mark_leaks(nh_marker_t *m, uintptr_t *out, size_t cap);
/* Checkmark: re-marks from scratch into side bitmaps and aborts on an object reachable but not
 * marked. mark_check_setup, in a concurrent mark's setup pause, records what is allocated and
 * what is reachable then, which mark_check uses to tell a lost object from a stale word; a
 * concurrent cycle whose setup could not record them is not checked. */
bool mark_check_setup(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);   /* false: no memory (warned) */
void mark_check(nh_marker_t *m, nh_roots_t *r, nh_threads_t *ts);
/* A word the check's traversal scanned (m->checking): the object it reaches must be marked. */
void checkmark_word(nh_marker_t *m, uintptr_t at, uintptr_t w);

#endif
