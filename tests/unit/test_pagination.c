/* test_pagination.c — km_kube_list paging, the 410 restart, and the retry / 401 policy of
 * km_kube_do, over an injected transport (no network). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/kube/kube.h"
#include "operator/base/log.h"
#include "tests/unit/support/kmtest.h"

#define MAXQ 16

/* A scripted transport: replies in order; records each request. */
typedef struct script {
    struct {
        long code;
        long retry_after;
        int transport_error; /* 1 = KM_ETRANSPORT */
        int toobig;          /* 1 = KM_ETOOBIG (the response cap) */
        int sent;
        const char *body;
    } r[MAXQ];
    int n, next;
    char paths[MAXQ][512];
    char methods[MAXQ][8];
    char tokens[MAXQ][64];
} script;

static km_status fake(const km_kube_req *req, const char *token, km_kube_reply *reply, km_buf *body,
                      km_err *err, void *user)
{
    script *s = user;
    assert_true(s->next < s->n);
    int i = s->next++;
    snprintf(s->paths[i], sizeof(s->paths[i]), "%s", req->path);
    snprintf(s->methods[i], sizeof(s->methods[i]), "%s", req->method);
    snprintf(s->tokens[i], sizeof(s->tokens[i]), "%s", token ? token : "");
    reply->retry_after = s->r[i].retry_after;
    reply->sent = s->r[i].sent;
    if (s->r[i].toobig)
        return km_err_set(err, KM_ETOOBIG, "response larger than the cap");
    if (s->r[i].transport_error) {
        reply->transient = 1;
        return km_err_set(err, KM_ETRANSPORT, "connection refused");
    }
    reply->code = s->r[i].code;
    km_buf_puts(body, s->r[i].body ? s->r[i].body : "");
    return KM_OK;
}

static void add(script *s, long code, const char *body)
{
    s->r[s->n].code = code;
    s->r[s->n].body = body;
    s->r[s->n].sent = 1;
    s->n++;
}

typedef struct fixture {
    char dir[PATH_MAX];
    char tokpath[PATH_MAX];
    km_kubeconfig *cfg;
    km_kube *k;
    script s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    char kc[PATH_MAX];
    kmtest_mkdtemp(f->dir, sizeof(f->dir));
    kmtest_write(f->dir, "token", "tok-1\n", f->tokpath);
    kmtest_write(f->dir, "config",
                 "current-context: c\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                 "users: [{name: u, user: {tokenFile: token}}]\n"
                 "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
                 kc);
    km_err e;
    assert_int_equal(km_kubeconfig_from_file(kc, NULL, &f->cfg, &e), KM_OK);
    km_kubeconfig_set_token_recheck(f->cfg, 3600);
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.qps = 0;
    o.backoff_initial = 0.001;
    o.backoff_max = 0.002;
    o.retry_after_max = 0.001;
    o.max_retries = 3;
    assert_int_equal(km_kube_new(f->cfg, &o, &f->k, &e), KM_OK);
    km_kube_set_transport(f->k, fake, &f->s);
    kmtest_log_start();
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kmtest_log_stop();
    km_kube_free(f->k);
    km_kubeconfig_free(f->cfg);
    kmtest_rmdir(f->dir);
    free(f);
    return 0;
}

typedef struct pages {
    int n;
    char names[8][64];
    int restarted[8];
    long remaining[8];
    int stop_at; /* page number (1-based) whose callback fails, 0 = never */
} pages;

static km_status on_page(const km_kube_page *p, void *user)
{
    pages *pg = user;
    const cJSON *it;
    char *o = pg->names[pg->n];
    o[0] = '\0';
    cJSON_ArrayForEach(it, p->items)
    {
        strncat(o, KM_JSON_STR(it, "metadata", "name"), 8);
    }
    pg->restarted[pg->n] = p->restarted;
    pg->remaining[pg->n] = p->remaining;
    pg->n++;
    return pg->stop_at == pg->n ? KM_ECANCELED : KM_OK;
}

#define PAGE1                                                                                      \
    "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"c/1\",\"remainingItemCount\":2},"     \
    "\"items\":[{\"metadata\":{\"name\":\"a\"}},{\"metadata\":{\"name\":\"b\"}}]}"
