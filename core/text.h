/*
 * text.h — small text helpers for user-facing messages.
 */
#ifndef NH_TEXT_H
#define NH_TEXT_H

#include <stddef.h>

/* Case-insensitive Levenshtein distance, for "did you mean" suggestions; names of 63 or more
 * characters compare as far apart (99). No allocation. */
size_t text_edit_distance(const char *a, const char *b);

#endif
