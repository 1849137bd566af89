/* test_pem.c — reconcilers/pem: bundle parsing and the CA keep/remove matrix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/json.h"
#include "reconcilers/extauth/pem.h"
#include "tests/unit/support/kmtest.h"
#include "tests/unit/support/testpki.h"

#define DAY 86400L

static const time_t NOW = 1795680000; /* 2026-11-26 */

/* Concatenated PEM of the given certificates. */
static char *bundle_text(X509 **certs, size_t n)
{
    km_buf b;
    km_buf_init(&b, 0);
    for (size_t i = 0; i < n; i++) {
        char *p = testpki_cert_pem(certs[i]);
        assert_int_equal(km_buf_puts(&b, p), KM_OK);
        free(p);
    }
    return km_buf_take(&b);
}

static km_pem_bundle *parse_ok(const char *text)
{
    km_pem_bundle *b = NULL;
    km_err err;
    km_status st = km_pem_parse(text, strlen(text), &b, &err);
    if (st != KM_OK)
        fail_msg("parse: %s", err.message);
    assert_non_null(b);
    return b;
}

static km_pem_bundle *parse_certs(X509 **certs, size_t n)
{
    char *t = bundle_text(certs, n);
    km_pem_bundle *b = parse_ok(t);
    free(t);
    return b;
}

/* Decides b and returns the verdict names joined by ',' (static buffer). */
static const char *decide(const km_pem_bundle *b, const km_pem_policy *p)
{
    static char out[256];
    km_pem_verdict v[16];
    assert_true(km_pem_count(b) <= 16);
    assert_int_equal(km_pem_decide(b, p, v, NULL), KM_OK);
    out[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < km_pem_count(b); i++)
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", i ? "," : "",
                              km_pem_verdict_name(v[i]));
    return out;
}

static void test_old_and_new(void **state)
{
    (void)state;
    X509 *c[2];
    c[0] = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 2);
    assert_int_equal(km_pem_count(b), 2);
    assert_string_equal(km_pem_subject(b, 0), "CN=kubernetes");
    assert_int_equal(km_pem_not_before(b, 1), NOW - 1 * DAY);
    km_pem_policy p = {.now = NOW};
    assert_string_equal(decide(b, &p), "superseded,latest");
    /* Same result in the other order: notBefore decides, not the position. */
    X509 *r[2] = {c[1], c[0]};
    km_pem_bundle *b2 = parse_certs(r, 2);
    assert_string_equal(decide(b2, &p), "latest,superseded");

    km_pem_verdict v[2];
    assert_int_equal(km_pem_decide(b, &p, v, NULL), KM_OK);
    km_buf out;
    km_buf_init(&out, 0);
    assert_int_equal(km_pem_encode_kept(b, v, &out), KM_OK);
    char *newpem = testpki_cert_pem(c[1]);
    assert_string_equal(km_buf_str(&out), newpem);
    free(newpem);
    km_buf_cleanup(&out);
    km_pem_free(b);
    km_pem_free(b2);
    X509_free(c[0]);
    X509_free(c[1]);
}

static void test_expired(void **state)
{
    (void)state;
    X509 *c[2];
    c[0] = testpki_ca("CN=old-foreign", NOW - 800 * DAY, NOW - 1 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 2);
    km_pem_policy p = {.now = NOW};
    assert_string_equal(decide(b, &p), "expired,latest");
    /* An expired newer certificate supersedes nothing. */
    X509 *d[2];
    d[0] = testpki_ca("CN=x", NOW - 800 * DAY, NOW + 100 * DAY, NULL);
    d[1] = testpki_ca("CN=x", NOW - 400 * DAY, NOW - 10 * DAY, NULL);
    km_pem_bundle *b2 = parse_certs(d, 2);
    assert_string_equal(decide(b2, &p), "latest,expired");
    km_pem_free(b);
    km_pem_free(b2);
    for (int i = 0; i < 2; i++) {
        X509_free(c[i]);
        X509_free(d[i]);
    }
}

static void test_foreign_kept(void **state)
{
    (void)state;
    X509 *c[3];
    c[0] = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=corp-root,O=Example", NOW - 900 * DAY, NOW + 3000 * DAY, NULL);
    c[2] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 3);
    assert_string_equal(km_pem_subject(b, 1), "O=Example,CN=corp-root");
    km_pem_policy p = {.now = NOW};
    assert_string_equal(decide(b, &p), "superseded,latest,latest");
    km_pem_free(b);
    for (int i = 0; i < 3; i++)
        X509_free(c[i]);
}