#define PAGE2                                                                                      \
    "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":[{\"metadata\":{\"name\":\"c\"}}]}"
#define EXPIRED                                                                                    \
    "{\"kind\":\"Status\",\"metadata\":{\"continue\":\"x\"},\"status\":\"Failure\",\"message\":"   \
    "\"too old\",\"reason\":\"Expired\",\"code\":410}"

static void test_pages_and_query(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    char *rv = NULL;
    add(&f->s, 200, PAGE1);
    add(&f->s, 200, PAGE2);
    km_list_opts o = {.limit = 2,
                      .label_selector = "app in (a,b)",
                      .field_selector = "x=y&z",
                      .resource_version = "0"};
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", &o, on_page, &pg, &rv, NULL), KM_OK);
    assert_int_equal(pg.n, 2);
    assert_string_equal(pg.names[0], "ab");
    assert_string_equal(pg.names[1], "c");
    assert_int_equal(pg.restarted[0] + pg.restarted[1], 0);
    assert_int_equal(pg.remaining[0], 2);
    assert_int_equal(pg.remaining[1], -1);
    assert_string_equal(rv, "9");
    free(rv);
    assert_string_equal(f->s.paths[0], "/api/v1/secrets?limit=2&labelSelector=app%20in%20%28a%2Cb%"
                                       "29&fieldSelector=x%3Dy%26z&resourceVersion=0");
    assert_string_equal(f->s.paths[1], "/api/v1/secrets?limit=2&labelSelector=app%20in%20%28a%2Cb%"
                                       "29&fieldSelector=x%3Dy%26z&continue=c%2F1");
    assert_string_equal(f->s.tokens[0], "tok-1");
}

static void test_default_limit_and_existing_query(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    add(&f->s, 200, "{\"metadata\":{},\"items\":null}");
    assert_int_equal(km_kube_list(f->k, "/api/v1/pods?x=1", NULL, on_page, &pg, NULL, NULL), KM_OK);
    assert_string_equal(f->s.paths[0], "/api/v1/pods?x=1&limit=500");
    assert_int_equal(pg.n, 1);
    assert_string_equal(pg.names[0], "");
}

static void test_410_restarts_once(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    char *rv = NULL;
    add(&f->s, 200, PAGE1);
    add(&f->s, 410, EXPIRED);
    add(&f->s, 200, PAGE1);
    add(&f->s, 200, PAGE2);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, &rv, NULL), KM_OK);
    assert_int_equal(pg.n, 3);
    assert_int_equal(pg.restarted[0], 0);
    assert_int_equal(pg.restarted[1], 1);
    assert_int_equal(pg.restarted[2], 0);
    assert_null(strstr(f->s.paths[2], "continue"));
    assert_int_equal(kmtest_log_count("restarting the list"), 1);
    free(rv);
}

static void test_second_410_lists_without_pages(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    char *rv = NULL;
    add(&f->s, 200, PAGE1);
    add(&f->s, 410, EXPIRED);
    add(&f->s, 200, PAGE1);
    add(&f->s, 410, EXPIRED);
    add(&f->s, 200,
        "{\"metadata\":{\"resourceVersion\":\"11\"},\"items\":[{\"metadata\":{\"name\":\"a\"}},"
        "{\"metadata\":{\"name\":\"b\"}},{\"metadata\":{\"name\":\"c\"}}]}");
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, &rv, NULL), KM_OK);
    assert_int_equal(pg.n, 3);
    assert_string_equal(pg.names[2], "abc");
    assert_int_equal(pg.restarted[1], 1);
    assert_int_equal(pg.restarted[2], 1); /* the full list repeats what was delivered */
    assert_string_equal(f->s.paths[4], "/api/v1/secrets"); /* no limit, no continue */
    assert_string_equal(rv, "11");
    assert_int_equal(kmtest_log_count("listing without pages"), 1);
    free(rv);
}

static void test_third_410_fails(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    char *rv = (char *)"untouched";
    km_err e;
    add(&f->s, 200, PAGE1);
    add(&f->s, 410, EXPIRED);
    add(&f->s, 200, PAGE1);
    add(&f->s, 410, EXPIRED);
    add(&f->s, 200, PAGE1); /* a server that pages even without a limit */
    add(&f->s, 410, EXPIRED);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, &rv, &e), KM_EAPI);
    assert_int_equal(e.http_code, 410);
    assert_string_equal(e.reason, "Expired");
    assert_string_equal(rv, "untouched");
    assert_int_equal(f->s.next, 6);
}

