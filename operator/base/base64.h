/* base64.h — strict base64 / base64url decoding (RFC 4648). */
#ifndef KM_BASE64_H
#define KM_BASE64_H

#include <stddef.h>

#include "operator/base/err.h"

enum {
    KM_B64_URL = 1,        /* '-' '_' alphabet (JWT parts) instead of '+' '/' */
    KM_B64_SKIP_SPACE = 2, /* ignore spaces, tabs and line breaks (PEM-style wrapped data) */
};

/* Decodes n bytes of in (padding '=' optional, at most two; leftover bits must be zero).  On
 * success *out is a malloc'ed buffer of *out_len bytes plus a terminating NUL (caller frees).
 * On failure (KM_EPARSE: bad character, length or padding; KM_ENOMEM) outputs are untouched. */
km_status km_base64_decode(const char *in, size_t n, int flags, unsigned char **out,
                           size_t *out_len);

#endif
