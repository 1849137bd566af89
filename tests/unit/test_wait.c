/* test_wait.c — waiting for named objects on one watch (watch/wait.h) through a scripted
 * transport: states seen before the arm count once the generation is known, older generations
 * never, a deletion is done, the late ones are reported; after a 410 the resync takes a fresh
 * resourceVersion with a one-item list and GETs what is still waited for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "watch/wait.h"
#include "watch/watcher.h"

/* One object as a watch event line. */
#define EV(type, name, gen, ready)                                                                 \
    "{\"type\":\"" type "\",\"object\":{\"metadata\":{\"namespace\":\"ns\",\"name\":\"" name       \
    "\",\"generation\":" #gen ",\"resourceVersion\":\"101\"},\"status\":{\"ready\":" #ready        \
    "}}}\n"

typedef struct fake {
    const char *body; /* the first stream's body; later streams block until cancelled */
    long http;        /* the first stream's HTTP error after the body (0 = none) */
    int streams, lists;
    long list_limit;
    char got[8][128]; /* GET paths */
    int ngot;
    const atomic_int *cancel;
    pthread_mutex_t mu;
} fake;

static km_status f_open(void *ctx, const atomic_int *cancel, void **conn, km_err *err)
{
    (void)err;
    fake *f = ctx;
    f->cancel = cancel;
    *conn = f;
    return KM_OK;
}

static km_status f_list(void *conn, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                        void *user, char **out_rv, km_err *err)
{
    (void)path;
    (void)out_rv;
    (void)err;
    fake *f = conn;
    cJSON *items = cJSON_CreateArray();
    pthread_mutex_lock(&f->mu);
    f->lists++;
    f->list_limit = o->limit;
    pthread_mutex_unlock(&f->mu);
    km_kube_page page = {items, "200", 0, 5};
    km_status st = fn(&page, user);
    cJSON_Delete(items);
    return st;
}

static km_status f_stream(void *conn, const char *path, long idle, km_kube_stream_fn fn, void *user,
                          km_err *err)
{
    (void)path;
    (void)idle;
    fake *f = conn;
    pthread_mutex_lock(&f->mu);
    int first = f->streams++ == 0;
    pthread_mutex_unlock(&f->mu);
    if (first && f->body) {
        km_status st = fn(f->body, strlen(f->body), user);
        if (st != KM_OK)
            return st;
        if (f->http) {
            km_err_set(err, KM_EAPI, "scripted");
            err->http_code = f->http;
            return KM_EAPI;
        }
    }
    while (!atomic_load(f->cancel))
        km_clock_sleep(0.005, NULL);
    return KM_ECANCELED;
}

static km_status f_get(void *conn, const char *path, cJSON **out, km_err *err)
{
    (void)err;
    fake *f = conn;
    pthread_mutex_lock(&f->mu);
    if (f->ngot < 8)
        snprintf(f->got[f->ngot++], sizeof(f->got[0]), "%s", path);
    pthread_mutex_unlock(&f->mu);
    *out = cJSON_Parse("{\"metadata\":{\"namespace\":\"ns\",\"name\":\"x\",\"generation\":5},"
                       "\"status\":{\"ready\":true}}");
    return KM_OK;
}

static int is_ready(const cJSON *obj, void *user)
{
    (void)user;
    return KM_JSON_BOOL(obj, 0, "status", "ready");
}

static char g_late[8][64];
static int g_nlate;

static void late(const char *ns, const char *name, void *user)
{
    (void)user;
    snprintf(g_late[g_nlate++], sizeof(g_late[0]), "%s/%s", ns, name);
}

static km_wait *new_wait(fake *f, km_watch_transport *t)
{
    memset(t, 0, sizeof(*t));
    t->open = f_open;
    t->list = f_list;
    t->stream = f_stream;
    t->get = f_get;
    t->ctx = f;
    pthread_mutex_init(&f->mu, NULL);
    km_wait_opts o = {"apps", "v1", "deployments", is_ready, NULL, NULL, t};
    km_wait *w = NULL;
    assert_int_equal(km_wait_new(&o, &w, NULL), KM_OK);
    return w;
}

static cJSON *obj(int gen, int ready)
{
    char buf[256];
    snprintf(
        buf, sizeof(buf),
        "{\"metadata\":{\"generation\":%d,\"resourceVersion\":\"100\"},\"status\":{\"ready\":%s}}",
        gen, ready ? "true" : "false");
    return cJSON_Parse(buf);
}

static void test_generations_deletes_and_late(void **state)
{
    (void)state;
    fake f = {.body = EV("MODIFIED", "c", 1, false) EV("DELETED", "c", 1, false)
                  EV("MODIFIED", "a", 1, true) EV("MODIFIED", "a", 2, true)
                      EV("MODIFIED", "b", 2, true)};
    km_watch_transport t;
    km_wait *w = new_wait(&f, &t);
    const char *names[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(km_wait_add(w, "ns", names[i], NULL), KM_OK);
    cJSON *o1 = obj(1, 0), *o3 = obj(3, 0), *o5 = obj(5, 1);
    assert_int_equal(km_wait_arm(w, "ns", "a", 2, o1, NULL), KM_OK); /* the watch starts */
    assert_int_equal(km_wait_arm(w, "ns", "b", 3, o3, NULL), KM_OK); /* gen 2 must not count */
    assert_int_equal(km_wait_arm(w, "ns", "c", 1, o1, NULL), KM_OK); /* deleted: done */
    assert_int_equal(km_wait_arm(w, "ns", "d", 5, o5, NULL), KM_OK); /* ready in the response */
    g_nlate = 0;
    assert_int_equal(km_wait_all(w, 1.0, NULL, late, NULL), KM_OK);
    assert_int_equal(g_nlate, 1);
    assert_string_equal(g_late[0], "ns/b");
    assert_int_equal(f.lists, 0); /* no list: the watch started at the response's version */
    /* everything was forgotten: an empty wait returns at once */
    g_nlate = 0;
    assert_int_equal(km_wait_all(w, 5.0, NULL, late, NULL), KM_OK);
    assert_int_equal(g_nlate, 0);
    atomic_int cancel = 1;
    assert_int_equal(km_wait_add(w, "ns", "e", NULL), KM_OK);
    assert_int_equal(km_wait_all(w, 5.0, &cancel, late, NULL), KM_ECANCELED);
    assert_int_equal(g_nlate, 0);
    km_wait_free(w);
    cJSON_Delete(o1);
    cJSON_Delete(o3);
    cJSON_Delete(o5);
}

static void test_resync_after_410(void **state)
{
    (void)state;
    fake f = {.body = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,"
                      "\"reason\":\"Expired\",\"message\":\"too old\"}}\n"};
    km_watch_transport t;
    km_wait *w = new_wait(&f, &t);
    assert_int_equal(km_wait_add(w, "ns", "x", NULL), KM_OK);
    cJSON *o = obj(5, 0);
    assert_int_equal(km_wait_arm(w, "ns", "x", 5, o, NULL), KM_OK);
    g_nlate = 0;
    assert_int_equal(km_wait_all(w, 10.0, NULL, late, NULL), KM_OK);
    assert_int_equal(g_nlate, 0); /* healed by the resync's GET */
    assert_int_equal(f.lists, 1);
    assert_int_equal(f.list_limit, 1);
    assert_int_equal(f.ngot, 1);
    assert_string_equal(f.got[0], "/apis/apps/v1/namespaces/ns/deployments/x");
    km_wait_free(w);
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_generations_deletes_and_late),
        cmocka_unit_test(test_resync_after_410),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
