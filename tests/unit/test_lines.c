/* test_lines.c — the incremental newline splitter: every split offset of the recorded watch
 * streams, byte-at-a-time feeding, no re-scans, zero copies, oversized and malformed lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "watch/event.h"
#include "tests/unit/support/kmtest.h"
#include "watch/lines.h"

static const char *const fixtures[] = {
    "watch-secrets-fixtures-bookmarks.ndjson",
    "watch-secrets-fixtures-http2.ndjson",
    "watch-secrets-fixtures-no-rv.ndjson",
    "watch-secrets-kube-node-lease-bookmarks-70s.ndjson",
    "watch-secrets-rv1-after-compaction.ndjson",
    "watch-secrets-rv280-within-cache-window.ndjson",
    "watch-sendinitialevents-only.ndjson",
};

static char *read_fixture(const char *name, size_t *len)
{
    return kmtest_fixture(name, len);
}

/* Collected lines: offsets into one concatenated buffer. */
typedef struct collect {
    char data[65536];
    size_t used;
    size_t starts[256], lens[256];
    size_t n;
    int parse_each; /* also parse every line as a watch event */
    km_status ret;  /* what the callback returns */
} collect;

static km_status collect_cb(const char *line, size_t len, void *user)
{
    collect *c = user;
    assert_true(c->n < 256);
    assert_true(c->used + len <= sizeof(c->data));
    memcpy(c->data + c->used, line, len);
    c->starts[c->n] = c->used;
    c->lens[c->n] = len;
    c->used += len;
    c->n++;
    if (c->parse_each) {
        km_event ev;
        assert_int_equal(km_event_parse(line, len, &ev, NULL), KM_OK);
        km_event_cleanup(&ev);
    }
    return c->ret;
}

/* The expected lines: split on '\n' by hand (no empty lines in the fixtures). */
static size_t expected_lines(const char *s, size_t n, size_t *starts, size_t *lens)
{
    size_t k = 0, start = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\n') {
            starts[k] = start;
            lens[k] = i - start;
            k++;
            start = i + 1;
        }
    }
    return k;
}

static void assert_same(const collect *c, const char *s, size_t nexp, const size_t *starts,
                        const size_t *lens)
{
    assert_int_equal(c->n, nexp);
    for (size_t i = 0; i < nexp; i++) {
        assert_int_equal(c->lens[i], lens[i]);
        assert_memory_equal(c->data + c->starts[i], s + starts[i], lens[i]);
    }
}

/* Every fixture split into two chunks at every byte offset, and fed one byte at a time: the same
 * lines come out, each exactly once, every byte is scanned exactly once. */
