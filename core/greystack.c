/*
 * greystack.c — a marker's grey objects: its stack of work blocks, and the blocks the
 * concurrent markers share (Go's workbufs and work.full), with NUMA placement.
 *
 * The grey stack is a chain of 64 KiB work blocks from metadata memory, kept for the next
 * cycle: a marker pushes onto its top block and pops from it (greystack.h inlines both fast
 * paths), keeps a few emptied blocks as spares and gives the rest to the pool. With the world
 * stopped one marker keeps every block; in a concurrent mark a full block is shared, on the
 * list of its objects' node, and a marker that runs dry takes one (under the work lock). If
 * metadata memory runs out, the grey object is dropped and `overflow` set (mark.c recovers).
 *
 * NUMA (NumaGiC's policy): the shared blocks wait on one list per node, and a grey object goes
 * to the node whose memory holds it (its span's node). A marker runs on one node (workers.c pins
 * it there) and keeps that node's objects on its own stack; another node's go into a block
 * bound for that node's list (out[]), shared when full or when the marker runs dry. A marker
 * takes from its own node's list first and steals from the others only when its own has
 * nothing, so it scans local memory while there is local work. Each scan is counted local or
 * remote (by the scanned object's node against the marker's), and steals are counted. With
 * one node everything is node 0 and this is Go's single list. The lists share one lock:
 * blocks hold 8K objects, so it is taken rarely. The DESIGN.md layout puts per-node work
 * queues in numa/; they are the grey lists here, where the markers use them, and numa/ holds
 * the topology and the markers' placement.
 */
#include "core/greystack.h"
#include "core/heap.h"

nh_workbuf_t *grey_meta_block(void) { return mem_meta_alloc(&nh_rt.mem, sizeof(nh_workbuf_t), 64); }

static nh_workbuf_t *new_block(nh_marker_t *m) {
  nh_workbuf_t *b = m->spare;
  if (b) {
    m->spare = b->next;
    m->nspare--;
  } else if (m->pool && m->pool->spare) {   /* racy peek; the lock decides */
    nh_mutex_lock(&m->pool->lock);
    if ((b = m->pool->spare))
      m->pool->spare = b->next;
    nh_mutex_unlock(&m->pool->lock);
  }
  if (!b && !(b = grey_meta_block())) {
    b = m->reserve;   /* the last resort (overflow recovery): taken back as soon as one empties */
    m->reserve = NULL;
    if (!b)
      return NULL;
  }
  b->next = NULL;
  b->n = 0;
  return b;
}

/* Concurrent markers share full blocks (Go's work.full), on the list of the node whose memory
 * holds their objects: under the work lock. */
void grey_share_block(nh_markwork_t *w, nh_workbuf_t *b, int node) {
  nh_mutex_lock(&w->lock);
  b->next = w->full[node];
  w->full[node] = b;
  w->nfull++;
  pthread_cond_broadcast(&w->cv);
  nh_mutex_unlock(&w->lock);
}

/* A block for marker m: from its node's list, else (m is idle) stolen from the next node
 * round that has one (NumaGiC's policy). */
static nh_workbuf_t *take_shared(nh_marker_t *m) {
  nh_markwork_t *w = m->shared;
  int nnodes = nh_rt.topo.nnodes;
  nh_workbuf_t *b = NULL;
  nh_mutex_lock(&w->lock);
  for (int i = 0; w->nfull && i < nnodes && !b; i++) {
    int n = (m->node + i) % nnodes;
    if ((b = w->full[n])) {
      w->full[n] = b->next;
      w->nfull--;
      m->steals += i > 0;
    }
  }
  nh_mutex_unlock(&w->lock);
  if (b)
    b->next = NULL;
  return b;
}

/* A grey object of another node's memory, into the marker's block bound for that node. */
static void push_out(nh_marker_t *m, uintptr_t obj, int node) {
  nh_workbuf_t *b = m->out[node];
  if (!b || b->n == NH_WORKBUF_CAP) {
    nh_workbuf_t *nb = new_block(m);
    if (!nb) {
      m->overflow = true;
      return;
    }
    if (b)
      grey_share_block(m->shared, b, node);
    m->out[node] = b = nb;
    m->out_nodes |= 1ull << node;
  }
  b->obj[b->n++] = obj;
}

/* The marker's blocks bound for other nodes, to their lists. Returns whether there were any. */
static bool flush_out(nh_marker_t *m) {
  bool any = m->out_nodes != 0;
  for (uint64_t nodes = m->out_nodes; nodes; nodes &= nodes - 1) {
    int n = __builtin_ctzll(nodes);
    grey_share_block(m->shared, m->out[n], n);
    m->out[n] = NULL;
  }
  m->out_nodes = 0;
  return any;
}

/* An emptied block: kept by the marker (a few), else back to the pool's spares, where the
 * barrier's flushes and the other markers take theirs; blocks would otherwise pile up with
 * whichever marker drained them (or with the checkmark pass) while others mapped new ones. */
enum { MARKER_SPARES = 4 };
static void spare_block(nh_marker_t *m, nh_workbuf_t *b) {
  if (m->keeps_reserve && !m->reserve) {
    m->reserve = b;
    return;
  }
  if (m->pool && m->nspare >= MARKER_SPARES) {
    nh_mutex_lock(&m->pool->lock);
    b->next = m->pool->spare;
    m->pool->spare = b;
    nh_mutex_unlock(&m->pool->lock);
    return;
  }
  b->next = m->spare;
  m->spare = b;
  m->nspare++;
}

/* Hands the marker's partly filled blocks to the other markers (after the roots). */
void grey_publish(nh_marker_t *m) {
  if (!m->shared)
    return;
  if (m->cur && m->cur->n) {
    grey_share_block(m->shared, m->cur, m->node);
    m->cur = NULL;
  }
  flush_out(m);
}

void grey_push_slow(nh_marker_t *m, uintptr_t obj, int node) {
  if (node != m->node && m->shared) {
    push_out(m, obj, node);
    return;
  }
  nh_workbuf_t *b = m->cur, *nb = new_block(m);
  if (!nb) {
    m->overflow = true;
    return;
  }
  if (b && m->shared) {   /* a full block is work for anyone */
    grey_share_block(m->shared, b, m->node);
  } else if (b) {
    b->next = m->full;
    m->full = b;
  }
  m->cur = nb;
  nb->obj[nb->n++] = obj;
}

nh_workbuf_t *grey_next_block(nh_marker_t *m) {
  nh_workbuf_t *b = m->cur, *next = m->full;
  if (next)
    m->full = next->next;
  else if (!m->shared || (!(next = take_shared(m)) && !(flush_out(m) && (next = take_shared(m)))))
    return NULL;
  if (b)
    spare_block(m, b);
  m->cur = next;
  next->next = NULL;
  return next;
}
