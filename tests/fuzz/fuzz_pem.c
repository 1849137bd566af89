/* fuzz_pem.c — CA bundles (reconcilers/extauth/pem.h): parse, fingerprints, and the pure
 * keep/remove decision of the extension-apiserver-authentication step.
 *
 * Input: bundle NUL current CA bundle NUL pinned fingerprint NUL now (decimal seconds; absent =
 * 2026-11-26).  Checked: a parsed bundle's accessors answer (64 hex digit fingerprints, subjects,
 * blocks that parse alone to the same fingerprint); the decision never removes every certificate
 * (KM_ESTATE instead), keeps every current CA and pinned certificate, and what it keeps re-encodes
 * to a bundle of exactly the kept certificates. */
#include <stdlib.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"
#include "reconcilers/extauth/pem.h"
#include "tests/fuzz/fuzz.h"

static km_pem_bundle *parse(const char *s, size_t n)
{
    char *copy = fuzz_exact(s, n);
    km_pem_bundle *b = (km_pem_bundle *)&n; /* a sentinel: must stay on failure */
    km_err err = {0};
    km_status st = km_pem_parse(copy, n, &b, &err);
    free(copy);
    if (st != KM_OK) {
        FUZZ_CHECK(b == (km_pem_bundle *)&n);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        return NULL;
    }
    FUZZ_CHECK(b != NULL);
    for (size_t i = 0; i < km_pem_count(b); i++) {
        const char *fp = km_pem_fingerprint(b, i);
        FUZZ_CHECK(fp && strlen(fp) == 64 && strspn(fp, "0123456789abcdef") == 64);
        FUZZ_CHECK(km_pem_contains(b, fp));
        FUZZ_CHECK(km_pem_subject(b, i) != NULL);
        size_t len = 0;
        const char *blk = km_pem_block(b, i, &len);
        FUZZ_CHECK(blk != NULL && len > 0);
    }
    return b;
}

static void decide(const km_pem_bundle *b, const km_pem_bundle *cur, const char *pin, time_t now)
{
    size_t n = km_pem_count(b);
    char norm[65];
    const char *pinned[1] = {norm};
    int have_pin = km_pem_fingerprint_normalize(pin, norm) == KM_OK;
    if (have_pin)
        FUZZ_CHECK(strlen(norm) == 64);
    km_pem_policy p = {.current = cur, .pinned = pinned, .npinned = have_pin ? 1 : 0, .now = now};
    km_pem_verdict *v = calloc(n ? n : 1, sizeof(*v));
    FUZZ_CHECK(v != NULL);
    km_err err = {0};
    km_status st = km_pem_decide(b, &p, v, &err);
    if (st != KM_OK) {
        FUZZ_CHECK(st == KM_ESTATE && n > 0);
        free(v);
        return;
    }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const char *fp = km_pem_fingerprint(b, i);
        FUZZ_CHECK(v[i] >= KM_PEM_KEEP && v[i] <= KM_PEM_REMOVE_SUPERSEDED);
        if (cur && km_pem_contains(cur, fp))
            FUZZ_CHECK(v[i] == KM_PEM_KEEP_CURRENT);
        else if (have_pin && strcmp(fp, norm) == 0)
            FUZZ_CHECK(v[i] == KM_PEM_KEEP_PINNED);
        if (km_pem_verdict_removes(v[i]))
            FUZZ_CHECK(!(cur && km_pem_contains(cur, fp)));
        else
            kept++;
    }
    FUZZ_CHECK(n == 0 || kept > 0);
    km_buf out;
    km_buf_init(&out, 0);
    FUZZ_CHECK(km_pem_encode_kept(b, v, &out) == KM_OK);
    km_pem_bundle *again = parse(out.data ? out.data : "", out.len);
    FUZZ_CHECK(again != NULL && km_pem_count(again) == kept);
    for (size_t i = 0; i < n; i++)
        if (!km_pem_verdict_removes(v[i]))
            FUZZ_CHECK(km_pem_contains(again, km_pem_fingerprint(b, i)));
    km_pem_free(again);
    km_buf_cleanup(&out);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parts fp;
    if (fuzz_split(data, size, 4, &fp) != 0)
        return 0;
    km_pem_bundle *b = parse(fp.p[0], fp.len[0]);
    km_pem_bundle *cur = fp.len[1] ? parse(fp.p[1], fp.len[1]) : NULL;
    time_t now = fp.len[3] ? (time_t)strtoll(fp.p[3], NULL, 10) : (time_t)1795600000;
    if (b)
        decide(b, cur, fp.p[2], now);
    km_pem_free(cur);
    km_pem_free(b);
    fuzz_parts_free(&fp);
    return 0;
}