#define PAGE_LOOP                                                                                  \
    "{\"metadata\":{\"resourceVersion\":\"5\",\"continue\":\"same\"},"                             \
    "\"items\":[{\"metadata\":{\"name\":\"a\"}}]}"

static void test_repeated_continue_token_fails(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    km_err e;
    add(&f->s, 200, PAGE_LOOP);
    add(&f->s, 200, PAGE_LOOP);
    add(&f->s, 200, PAGE_LOOP);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, NULL, &e),
                     KM_ESTATE);
    assert_int_equal(f->s.next, 2);
    assert_int_equal(pg.n, 2);
    assert_non_null(strstr(e.message, "continue token it returned before"));
}

static void test_page_too_big_halves_the_limit(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    km_err e;
    km_list_opts o = {.limit = 8};
    add(&f->s, 200, PAGE1);
    f->s.r[f->s.n++].toobig = 1;
    f->s.r[f->s.n++].toobig = 1;
    add(&f->s, 200, PAGE2);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", &o, on_page, &pg, NULL, &e), KM_OK);
    assert_int_equal(pg.n, 2);
    assert_string_equal(f->s.paths[1], "/api/v1/secrets?limit=8&continue=c%2F1");
    assert_string_equal(f->s.paths[2], "/api/v1/secrets?limit=4&continue=c%2F1");
    assert_string_equal(f->s.paths[3], "/api/v1/secrets?limit=2&continue=c%2F1");
    /* one object larger than the cap: down to limit 1, then a clear error */
    km_list_opts one = {.limit = 2};
    f->s.r[f->s.n++].toobig = 1;
    f->s.r[f->s.n++].toobig = 1;
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", &one, on_page, &pg, NULL, &e),
                     KM_ETOOBIG);
    assert_int_equal(f->s.next, 6);
    assert_non_null(strstr(e.message, "one object exceeds the response cap"));
}

static void test_410_on_first_page_is_an_error(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    km_err e;
    add(&f->s, 410, EXPIRED);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, NULL, &e), KM_EAPI);
    assert_int_equal(pg.n, 0);
    assert_int_equal(f->s.next, 1);
}

static void test_callback_stops(void **state)
{
    fixture *f = *state;
    pages pg = {.stop_at = 1};
    km_err e;
    add(&f->s, 200, PAGE1);
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, NULL, &e),
                     KM_ECANCELED);
    assert_int_equal(f->s.next, 1);
}

static void test_bad_page_json(void **state)
{
    fixture *f = *state;
    pages pg = {0};
    km_err e;
    add(&f->s, 200, "{not json");
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, NULL, &e),
                     KM_EPARSE);
    add(&f->s, 200, "{\"items\":{}}");
    assert_int_equal(km_kube_list(f->k, "/api/v1/secrets", NULL, on_page, &pg, NULL, &e),
                     KM_EPARSE);
    assert_int_equal(pg.n, 0);
}

/* ---- retry policy -------------------------------------------------------------------------- */

static km_status do_req(fixture *f, const char *method, long *code, km_err *e)
{
    km_kube_req req = {.method = method, .path = "/api/v1/namespaces/a/pods"};
    if (strcmp(method, "GET") != 0) {
        req.body = "{}";
        req.body_len = 2;
    }
    return km_kube_do(f->k, &req, code, NULL, e);
}

static void test_get_retried_on_500_then_ok(void **state)
{
    fixture *f = *state;
    long code = 0;
    add(&f->s, 500, "{}");
    add(&f->s, 503, "<html>");
    add(&f->s, 200, "{}");
    assert_int_equal(do_req(f, "GET", &code, NULL), KM_OK);
    assert_int_equal(code, 200);
    assert_int_equal(f->s.next, 3);
}

static void test_post_not_retried_on_500(void **state)
{
    fixture *f = *state;
    km_err e;
    long code = 0;
    add(&f->s, 500, "{\"kind\":\"Status\",\"message\":\"boom\",\"code\":500}");
    assert_int_equal(do_req(f, "POST", &code, &e), KM_EAPI);
    assert_int_equal(code, 500);
    assert_string_equal(e.message, "boom");
    assert_int_equal(f->s.next, 1);
    add(&f->s, 500, "{}");
    assert_int_equal(do_req(f, "PATCH", &code, &e), KM_EAPI);
    assert_int_equal(f->s.next, 2);
}

