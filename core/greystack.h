/*
 * greystack.h — a marker's grey objects: its stack of work blocks and the blocks the
 * concurrent markers share (greystack.c). The push and pop fast paths are inline (the mark
 * loop's).
 */
#ifndef NH_GREYSTACK_H
#define NH_GREYSTACK_H

#include "core/mark.h"

#define NH_WORKBUF_CAP (sizeof(((nh_workbuf_t *)0)->obj) / sizeof(uintptr_t))

/* A new block from metadata memory; NULL when it has none. */
nh_workbuf_t *grey_meta_block(void);
/* Full block b to the shared list of node (under the work lock); wakes waiting markers. */
void grey_share_block(nh_markwork_t *w, nh_workbuf_t *b, int node);
/* Hands the marker's partly filled blocks to the other markers (after the roots). */
void grey_publish(nh_marker_t *m);
/* grey_push's slow path: another node's object, or no room on top. */
void grey_push_slow(nh_marker_t *m, uintptr_t obj, int node);
/* grey_pop's slow path: the top block is empty; the next one (from the marker's own, the
 * shared lists, or its blocks bound for other nodes, shared and taken back), NULL: none. */
nh_workbuf_t *grey_next_block(nh_marker_t *m);

/* Object obj lies in node's memory. A concurrent marker keeps its own node's objects and sends
 * the others' towards their nodes; with the world stopped (no shared work) one marker keeps all. */
static inline void grey_push(nh_marker_t *m, uintptr_t obj, int node) {
  nh_workbuf_t *b = m->cur;
  if (nh_likely(b && b->n < NH_WORKBUF_CAP && (node == m->node || !m->shared)))
    b->obj[b->n++] = obj;
  else
    grey_push_slow(m, obj, node);
}

static inline bool grey_pop(nh_marker_t *m, uintptr_t *obj) {
  nh_workbuf_t *b = m->cur;
  if (nh_unlikely(!b || b->n == 0) && !(b = grey_next_block(m)))
    return false;
  *obj = b->obj[--b->n];
  return true;
}

#endif
