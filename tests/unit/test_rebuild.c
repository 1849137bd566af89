/* test_rebuild.c — the PKI rebuild time from the cluster's CA certificates
 * (reconcilers/recovery/rebuild.h): the cluster CA named by kube-root-ca.crt wins over a newer
 * foreign CA of client-ca-file, the newest of the bundle without it, kube-root-ca.crt or the
 * client's CA alone, the same answer before and after the old CA is removed, and the failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "reconcilers/recovery/rebuild.h"
#include "tests/unit/support/testpki.h"

#define DAY 86400
static const time_t NOW = 1795687200; /* 2026-11-26T10:00:00Z */

static char *ca_pem(const char *subject, time_t not_before)
{
    X509 *x = testpki_ca(subject, not_before, not_before + 3650L * DAY, NULL);
    char *pem = testpki_cert_pem(x);
    X509_free(x);
    return pem;
}

static char *cat(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + (c ? strlen(c) : 0) + 1;
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%s%s%s", a, b, c ? c : "");
    return s;
}

static void test_current_ca_in_the_bundle(void **state)
{
    (void)state;
    char *old = ca_pem("CN=kubernetes", NOW - 400 * DAY);
    char *cur = ca_pem("CN=kubernetes", NOW - 2 * DAY);
    char *foreign = ca_pem("CN=corp-client-ca", NOW - 1 * DAY); /* newer than the rebuild */
    char *bundle = cat(old, cur, foreign);
    km_rebuild r;
    /* kube-root-ca.crt names the cluster CA: its notBefore, not the newer foreign CA's */
    assert_int_equal(km_rebuild_choose(bundle, cur, NULL, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 2 * DAY);
    assert_non_null(
        strstr(r.source, "client-ca-file, the cluster CA of kube-system/kube-root-ca.crt"));
    assert_non_null(strstr(r.source, "CN=kubernetes"));
    /* the client's CA does not choose within the bundle (it may be an old serving CA) */
    assert_int_equal(km_rebuild_choose(bundle, NULL, old, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 1 * DAY);
    /* nothing names the cluster CA (1.19): the newest of the bundle */
    assert_int_equal(km_rebuild_choose(bundle, NULL, NULL, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 1 * DAY);
    assert_non_null(strstr(r.source, "its newest"));
    /* a kube-root-ca.crt that is not in the bundle (not refreshed yet): the newest of the bundle */
    char *other = ca_pem("CN=kubernetes", NOW - 3 * DAY);
    char *two = cat(old, cur, NULL);
    assert_int_equal(km_rebuild_choose(two, other, NULL, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 2 * DAY);
    /* old + new as after a rebuild, kube-root-ca.crt = new: the new CA's notBefore */
    assert_int_equal(km_rebuild_choose(two, cur, old, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 2 * DAY);
    free(two);
    free(other);
    free(bundle);
    free(old);
    free(cur);
    free(foreign);
}

/* The bundle after the extensionApiserverAuthentication step removed the old CA: the same time
 * (the derivation is stable across runs, so run --once after a crash judges pods the same). */
static void test_stable_after_cleanup(void **state)
{
    (void)state;
    char *old = ca_pem("CN=kubernetes", NOW - 400 * DAY);
    char *cur = ca_pem("CN=kubernetes", NOW - 2 * DAY);
    char *before = cat(old, cur, NULL);
    km_rebuild a, b, c;
    assert_int_equal(km_rebuild_choose(before, cur, NULL, &a, NULL), KM_OK);
    assert_int_equal(km_rebuild_choose(cur, cur, NULL, &b, NULL), KM_OK);
    assert_int_equal(km_rebuild_choose(before, NULL, NULL, &c, NULL), KM_OK);
    assert_int_equal(a.at, b.at);
    assert_int_equal(a.at, c.at);
    free(before);
    free(old);
    free(cur);
}

static void test_without_client_ca(void **state)
{
    (void)state;
    char *root = ca_pem("CN=kubernetes", NOW - 5 * DAY);
    char *own = ca_pem("CN=kubernetes", NOW - 6 * DAY);
    km_rebuild r = {.at = 42};
    assert_int_equal(km_rebuild_choose(NULL, root, own, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 5 * DAY);
    assert_non_null(strstr(r.source, "kube-root-ca.crt"));
    assert_int_equal(km_rebuild_choose("", NULL, own, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 6 * DAY);
    assert_non_null(strstr(r.source, "the client's CA"));
    /* nothing at all: KM_ENOTFOUND, output untouched */
    km_err e;
    r.at = 42;
    assert_int_equal(km_rebuild_choose(NULL, NULL, NULL, &r, &e), KM_ENOTFOUND);
    assert_int_equal(r.at, 42);
    assert_non_null(strstr(e.message, "client-ca-file"));
    /* a client-ca-file that is not PEM and nothing else: KM_EPARSE */
    assert_int_equal(km_rebuild_choose("garbage", NULL, NULL, &r, &e), KM_EPARSE);
    assert_int_equal(r.at, 42);
    /* ... but kube-root-ca.crt still tells */
    assert_int_equal(km_rebuild_choose("garbage", root, NULL, &r, NULL), KM_OK);
    assert_int_equal(r.at, NOW - 5 * DAY);
    free(root);
    free(own);
}

/* The CA itself (what kube-public/cluster-info must hold): the same certificate the time is
 * read from, as its PEM block. */
static void test_current_ca_pem(void **state)
{
    (void)state;
    char *old = ca_pem("CN=kubernetes", NOW - 400 * DAY);
    char *cur = ca_pem("CN=kubernetes", NOW - 2 * DAY);
    char *foreign = ca_pem("CN=corp-client-ca", NOW - 1 * DAY);
    char *bundle = cat(old, cur, foreign);
    char *pem = NULL;
    assert_int_equal(km_rebuild_choose_ca(bundle, cur, NULL, &pem, NULL), KM_OK);
    assert_string_equal(pem, cur);
    free(pem);
    pem = NULL;
    assert_int_equal(km_rebuild_choose_ca(NULL, NULL, old, &pem, NULL), KM_OK);
    assert_string_equal(pem, old);
    free(pem);
    pem = NULL;
    assert_int_equal(km_rebuild_choose_ca(NULL, NULL, NULL, &pem, NULL), KM_ENOTFOUND);
    assert_null(pem);
    free(old);
    free(cur);
    free(foreign);
    free(bundle);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_current_ca_in_the_bundle),
        cmocka_unit_test(test_stable_after_cleanup),
        cmocka_unit_test(test_without_client_ca),
        cmocka_unit_test(test_current_ca_pem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