static void test_post_retried_on_429_and_unsent(void **state)
{
    fixture *f = *state;
    add(&f->s, 429, "{}");
    f->s.r[0].retry_after = 7; /* capped by retry_after_max */
    f->s.r[1].transport_error = 1;
    f->s.r[1].sent = 0;
    f->s.n++;
    add(&f->s, 201, "{}");
    assert_int_equal(do_req(f, "POST", NULL, NULL), KM_OK);
    assert_int_equal(f->s.next, 3);
}

static void test_post_not_retried_when_sent(void **state)
{
    fixture *f = *state;
    km_err e;
    f->s.r[0].transport_error = 1;
    f->s.r[0].sent = 1;
    f->s.n = 1;
    assert_int_equal(do_req(f, "POST", NULL, &e), KM_ETRANSPORT);
    assert_int_equal(f->s.next, 1);
    assert_string_equal(e.message, "connection refused");
}

static void test_retries_capped_and_no_retry(void **state)
{
    fixture *f = *state;
    km_err e;
    for (int i = 0; i < 5; i++)
        add(&f->s, 503, "");
    assert_int_equal(do_req(f, "GET", NULL, &e), KM_EAPI);
    assert_int_equal(f->s.next, 4); /* 1 + max_retries */
    assert_string_equal(e.reason, "ServiceUnavailable");
    km_kube_req req = {.method = "GET", .path = "/x", .no_retry = 1};
    assert_int_equal(km_kube_do(f->k, &req, NULL, NULL, &e), KM_EAPI);
    assert_int_equal(f->s.next, 5);
}

static void test_401_reloads_token_then_rejects_once(void **state)
{
    fixture *f = *state;
    km_err e;
    km_kube *clone = NULL;
    /* the token file changed: one immediate retry with the new token */
    kmtest_write(NULL, f->tokpath, "tok-2-longer\n", NULL);
    add(&f->s, 401, "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401}");
    add(&f->s, 200, "{}");
    assert_int_equal(do_req(f, "GET", NULL, &e), KM_OK);
    assert_string_equal(f->s.tokens[0], "tok-1");
    assert_string_equal(f->s.tokens[1], "tok-2-longer");
    assert_false(km_kube_credentials_rejected(f->k));
    /* unchanged token: rejected, logged once for the whole client family, never retried */
    assert_int_equal(km_kube_clone(f->k, &clone, &e), KM_OK);
    km_kube_set_transport(clone, fake, &f->s);
    add(&f->s, 401, "{}");
    add(&f->s, 401, "{}");
    assert_int_equal(do_req(f, "GET", NULL, &e), KM_EAPI);
    assert_int_equal(e.http_code, 401);
    assert_string_equal(e.message, KM_KUBE_CREDENTIALS_REJECTED);
    assert_true(km_kube_credentials_rejected(clone));
    assert_int_equal(do_req(f, "POST", NULL, &e), KM_EAPI);
    assert_int_equal(f->s.next, 4);
    add(&f->s, 401, "{}");
    km_kube_req req = {.method = "GET", .path = "/x"};
    assert_int_equal(km_kube_do(clone, &req, NULL, NULL, &e), KM_EAPI);
    assert_int_equal(kmtest_log_count("credentials rejected"), 1);
    assert_null(strstr(kmtest_log_text(), "tok-"));
    /* success clears the rejected state */
    add(&f->s, 200, "{}");
    assert_int_equal(km_kube_do(clone, &req, NULL, NULL, &e), KM_OK);
    assert_false(km_kube_credentials_rejected(f->k));
    km_kube_free(clone);
}

static void test_canceled(void **state)
{
    fixture *f = *state;
    atomic_int flag = 1;
    km_err e;
    km_kube_set_cancel(f->k, &flag);
    add(&f->s, 503, "");
    assert_int_equal(do_req(f, "GET", NULL, &e), KM_ECANCELED);
}

