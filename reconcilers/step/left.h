/* left.h — what a step's verify hook (step.h) found left: a count and the first names, rendered
 * for a condition message ("2: ns/a, ns/b" or "120: ns/a, ... and 112 more").  No allocation. */
#ifndef KM_STEP_LEFT_H
#define KM_STEP_LEFT_H

#include <stddef.h>

typedef struct km_left {
    long n;          /* everything added */
    long shown;      /* names held in names */
    char names[480]; /* the first names, ", "-separated (those that fit) */
} km_left;

/* Counts name (borrowed; may be NULL: counted, not named) and keeps it when it fits. */
void km_left_add(km_left *l, const char *name);

/* "<n>: <names>[ and <m> more]" into buf (always NUL-terminated, n > 0); returns buf. */
const char *km_left_text(const km_left *l, char *buf, size_t n);

#endif
