/*
 * links.h — disappearing links (bdwgc's weak pointers, links.c): a registered location that the
 * collector sets to NULL when the object it names is found unreachable. The tables live in the
 * specials (special.h), under their lock, and the cycle clears them with the world stopped.
 */
#ifndef NH_LINKS_H
#define NH_LINKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct nh_link_rec {
  uintptr_t link;                  /* the location the collector clears */
  uintptr_t obj;                   /* the object whose death clears it */
} nh_link_rec;

/* One table: records in an array (the cycle's pass) and an open-addressing index from a
 * link's address to its record, so registering, moving and removing cost O(1). */
typedef struct nh_links {
  nh_link_rec *rec;
  size_t n, cap;
  size_t *index;                   /* record number + 1 for each slot; 0: empty */
  size_t icap;                     /* a power of two, at least twice n; 0: none yet */
} nh_links_t;

/* Registers link -> obj: 0 when link is new, 1 when it was registered and now names obj
 * (bdwgc's GC_DUPLICATE: the last registration wins), -ENOMEM. */
int links_add(nh_links_t *l, uintptr_t link, uintptr_t obj);
/* Forgets link: whether it was registered. */
bool links_remove(nh_links_t *l, uintptr_t link);
/* Moves link's registration to the location to, same object: 0, -ENOENT (link is not
 * registered), -EEXIST (to is, and is not link). */
int links_move(nh_links_t *l, uintptr_t link, uintptr_t to);
/* After a mark, world stopped: every link whose object is not marked is set to NULL and
 * forgotten. Returns how many were cleared. */
size_t links_clear_dead(nh_links_t *l);
/* After finalization has resurrected what it keeps, world stopped: forgets the links that lie
 * inside a heap object that is not marked (their memory is about to be freed). */
void links_drop_dangling(nh_links_t *l);
/* Validator: every record is reached by its link's probe and every index slot leads to a
 * record; aborts naming what is wrong. */
void links_validate(const nh_links_t *l);

#endif
