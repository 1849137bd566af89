/* fuzz.h — what the libFuzzer targets of tests/fuzz share.
 *
 * Every fuzz_<name>.c defines LLVMFuzzerTestOneInput and nothing else public.  It is linked
 * either with libFuzzer (clang -fsanitize=fuzzer, `make fuzz`) or with replay.c (any compiler,
 * `make test-unit` / `make asan`: the checked-in corpus and regression inputs run once each).
 *
 * A target that takes several inputs splits its data at NUL bytes (fuzz_split): JSON, YAML, PEM
 * and tokens hold no NUL, so the seeds are the parts joined with one NUL each.  A target aborts
 * (FUZZ_CHECK) when an invariant of the parser's contract fails: that is a finding like a crash. */
#ifndef KM_FUZZ_H
#define KM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the failed condition: libFuzzer and replay.c report it as a crash. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The parts of an input split at NUL bytes. */
typedef struct fuzz_parts {
    char *buf; /* one copy of the data plus a NUL; each part is NUL-terminated in it */
    size_t n;  /* number of parts found (at most FUZZ_MAX_PARTS; the last keeps any NULs) */
    const char *p[8];
    size_t len[8];
} fuzz_parts;
#define FUZZ_MAX_PARTS 8

/* Splits data into at most max parts (max <= FUZZ_MAX_PARTS); parts not present are "" (length
 * 0).  Returns 0, or -1 when out of memory (fp then holds nothing to free).  Frees with
 * fuzz_parts_free. */
static inline int fuzz_split(const uint8_t *data, size_t size, size_t max, fuzz_parts *fp)
{
    memset(fp, 0, sizeof(*fp));
    fp->buf = malloc(size + 1);
    if (!fp->buf)
        return -1;
    if (size)
        memcpy(fp->buf, data, size);
    fp->buf[size] = '\0';
    size_t start = 0;
    for (size_t i = 0; i < max; i++)
        fp->p[i] = fp->buf + size; /* "" */
    for (fp->n = 0; fp->n < max && start <= size; fp->n++) {
        const char *s = fp->buf + start;
        size_t rest = size - start;
        const char *nul = fp->n + 1 < max ? memchr(s, '\0', rest) : NULL;
        size_t l = nul ? (size_t)(nul - s) : rest;
        fp->p[fp->n] = s;
        fp->len[fp->n] = l;
        start += l + 1;
    }
    return 0;
}

static inline void fuzz_parts_free(fuzz_parts *fp)
{
    free(fp->buf);
    fp->buf = NULL;
}

/* An exact-size malloc'ed copy of s (no terminating NUL), so that the sanitizer sees a read past
 * len (a 1-byte buffer for len 0: parsers are given a pointer, never NULL); NULL when out of
 * memory.  Caller frees. */
static inline char *fuzz_exact(const char *s, size_t len)
{
    char *c = malloc(len ? len : 1);
    if (c && len)
        memcpy(c, s, len);
    return c;
}

#endif