static void test_pinned(void **state)
{
    (void)state;
    X509 *c[3];
    c[0] = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    c[2] = testpki_ca("CN=gone", NOW - 400 * DAY, NOW - DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 3);
    char *fp_colons = testpki_fingerprint(c[0], 1);
    char *fp_exp = testpki_fingerprint(c[2], 0);
    char n1[65], n2[65];
    assert_int_equal(km_pem_fingerprint_normalize(fp_colons, n1), KM_OK);
    assert_int_equal(km_pem_fingerprint_normalize(fp_exp, n2), KM_OK);
    assert_string_equal(n1, km_pem_fingerprint(b, 0));
    assert_true(km_pem_contains(b, n2));
    const char *pins[] = {n1, n2};
    km_pem_policy p = {.now = NOW, .pinned = pins, .npinned = 2};
    assert_string_equal(decide(b, &p), "pinned,latest,pinned");
    km_pem_policy unpinned = {.now = NOW};
    assert_string_equal(decide(b, &unpinned), "superseded,latest,expired");
    free(fp_colons);
    free(fp_exp);
    km_pem_free(b);
    for (int i = 0; i < 3; i++)
        X509_free(c[i]);
}

static void test_current_kept(void **state)
{
    (void)state;
    X509 *c[2];
    c[0] = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 2);
    /* The current CA is the OLDER one (e.g. a newer CA was added by someone else). */
    km_pem_bundle *cur = parse_certs(&c[0], 1);
    km_pem_policy p = {.now = NOW, .current = cur};
    assert_string_equal(decide(b, &p), "current,latest");
    km_pem_free(cur);
    cur = parse_certs(&c[1], 1);
    p.current = cur;
    assert_string_equal(decide(b, &p), "superseded,current");
    km_pem_free(cur);
    km_pem_free(b);
    X509_free(c[0]);
    X509_free(c[1]);
}

static void test_same_second_tie(void **state)
{
    (void)state;
    X509 *c[2];
    c[0] = testpki_ca("CN=kubernetes", NOW - DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - DAY, NOW + 3000 * DAY, NULL);
    km_pem_bundle *b = parse_certs(c, 2);
    /* Without a current CA nothing tells them apart: both stay. */
    km_pem_policy p = {.now = NOW};
    assert_string_equal(decide(b, &p), "latest,latest");
    /* The current CA wins the tie. */
    km_pem_bundle *cur = parse_certs(&c[1], 1);
    p.current = cur;
    assert_string_equal(decide(b, &p), "superseded,current");
    km_pem_free(cur);
    km_pem_free(b);
    X509_free(c[0]);
    X509_free(c[1]);
}

static void test_order_preserved(void **state)
{
    (void)state;
    X509 *c[5];
    c[0] = testpki_ca("CN=a", NOW - 900 * DAY, NOW + 3000 * DAY, NULL);
    c[1] = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + 3000 * DAY, NULL);
    c[2] = testpki_ca("CN=b", NOW - 900 * DAY, NOW - 2 * DAY, NULL);
    c[3] = testpki_ca("CN=c", NOW - 900 * DAY, NOW + 3000 * DAY, NULL);
    c[4] = testpki_ca("CN=kubernetes", NOW - 1 * DAY, NOW + 3000 * DAY, NULL);
    /* Blank lines and CRLF around blocks are fine. */
    char *p0 = testpki_cert_pem(c[0]);
    char *rest_txt = bundle_text(c + 1, 4);
    size_t tl = strlen(p0) + strlen(rest_txt) + 16;
    char *text = malloc(tl);
    snprintf(text, tl, "\n\r\n%s\n%s\n\n", p0, rest_txt);
    km_pem_bundle *b = parse_ok(text);
    assert_int_equal(km_pem_count(b), 5);
    km_pem_policy p = {.now = NOW};
    km_pem_verdict v[5];
    assert_int_equal(km_pem_decide(b, &p, v, NULL), KM_OK);
    km_buf out;
    km_buf_init(&out, 0);
    assert_int_equal(km_pem_encode_kept(b, v, &out), KM_OK);
    X509 *want[] = {c[0], c[3], c[4]};
    char *want_txt = bundle_text(want, 3);
    assert_string_equal(km_buf_str(&out), want_txt);
    /* The result parses back to the kept certificates; nothing more to remove. */
    km_pem_bundle *again = parse_ok(km_buf_str(&out));
    assert_string_equal(decide(again, &p), "latest,latest,latest");
    km_pem_free(again);
    free(want_txt);
    km_buf_cleanup(&out);
    free(p0);
    free(rest_txt);
    free(text);
    km_pem_free(b);
    for (int i = 0; i < 5; i++)
        X509_free(c[i]);
}

static void test_refuse_empty(void **state)
{
    (void)state;
    X509 *c = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW - DAY, NULL);
    km_pem_bundle *b = parse_certs(&c, 1);
    km_pem_policy p = {.now = NOW};
    km_pem_verdict v[1] = {KM_PEM_KEEP_PINNED};
    km_err err;
    assert_int_equal(km_pem_decide(b, &p, v, &err), KM_ESTATE);
    assert_int_equal(v[0], KM_PEM_KEEP_PINNED); /* untouched */
    assert_non_null(strstr(err.message, "all"));
    km_pem_free(b);
    /* An empty bundle: zero certificates, nothing to decide. */
    b = parse_ok(" \n");
    assert_int_equal(km_pem_count(b), 0);
    assert_int_equal(km_pem_decide(b, &p, v, NULL), KM_OK);
    km_pem_free(b);
    X509_free(c);
}

