/* buf.c — bounded growable byte buffer. */
#include "operator/base/buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void km_buf_init(km_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max ? max : SIZE_MAX / 2;
}

void km_buf_cleanup(km_buf *b)
{
    if (!b)
        return;
    free(b->data);
    km_buf_init(b, b->max);
}

void km_buf_reset(km_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

/* Makes room for `extra` more bytes plus the terminator. */
static km_status buf_reserve(km_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return KM_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return KM_OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return KM_ENOMEM;
    b->data = p;
    b->cap = cap;
    return KM_OK;
}

km_status km_buf_append(km_buf *b, const void *p, size_t n)
{
    km_status st = buf_reserve(b, n);
    if (st != KM_OK)
        return st;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KM_OK;
}

km_status km_buf_puts(km_buf *b, const char *s)
{
    return km_buf_append(b, s, strlen(s));
}

km_status km_buf_printf(km_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return KM_EINVAL;
    km_status st = buf_reserve(b, (size_t)n);
    if (st != KM_OK)
        return st;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return KM_OK;
}

void km_buf_consume(km_buf *b, size_t n)
{
    if (n >= b->len) {
        km_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *km_buf_take(km_buf *b)
{
    char *s = b->data;
    if (!s) {
        s = malloc(1);
        if (!s)
            return NULL;
        s[0] = '\0';
    }
    b->data = NULL;
    b->len = b->cap = 0;
    return s;
}

const char *km_buf_str(const km_buf *b)
{
    return b->data ? b->data : "";
}
