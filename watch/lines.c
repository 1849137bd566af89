/* lines.c — incremental newline splitter. */
#include "watch/lines.h"

#include <stdlib.h>
#include <string.h>

#include "operator/base/buf.h"

struct km_lines {
    km_buf buf; /* the partial line carried over from earlier chunks */
    size_t max_line;
    km_lines_mode mode;
    int discarding; /* inside an oversized line: drop bytes up to its newline */
    km_lines_fn fn;
    void *user;
    km_lines_stats st;
};

km_status km_lines_new(size_t max_line, km_lines_mode mode, km_lines_fn fn, void *user,
                       km_lines **out)
{
    if (!fn || !out)
        return KM_EINVAL;
    km_lines *l = calloc(1, sizeof(*l));
    if (!l)
        return KM_ENOMEM;
    l->max_line = max_line ? max_line : KM_LINES_DEFAULT_MAX;
    km_buf_init(&l->buf, l->max_line);
    l->mode = mode;
    l->fn = fn;
    l->user = user;
    *out = l;
    return KM_OK;
}

void km_lines_free(km_lines *l)
{
    if (!l)
        return;
    km_buf_cleanup(&l->buf);
    free(l);
}

void km_lines_reset(km_lines *l)
{
    km_buf_reset(&l->buf);
    l->discarding = 0;
}

size_t km_lines_pending(const km_lines *l)
{
    return l->buf.len;
}

void km_lines_stats_get(const km_lines *l, km_lines_stats *out)
{
    *out = l->st;
}

/* Records an oversized line; returns what the feed should return for it. */
static km_status oversized(km_lines *l, int newline_seen)
{
    km_buf_reset(&l->buf);
    l->discarding = !newline_seen;
    l->st.oversized++;
    return l->mode == KM_LINES_ABORT ? KM_ETOOBIG : KM_OK;
}

/* Delivers one complete line (trailing '\r' stripped; empty lines are not delivered). */
static km_status deliver(km_lines *l, const char *line, size_t n)
{
    if (n > 0 && line[n - 1] == '\r')
        n--;
    if (n == 0)
        return KM_OK;
    l->st.lines++;
    return l->fn(line, n, l->user);
}

km_status km_lines_feed(km_lines *l, const char *data, size_t len)
{
    const char *p = data, *end = data + len;
    l->st.bytes_fed += len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t seg = (size_t)((nl ? nl : end) - p);
        l->st.bytes_scanned += nl ? seg + 1 : seg;
        if (l->discarding) {
            if (!nl)
                return KM_OK;
            l->discarding = 0;
            p = nl + 1;
            continue;
        }
        if (!nl) { /* a partial line: carry it over */
            if (seg > l->max_line - l->buf.len)
                return oversized(l, 0);
            km_status st = km_buf_append(&l->buf, p, seg);
            if (st != KM_OK) { /* out of memory: drop this line */
                km_buf_reset(&l->buf);
                l->discarding = 1;
                return st;
            }
            l->st.bytes_copied += seg;
            return KM_OK;
        }
        km_status st;
        if (l->buf.len == 0) { /* the whole line is in this chunk: no copy */
            if (seg > l->max_line)
                st = oversized(l, 1);
            else
                st = deliver(l, p, seg);
        } else if (seg > l->max_line - l->buf.len) {
            st = oversized(l, 1);
        } else {
            st = km_buf_append(&l->buf, p, seg);
            if (st == KM_OK) {
                l->st.bytes_copied += seg;
                st = deliver(l, l->buf.data, l->buf.len);
            }
            km_buf_reset(&l->buf);
        }
        p = nl + 1;
        if (st != KM_OK)
            return st;
    }
    return KM_OK;
}

km_status km_lines_finish(km_lines *l, int deliver_last)
{
    km_status st = KM_OK;
    if (deliver_last && !l->discarding && l->buf.len > 0)
        st = deliver(l, l->buf.data, l->buf.len);
    km_lines_reset(l);
    return st;
}