static void test_malformed(void **state)
{
    (void)state;
    X509 *c = testpki_ca("CN=kubernetes", NOW - 400 * DAY, NOW + DAY, NULL);
    char *good = testpki_cert_pem(c);
    char buf[8192];
    const char *bad[8];
    int nb = 0;
    bad[nb++] = "hello";
    /* Text after a valid block. */
    snprintf(buf, sizeof(buf), "%sjunk\n", good);
    char *after = strdup(buf);
    bad[nb++] = after;
    /* Unterminated block. */
    char *trunc = strdup(good);
    trunc[strlen(trunc) - 10] = '\0';
    bad[nb++] = trunc;
    /* Corrupted base64 body. */
    char *corrupt = strdup(good);
    memcpy(corrupt + 40, "!!!!", 4);
    bad[nb++] = corrupt;
    /* Another block type. */
    bad[nb++] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    /* A BEGIN before the previous END. */
    snprintf(buf, sizeof(buf), "-----BEGIN CERTIFICATE-----\n%s", good);
    char *nested = strdup(buf);
    bad[nb++] = nested;
    for (int i = 0; i < nb; i++) {
        km_pem_bundle *b = NULL;
        km_err err;
        km_err_clear(&err);
        assert_int_equal(km_pem_parse(bad[i], strlen(bad[i]), &b, &err), KM_EPARSE);
        assert_null(b);
        assert_non_null(strstr(err.message, "PEM"));
    }
    free(after);
    free(trunc);
    free(corrupt);
    free(nested);
    free(good);
    X509_free(c);

    char out[65] = "unchanged";
    assert_int_equal(km_pem_fingerprint_normalize("abc", out), KM_EINVAL);
    assert_int_equal(km_pem_fingerprint_normalize(
                         "zz99:68:A0:9F:06:18:48:BE:4F:46:5F:51:C9:86:1B:EE:75:C7:72:97:94:1A:C5:"
                         "03:28:F2:1D:BB:0B:53:D6",
                         out),
                     KM_EINVAL);
    assert_string_equal(out, "unchanged");
}

/* The recorded seed state: old + new CA with the same subject in both bundles. */
static void test_fixture(void **state)
{
    (void)state;
    char *text = kmtest_fixture("get-configmap-extension-apiserver-authentication.json", NULL);
    char *after =
        kmtest_fixture("get-configmap-extension-apiserver-authentication-after-put.json", NULL);
    cJSON *cm = cJSON_Parse(text);
    cJSON *cm2 = cJSON_Parse(after);
    const char *client = KM_JSON_STR(cm, "data", "client-ca-file");
    const char *rh = KM_JSON_STR(cm, "data", "requestheader-client-ca-file");
    assert_non_null(client);
    km_pem_bundle *b = parse_ok(client);
    assert_int_equal(km_pem_count(b), 2);
    char old_fp[65];
    assert_int_equal(
        km_pem_fingerprint_normalize("25:99:68:A0:9F:06:18:48:BE:4F:46:5F:51:C9:86:1B:EE:75:C7:72:"
                                     "97:94:1A:C5:03:28:F2:1D:BB:0B:53:D6",
                                     old_fp),
        KM_OK);
    assert_string_equal(km_pem_fingerprint(b, 0), old_fp);
    assert_string_equal(km_pem_subject(b, 0), "CN=kubernetes");
    /* The recording's clock: 2026-11-26T09:53Z. */
    km_pem_policy p = {.now = 1795686780};
    assert_string_equal(decide(b, &p), "superseded,latest");
    km_pem_verdict v[2];
    assert_int_equal(km_pem_decide(b, &p, v, NULL), KM_OK);
    km_buf out;
    km_buf_init(&out, 0);
    assert_int_equal(km_pem_encode_kept(b, v, &out), KM_OK);
    /* Exactly what the recorded PUT with only the new certificate held. */
    assert_string_equal(km_buf_str(&out), KM_JSON_STR(cm2, "data", "client-ca-file"));
    km_buf_cleanup(&out);

    km_pem_bundle *b2 = parse_ok(rh);
    assert_string_equal(decide(b2, &p), "superseded,latest");
    assert_string_equal(km_pem_subject(b2, 0), "CN=front-proxy-ca");
    km_pem_free(b2);
    km_pem_free(b);
    cJSON_Delete(cm);
    cJSON_Delete(cm2);
    free(text);
    free(after);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_old_and_new),     cmocka_unit_test(test_expired),
        cmocka_unit_test(test_foreign_kept),    cmocka_unit_test(test_pinned),
        cmocka_unit_test(test_current_kept),    cmocka_unit_test(test_same_second_tie),
        cmocka_unit_test(test_order_preserved), cmocka_unit_test(test_refuse_empty),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
