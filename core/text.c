/*
 * text.c — text helpers for messages (text.h). One row of the dynamic-programming table on the
 * stack: the names compared (option keys, event names) are short.
 */
#include <ctype.h>
#include <string.h>

#include "core/text.h"

size_t text_edit_distance(const char *a, const char *b) {
  enum { MAX = 63 };
  size_t la = strlen(a), lb = strlen(b), row[MAX + 1];
  if (la >= MAX || lb >= MAX)
    return 99;
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t best = diag + (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
      if (up + 1 < best)
        best = up + 1;
      if (row[j - 1] + 1 < best)
        best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  return row[lb];
}