static void test_json_helpers(void **state)
{
    fixture *f = *state;
    cJSON *out = NULL;
    km_err e;
    add(&f->s, 200, "{\"kind\":\"Pod\"}");
    assert_int_equal(km_kube_get(f->k, "/api/v1/namespaces/a/pods/p", &out, &e), KM_OK);
    assert_string_equal(KM_JSON_STR(out, "kind"), "Pod");
    cJSON_Delete(out);
    out = NULL;
    add(&f->s, 200, "garbage");
    assert_int_equal(km_kube_get(f->k, "/api/v1/x", &out, &e), KM_EPARSE);
    assert_null(out);
    add(&f->s, 404,
        "{\"kind\":\"Status\",\"reason\":\"NotFound\",\"message\":\"pods \\\"p\\\" not "
        "found\",\"details\":{\"name\":\"p\",\"kind\":\"pods\"},\"code\":404}");
    assert_int_equal(km_kube_get(f->k, "/api/v1/x", &out, &e), KM_EAPI);
    assert_true(km_err_is_http(&e, 404));
    assert_string_equal(e.details, "kind=pods name=p");
    assert_null(out);
    assert_int_equal(km_kube_patch(f->k, "/x", (km_patch_type)9, "{}", NULL, &e), KM_EINVAL);
    km_kube_req bad = {.method = "GET", .path = "relative"};
    assert_int_equal(km_kube_do(f->k, &bad, NULL, NULL, &e), KM_EINVAL);
}

typedef struct seen {
    char verbs[MAXQ][16];
    long codes[MAXQ];
    int n;
} seen;

static void observer(const char *verb, long code, double seconds, void *user)
{
    seen *s = user;
    assert_true(seconds >= 0);
    snprintf(s->verbs[s->n], sizeof(s->verbs[0]), "%s", verb);
    s->codes[s->n++] = code;
}

static void test_observer_verbs(void **state)
{
    fixture *f = *state;
    seen s = {0};
    km_kube_set_observer(f->k, observer, &s);
    static const char *const paths[] = {"/api/v1/pods",
                                        "/api/v1/namespaces",
                                        "/api/v1/namespaces/a",
                                        "/api/v1/namespaces/a/pods?limit=1",
                                        "/api/v1/namespaces/a/pods/p",
                                        "/apis/apps/v1/namespaces/a/deployments",
                                        "/apis/apps/v1/deployments/x",
                                        "/api/v1/pods?watch=1",
                                        "/x"};
    static const char *const want[] = {"list", "list", "get",   "list", "get",
                                       "list", "get",  "watch", "get"};
    for (size_t i = 0; i < 9; i++) {
        add(&f->s, 200, "{}");
        km_kube_req req = {.method = "GET", .path = paths[i]};
        assert_int_equal(km_kube_do(f->k, &req, NULL, NULL, NULL), KM_OK);
        assert_string_equal(s.verbs[i], want[i]);
    }
    add(&f->s, 500, "{}");
    assert_int_equal(do_req(f, "POST", NULL, NULL), KM_EAPI);
    assert_string_equal(s.verbs[9], "create");
    assert_int_equal(s.codes[9], 500);
}

static void test_path_and_escape(void **state)
{
    (void)state;
    char b[128];
    assert_int_equal(km_kube_path(b, sizeof(b), NULL, "v1", "ns", "pods", "p", "eviction"), KM_OK);
    assert_string_equal(b, "/api/v1/namespaces/ns/pods/p/eviction");
    assert_int_equal(km_kube_path(b, sizeof(b), "", "v1", NULL, "nodes", NULL, NULL), KM_OK);
    assert_string_equal(b, "/api/v1/nodes");
    assert_int_equal(km_kube_path(b, sizeof(b), "certificates.k8s.io", "v1", NULL,
                                  "certificatesigningrequests", "c", "approval"),
                     KM_OK);
    assert_string_equal(b, "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval");
    assert_int_equal(km_kube_path(b, 10, "apps", "v1", "n", "deployments", NULL, NULL), KM_ETOOBIG);
    char *e = km_kube_escape("a b/c=d&e~f.g-h_i\xc3\xa9");
    assert_string_equal(e, "a%20b%2Fc%3Dd%26e~f.g-h_i%C3%A9");
    free(e);
}

int main(void)
{
    km_kube_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pages_and_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_limit_and_existing_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_410_restarts_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_410_lists_without_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_third_410_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeated_continue_token_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_too_big_halves_the_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_410_on_first_page_is_an_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_page_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_retried_on_500_then_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_not_retried_on_500, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_retried_on_429_and_unsent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_not_retried_when_sent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_capped_and_no_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_401_reloads_token_then_rejects_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_canceled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_helpers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_observer_verbs, setup, teardown),
        cmocka_unit_test(test_path_and_escape),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