static void test_fixtures_every_offset(void **state)
{
    (void)state;
    static size_t starts[256], lens[256];
    static collect c;
    for (size_t fi = 0; fi < sizeof(fixtures) / sizeof(fixtures[0]); fi++) {
        size_t n;
        char *s = read_fixture(fixtures[fi], &n);
        size_t nexp = expected_lines(s, n, starts, lens);
        assert_true(nexp > 0);
        for (size_t k = 0; k <= n; k++) {
            memset(&c, 0, sizeof(c));
            c.parse_each = (k % 97) == 0; /* parse a sample of the splits too */
            km_lines *l = NULL;
            assert_int_equal(km_lines_new(0, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
            assert_int_equal(km_lines_feed(l, s, k), KM_OK);
            assert_int_equal(km_lines_feed(l, s + k, n - k), KM_OK);
            assert_int_equal(km_lines_pending(l), 0);
            km_lines_stats st;
            km_lines_stats_get(l, &st);
            assert_int_equal(st.lines, nexp);
            assert_int_equal(st.bytes_fed, n);
            assert_int_equal(st.bytes_scanned, n); /* no byte searched twice */
            /* Only the line split by the cut is copied, and only its bytes. */
            size_t split_len = 0;
            for (size_t i = 0; i < nexp; i++)
                if (k > starts[i] && k <= starts[i] + lens[i])
                    split_len = lens[i];
            assert_int_equal(st.bytes_copied, split_len);
            assert_same(&c, s, nexp, starts, lens);
            km_lines_free(l);
        }
        /* one byte at a time */
        memset(&c, 0, sizeof(c));
        c.parse_each = 1;
        km_lines *l = NULL;
        assert_int_equal(km_lines_new(0, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(km_lines_feed(l, s + i, 1), KM_OK);
        km_lines_stats st;
        km_lines_stats_get(l, &st);
        assert_int_equal(st.bytes_scanned, n);
        assert_same(&c, s, nexp, starts, lens);
        km_lines_free(l);
        free(s);
    }
}

/* A whole stream in one chunk is delivered without copying anything. */
static void test_zero_copy_whole_chunk(void **state)
{
    (void)state;
    static collect c;
    memset(&c, 0, sizeof(c));
    size_t n;
    char *s = read_fixture(fixtures[2], &n);
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(0, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
    assert_int_equal(km_lines_feed(l, s, n), KM_OK);
    km_lines_stats st;
    km_lines_stats_get(l, &st);
    assert_int_equal(st.bytes_copied, 0);
    assert_int_equal(st.lines, 6);
    km_lines_free(l);
    free(s);
}

static void test_oversized_abort(void **state)
{
    (void)state;
    static collect c;
    memset(&c, 0, sizeof(c));
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(10, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
    /* exactly at the limit is fine */
    assert_int_equal(km_lines_feed(l, "0123456789\n", 11), KM_OK);
    assert_int_equal(c.n, 1);
    /* over the limit inside one chunk */
    assert_int_equal(km_lines_feed(l, "0123456789A\nok\n", 15), KM_ETOOBIG);
    assert_int_equal(c.n, 1);
    km_lines_reset(l);
    /* over the limit across chunks: detected before buffering past the limit */
    assert_int_equal(km_lines_feed(l, "01234", 5), KM_OK);
    assert_int_equal(km_lines_pending(l), 5);
    assert_int_equal(km_lines_feed(l, "567890", 6), KM_ETOOBIG);
    assert_int_equal(km_lines_pending(l), 0);
    km_lines_stats st;
    km_lines_stats_get(l, &st);
    assert_int_equal(st.oversized, 2);
    assert_true(st.bytes_copied <= 10);
    km_lines_reset(l);
    assert_int_equal(km_lines_feed(l, "next\n", 5), KM_OK);
    assert_int_equal(c.n, 2);
    assert_memory_equal(c.data + c.starts[1], "next", 4);
    km_lines_free(l);
}

static void test_oversized_skip(void **state)
{
    (void)state;
    static collect c;
    memset(&c, 0, sizeof(c));
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(8, KM_LINES_SKIP, collect_cb, &c, &l), KM_OK);
    /* a huge line spread over many chunks never grows the buffer past the limit */
    assert_int_equal(km_lines_feed(l, "first\nxxxx", 10), KM_OK);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(km_lines_feed(l, "yyyyyyyyyy", 10), KM_OK);
        assert_true(km_lines_pending(l) <= 8);
    }
    assert_int_equal(km_lines_feed(l, "zz\nsecond\nthird-is-long\nfourth\n", 31), KM_OK);
    assert_int_equal(c.n, 3);
    assert_memory_equal(c.data + c.starts[0], "first", 5);
    assert_memory_equal(c.data + c.starts[1], "second", 6);
    assert_memory_equal(c.data + c.starts[2], "fourth", 6);
    km_lines_stats st;
    km_lines_stats_get(l, &st);
    assert_int_equal(st.oversized, 2);
    assert_int_equal(st.lines, 3);
    km_lines_free(l);
}

/* CRLF endings are stripped, empty lines skipped, a callback error stops the feed. */
static void test_crlf_empty_and_callback_error(void **state)
{
    (void)state;
    static collect c;
    memset(&c, 0, sizeof(c));
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(0, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
    assert_int_equal(km_lines_feed(l, "a\r\n\n\r\nb\n", 8), KM_OK);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.lens[0], 1);
    assert_int_equal(c.lens[1], 1);
    c.ret = KM_ECANCELED;
    assert_int_equal(km_lines_feed(l, "c\nd\n", 4), KM_ECANCELED);
    assert_int_equal(c.n, 3); /* "d" was not delivered */
    km_lines_free(l);
}

static void test_finish(void **state)
{
    (void)state;
    static collect c;
    memset(&c, 0, sizeof(c));
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(0, KM_LINES_ABORT, collect_cb, &c, &l), KM_OK);
    assert_int_equal(km_lines_feed(l, "{\"type\":\"ADD", 12), KM_OK);
    assert_int_equal(km_lines_finish(l, 0), KM_OK); /* cut stream: dropped */
    assert_int_equal(c.n, 0);
    assert_int_equal(km_lines_pending(l), 0);
    assert_int_equal(km_lines_feed(l, "tail", 4), KM_OK);
    assert_int_equal(km_lines_finish(l, 1), KM_OK);
    assert_int_equal(c.n, 1);
    assert_memory_equal(c.data, "tail", 4);
    km_lines_free(l);
}

/* Malformed lines are delivered as lines (the event parser rejects them) and do not disturb the
 * lines around them, whatever the split. */
static km_status parse_count_cb(const char *line, size_t len, void *user)
{
    int *counts = user;
    km_event ev;
    if (km_event_parse(line, len, &ev, NULL) == KM_OK) {
        counts[0]++;
        km_event_cleanup(&ev);
    } else {
        counts[1]++;
    }
    return KM_OK;
}

static void test_malformed_lines(void **state)
{
    (void)state;
    const char *s = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
                    "{\"type\":\"ADDED\",\"object\":{\"metad\n"
                    "not json at all\n"
                    "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n";
    size_t n = strlen(s);
    for (size_t k = 0; k <= n; k++) {
        int counts[2] = {0, 0};
        km_lines *l = NULL;
        assert_int_equal(km_lines_new(0, KM_LINES_ABORT, parse_count_cb, counts, &l), KM_OK);
        assert_int_equal(km_lines_feed(l, s, k), KM_OK);
        assert_int_equal(km_lines_feed(l, s + k, n - k), KM_OK);
        assert_int_equal(counts[0], 2);
        assert_int_equal(counts[1], 2);
        km_lines_free(l);
    }
}

static void test_invalid_args(void **state)
{
    (void)state;
    km_lines *l = NULL;
    assert_int_equal(km_lines_new(0, KM_LINES_ABORT, NULL, NULL, &l), KM_EINVAL);
    assert_null(l);
    km_lines_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_every_offset),
        cmocka_unit_test(test_zero_copy_whole_chunk),
        cmocka_unit_test(test_oversized_abort),
        cmocka_unit_test(test_oversized_skip),
        cmocka_unit_test(test_crlf_empty_and_callback_error),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_invalid_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
