/* buf.h — a bounded growable byte buffer (after curl's dynbuf).
 *
 * A km_buf is embedded by value: km_buf_init() it, km_buf_cleanup() it.  The contents are always
 * NUL-terminated (the terminator is not counted in len), so text can be used as a C string.
 * Growth never exceeds `max` bytes of content; appends past it fail with KM_ETOOBIG and leave
 * the buffer unchanged. */
#ifndef KM_BUF_H
#define KM_BUF_H

#include <stddef.h>

#include "operator/base/err.h"

typedef struct km_buf {
    char *data; /* owned; NULL until the first append */
    size_t len;
    size_t cap;
    size_t max;
} km_buf;

/* Initialises an empty buffer that may hold at most max bytes (0 = SIZE_MAX/2).  Cannot fail. */
void km_buf_init(km_buf *b, size_t max);

/* Frees the contents and re-initialises to empty with the same max.  Accepts NULL. */
void km_buf_cleanup(km_buf *b);

/* Empties the buffer but keeps its allocation. */
void km_buf_reset(km_buf *b);

/* Appends n bytes.  KM_ETOOBIG past max, KM_ENOMEM on allocation failure; unchanged on failure. */
km_status km_buf_append(km_buf *b, const void *p, size_t n);

/* Appends a NUL-terminated string.  Same failures as km_buf_append. */
km_status km_buf_puts(km_buf *b, const char *s);

/* Appends printf-formatted text.  Same failures as km_buf_append; unchanged on failure. */
km_status km_buf_printf(km_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Removes the first n bytes (n > len empties it), moving the rest to the front. */
void km_buf_consume(km_buf *b, size_t n);

/* Detaches the contents: returns a malloc'ed NUL-terminated string the caller frees (an empty
 * string for an empty buffer) and leaves b empty.  NULL on allocation failure (b unchanged). */
char *km_buf_take(km_buf *b);

/* The contents as a C string ("" when empty); borrowed, valid until the next change. */
const char *km_buf_str(const km_buf *b);

#endif
