/* fuzz_lines.c — the watch stream's newline splitter (watch/lines.h) against a model.
 *
 * Input: byte 0 = max_line (low 6 bits: 1..63, 0 = 1 MiB) and mode (bit 7: skip, else abort); byte
 * 1 = chunk size (1..17) and whether finish delivers a last partial line (bit 7); the rest is the
 * stream, fed in chunks of that size.  The lines delivered must be exactly those of the model: the
 * '\n'-separated lines, a trailing '\r' stripped, empty ones not delivered, those longer than
 * max_line dropped (skip) or ending the stream with KM_ETOOBIG (abort). */
#include "operator/base/buf.h"
#include "tests/fuzz/fuzz.h"
#include "watch/lines.h"

typedef struct got {
    km_buf lines; /* delivered lines, each followed by '\n' */
} got;

static km_status on_line(const char *line, size_t len, void *user)
{
    got *g = user;
    FUZZ_CHECK(len > 0);
    FUZZ_CHECK(memchr(line, '\n', len) == NULL);
    FUZZ_CHECK(km_buf_append(&g->lines, line, len) == KM_OK);
    FUZZ_CHECK(km_buf_append(&g->lines, "\n", 1) == KM_OK);
    return KM_OK;
}

/* The model: appends what the splitter must deliver to want; returns the expected status of the
 * feeds (KM_ETOOBIG in abort mode at the first oversized line). */
static km_status model(const char *s, size_t n, size_t max, int skip, int last, km_buf *want)
{
    size_t i = 0;
    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);
        size_t seg = nl ? (size_t)(nl - (s + i)) : n - i;
        if (seg > max) {
            if (!skip)
                return KM_ETOOBIG;
        } else if (nl || last) {
            size_t l = seg && s[i + seg - 1] == '\r' ? seg - 1 : seg;
            if (l) {
                FUZZ_CHECK(km_buf_append(want, s + i, l) == KM_OK);
                FUZZ_CHECK(km_buf_append(want, "\n", 1) == KM_OK);
            }
        }
        i += seg + (nl ? 1 : 0);
    }
    return KM_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = (data[0] & 63u) ? (data[0] & 63u) : (size_t)1 << 20;
    int skip = (data[0] & 0x80u) != 0;
    size_t chunk = 1 + data[1] % 17u;
    int last = (data[1] & 0x80u) != 0;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;

    got g;
    km_buf_init(&g.lines, 0);
    km_lines *l = NULL;
    FUZZ_CHECK(km_lines_new(max, skip ? KM_LINES_SKIP : KM_LINES_ABORT, on_line, &g, &l) == KM_OK);
    km_status st = KM_OK;
    for (size_t off = 0; off < n && st == KM_OK; off += chunk) {
        size_t c = n - off < chunk ? n - off : chunk;
        char *piece = fuzz_exact(s + off, c);
        FUZZ_CHECK(piece != NULL);
        st = km_lines_feed(l, piece, c);
        free(piece);
        FUZZ_CHECK(km_lines_pending(l) <= max);
    }
    if (st == KM_OK)
        st = km_lines_finish(l, last);

    km_buf want;
    km_buf_init(&want, 0);
    km_status want_st = model(s, n, max, skip, last, &want);
    FUZZ_CHECK(st == want_st);
    if (st == KM_OK) { /* after KM_ETOOBIG only a prefix was delivered */
        FUZZ_CHECK(g.lines.len == want.len);
        FUZZ_CHECK(g.lines.len == 0 || memcmp(g.lines.data, want.data, want.len) == 0);
    } else {
        FUZZ_CHECK(g.lines.len <= want.len);
        FUZZ_CHECK(g.lines.len == 0 || memcmp(g.lines.data, want.data, g.lines.len) == 0);
    }
    km_lines_stats stats;
    km_lines_stats_get(l, &stats);
    FUZZ_CHECK(stats.bytes_scanned <= stats.bytes_fed);
    km_buf_cleanup(&want);
    km_buf_cleanup(&g.lines);
    km_lines_free(l);
    return 0;
}
