/* test_watcher.c — the list+watch state machine driven through a scripted fake transport:
 * relist on 410 (ERROR event and HTTP status), re-watch from the last RV / bookmark, missed
 * deletes after a relist, backoff on errors, oversized and malformed lines, events-only mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "watch/watcher.h"

/* ---- the scripted transport --------------------------------------------------------------- */

typedef struct fstep {
    int is_list;
    const char *pages[4]; /* list: JSON arrays of items */
    int npages;
    int restarted_page; /* list: index of the page flagged restarted, -1 none */
    const char *rv;     /* list: resourceVersion */
    const char *body;   /* stream: the body */
    size_t chunk;       /* stream: chunk size (0 = whole body) */
    km_status st;       /* what the call returns at the end */
    long http;          /* with KM_EAPI */
} fstep;

typedef struct fake {
    const fstep *steps;
    int n, next;
    char paths[32][512];
    long idle[32];
    int npaths;
    char label[64];
    long limit;
    int mismatch;
    const atomic_int *cancel;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int exhausted;
} fake;

static km_status fake_open(void *ctx, const atomic_int *cancel, void **conn, km_err *err)
{
    (void)err;
    fake *f = ctx;
    f->cancel = cancel;
    *conn = f;
    return KM_OK;
}

/* Script ran out (or was not followed): report and block until cancelled. */
static km_status exhausted(fake *f)
{
    pthread_mutex_lock(&f->mu);
    f->exhausted = 1;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
    while (!atomic_load(f->cancel)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return KM_ECANCELED;
}

static void record(fake *f, const char *path, long idle)
{
    if (f->npaths < 32) {
        snprintf(f->paths[f->npaths], sizeof(f->paths[0]), "%s", path);
        f->idle[f->npaths] = idle;
        f->npaths++;
    }
}

static km_status fake_list(void *conn, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                           void *user, char **out_rv, km_err *err)
{
    fake *f = conn;
    record(f, path, 0);
    snprintf(f->label, sizeof(f->label), "%s", o->label_selector ? o->label_selector : "");
    f->limit = o->limit;
    if (f->next >= f->n || !f->steps[f->next].is_list) {
        f->mismatch += f->next < f->n;
        return exhausted(f);
    }
    const fstep *s = &f->steps[f->next++];
    if (s->st != KM_OK)
        return km_err_set(err, s->st, "scripted list failure");
    for (int i = 0; i < s->npages; i++) {
        cJSON *items = cJSON_Parse(s->pages[i]);
        assert_non_null(items);
        km_kube_page page = {items, s->rv, i == s->restarted_page, -1};
        km_status st = fn(&page, user);
        cJSON_Delete(items);
        if (st != KM_OK)
            return st;
    }
    *out_rv = strdup(s->rv);
    return KM_OK;
}

static km_status fake_stream(void *conn, const char *path, long idle_timeout_ms,
                             km_kube_stream_fn fn, void *user, km_err *err)
{
    fake *f = conn;
    record(f, path, idle_timeout_ms);
    if (f->next >= f->n || f->steps[f->next].is_list) {
        f->mismatch += f->next < f->n;
        return exhausted(f);
    }
    const fstep *s = &f->steps[f->next++];
    size_t n = strlen(s->body), chunk = s->chunk ? s->chunk : (n ? n : 1);
    for (size_t off = 0; off < n; off += chunk) {
        km_status st = fn(s->body + off, off + chunk > n ? n - off : chunk, user);
        if (st != KM_OK)
            return st;
    }
    if (s->st == KM_OK)
        return KM_OK;
    km_err_set(err, s->st, "scripted stream failure");
    if (err)
        err->http_code = s->http;
    return s->st;
}

/* ---- recording handlers ------------------------------------------------------------------- */

typedef struct rec {
    pthread_mutex_t mu;
    char ev[64][128];
    int n;
} rec;

static void on_event(km_event_type type, const cJSON *obj, void *user)
{
    rec *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->n < 64)
        snprintf(r->ev[r->n++], sizeof(r->ev[0]), "%s %s %s", km_event_type_name(type),
                 KM_JSON_STR(obj, "metadata", "name"),
                 KM_JSON_STR(obj, "metadata", "resourceVersion"));
    pthread_mutex_unlock(&r->mu);
}

static void on_synced(void *user)
{
    rec *r = user;
    pthread_mutex_lock(&r->mu);
    if (r->n < 64)
        snprintf(r->ev[r->n++], sizeof(r->ev[0]), "SYNCED");
    pthread_mutex_unlock(&r->mu);
}

/* Runs the watcher until the script is used up, then stops it. */
static void run_script(fake *f, const fstep *steps, int n, km_watch_opts *o, rec *r,
                       km_watch_stats *stats)
{
    memset(f, 0, sizeof(*f));
    f->steps = steps;
    f->n = n;
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->mu, NULL);
    o->transport.open = fake_open;
    o->transport.list = fake_list;
    o->transport.stream = fake_stream;
    o->transport.ctx = f;
    o->on_event = on_event;
    o->on_synced = on_synced;
    o->user = r;
    o->timeout_min_s = 5;
    o->timeout_max_s = 9;
    o->idle_grace_ms = 1000;
    o->backoff_initial = 0.001;
    o->backoff_max = 0.002;
    km_watcher *w = NULL;
    assert_int_equal(km_watcher_new(o, &w, NULL), KM_OK);
    assert_int_equal(km_watcher_start(w, NULL), KM_OK);
    assert_int_equal(km_watcher_start(w, NULL), KM_ESTATE);
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 30; /* a hang guard, not a timing assertion */
    pthread_mutex_lock(&f->mu);
    while (!f->exhausted)
        if (pthread_cond_timedwait(&f->cv, &f->mu, &dl) != 0)
            break;
    int done = f->exhausted;
    pthread_mutex_unlock(&f->mu);
    assert_true(done);
    km_watcher_stats(w, stats);
    /* blocked in the call after the script: a watch (or a list) */
    assert_true(stats->state == KM_WATCH_WATCHING || stats->state == KM_WATCH_LISTING);
    km_watcher_stop(w);
    km_watcher_stop(w);
    km_watch_stats after;
    km_watcher_stats(w, &after);
    assert_int_equal(after.state, KM_WATCH_STOPPED);
    assert_int_equal(km_watcher_wait_synced(w, 0), stats->synced ? KM_OK : KM_ECANCELED);
    km_watcher_free(w);
    assert_int_equal(f->mismatch, 0);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
}

/* Events r->ev[from..from+k) are exactly the given ones in any order. */
static void assert_set(const rec *r, int from, int k, const char *const *want)
{
    assert_true(from + k <= r->n);
    for (int i = 0; i < k; i++) {
        int found = 0;
        for (int j = from; j < from + k; j++)
            found += strcmp(r->ev[j], want[i]) == 0;
        if (found != 1)
            fail_msg("expected \"%s\" once among events %d..%d", want[i], from, from + k - 1);
    }
}

static long param(const char *path, const char *name)
{
    const char *p = strstr(path, name);
    assert_non_null(p);
    return strtol(p + strlen(name), NULL, 10);
}

#define EV(t, name, rv)                                                                            \
    "{\"type\":\"" t "\",\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":"   \
    "{\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"}}}\n"
#define BOOKMARK(rv)                                                                               \
    "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\","             \
    "\"metadata\":{\"resourceVersion\":\"" rv "\",\"creationTimestamp\":null}}}\n"
#define EXPIRED                                                                                    \
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"   \
    "\"status\":\"Failure\",\"message\":\"too old resource version: 1 (271)\",\"reason\":"         \
    "\"Expired\",\"code\":410}}\n"
#define ITEM(name, rv)                                                                             \
    "{\"metadata\":{\"namespace\":\"ns\",\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"}}"

/* The requests of test_store_relist_rewatch: list, watch@12, watch@20 (bookmark), list, watch@30,
 * watch@30, list, watch@31, watch@32 (the partial line of the cut stream was dropped). */
static void check_requests(const fake *f)
{
    assert_int_equal(f->npaths, 9);
    const int lists[] = {0, 3, 6};
    for (int i = 0; i < 3; i++)
        assert_string_equal(f->paths[lists[i]], "/api/v1/namespaces/ns/configmaps");
    assert_string_equal(f->label, "app=x,tier in (a b)");
    assert_int_equal(f->limit, 2);
    const int watches[] = {1, 2, 4, 5, 7, 8};
    const long rvs[] = {12, 20, 30, 30, 31, 32};
    for (int i = 0; i < 6; i++) {
        const char *p = f->paths[watches[i]];
        assert_true(strncmp(p, "/api/v1/namespaces/ns/configmaps?watch=1&", 41) == 0);
        assert_int_equal(param(p, "resourceVersion="), rvs[i]);
        assert_non_null(strstr(p, "&allowWatchBookmarks=true"));
        assert_non_null(strstr(p, "&labelSelector=app%3Dx%2Ctier%20in%20%28a%20b%29"));
        long t = param(p, "timeoutSeconds=");
        assert_true(t >= 5 && t <= 9);
        assert_int_equal(f->idle[watches[i]], t * 1000 + 1000);
    }
}

static void check_store(km_store *store)
{
    assert_int_equal(km_store_len(store), 4);
    const char *keys[] = {"ns/a", "ns/c", "ns/e", "ns/f"};
    const char *krv[] = {"13", "25", "26", "32"};
    for (int i = 0; i < 4; i++) {
        cJSON *obj = NULL;
        assert_int_equal(km_store_get(store, keys[i], &obj), KM_OK);
        assert_string_equal(KM_JSON_STR(obj, "metadata", "resourceVersion"), krv[i]);
        cJSON_Delete(obj);
    }
}

static void test_store_relist_rewatch(void **state)
{
    (void)state;
    static const fstep steps[] = {
        {.is_list = 1,
         .pages = {"[" ITEM("a", "10") "," ITEM("b", "11") "]", "[" ITEM("c", "12") "]"},
         .npages = 2,
         .restarted_page = -1,
         .rv = "12"},
        {.body = EV("MODIFIED", "a", "13") BOOKMARK("20"), .chunk = 5},
        {.body = EV("ADDED", "d", "21") EV("DELETED", "b", "22") EXPIRED, .chunk = 7},
        {.is_list = 1,
         .pages = {"[" ITEM("a", "13") "," ITEM("c", "25") "," ITEM("e", "26") "]"},
         .npages = 1,
         .restarted_page = -1,
         .rv = "30"},
        {.body = "", .st = KM_ETRANSPORT},
        {.body = "", .st = KM_EAPI, .http = 410},
        {.is_list = 1,
         .pages = {"[" ITEM("a", "13") "," ITEM("c", "25") "," ITEM("e", "26") "]"},
         .npages = 1,
         .restarted_page = -1,
         .rv = "31"},
        {.body = EV("ADDED", "f", "32") "{\"type\":\"ADD"},
    };
    static fake f;
    static rec r;
    km_store *store = NULL;
    assert_int_equal(km_store_new(&store), KM_OK);
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.path = "/api/v1/namespaces/ns/configmaps";
    o.label_selector = "app=x,tier in (a b)";
    o.store = store;
    o.page_size = 2;
    km_watch_stats st;
    run_script(&f, steps, (int)(sizeof(steps) / sizeof(steps[0])), &o, &r, &st);

    const char *first[] = {"ADDED a 10", "ADDED b 11", "ADDED c 12"};
    assert_set(&r, 0, 3, first);
    assert_string_equal(r.ev[3], "SYNCED");
    assert_string_equal(r.ev[4], "MODIFIED a 13");
    assert_string_equal(r.ev[5], "ADDED d 21");
    assert_string_equal(r.ev[6], "DELETED b 22");
    assert_string_equal(r.ev[7], "DELETED d 21"); /* missed while disconnected */
    const char *second[] = {"ADDED e 26", "MODIFIED c 25"};
    assert_set(&r, 8, 2, second);
    assert_string_equal(r.ev[10], "SYNCED");
    assert_string_equal(r.ev[11], "SYNCED"); /* unchanged relist: no events */
    assert_string_equal(r.ev[12], "ADDED f 32");
    assert_int_equal(r.n, 13);

    check_requests(&f);

    assert_int_equal(st.lists, 3);
    assert_int_equal(st.relists, 2);
    assert_int_equal(st.expired, 2);
    assert_int_equal(st.watches, 6);
    assert_int_equal(st.restarts, 5);
    assert_int_equal(st.errors, 2); /* transport error, immediate HTTP 410 */
    assert_int_equal(st.events, 10);
    assert_int_equal(st.bookmarks, 1);
    assert_true(st.synced);
    assert_string_equal(st.resource_version, "32");

    check_store(store); /* the store equals the server's state */
    km_store_free(store);
}

/* Without a store, every listed item is delivered page by page (a restarted list delivers
 * again); a list failure is retried after backoff. */
static void test_events_only_list(void **state)
{
    (void)state;
    static const fstep steps[] = {
        {.is_list = 1, .st = KM_ETRANSPORT},
        {.is_list = 1,
         .pages = {"[" ITEM("a", "1") "," ITEM("b", "2") "]",
                   "[" ITEM("a", "1") "," ITEM("b", "2") "]", "[" ITEM("c", "3") "]"},
         .npages = 3,
         .restarted_page = 1,
         .rv = "3"},
    };
    static fake f;
    static rec r;
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.path = "/api/v1/pods";
    km_watch_stats st;
    run_script(&f, steps, 2, &o, &r, &st);
    const char *want[] = {"ADDED a 1", "ADDED b 2", "ADDED a 1",
                          "ADDED b 2", "ADDED c 3", "SYNCED"};
    assert_int_equal(r.n, 6);
    for (int i = 0; i < 6; i++)
        assert_string_equal(r.ev[i], want[i]);
    assert_int_equal(f.limit, 500);
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.relists, 0);
    assert_int_equal(st.errors, 1);
    assert_int_equal(param(f.paths[2], "resourceVersion="), 3);
}

/* An event larger than max_object_size ends the stream and forces a relist. */
static void test_oversized_event_relists(void **state)
{
    (void)state;
    static const fstep steps[] = {
        {.is_list = 1, .pages = {"[]"}, .npages = 1, .restarted_page = -1, .rv = "5"},
        {.body = EV("ADDED", "small", "6")
             EV("ADDED",
                "a-very-long-name-that-makes-this-line-exceed-the-limit-of-one-"
                "hundred-and-fifty-bytes",
                "7") EV("ADDED", "never", "8"),
         .chunk = 16},
        {.is_list = 1,
         .pages = {"[" ITEM("small", "6") "]"},
         .npages = 1,
         .restarted_page = -1,
         .rv = "9"},
    };
    static fake f;
    static rec r;
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.path = "/api/v1/namespaces/ns/configmaps";
    o.max_object_size = 150;
    km_watch_stats st;
    run_script(&f, steps, 3, &o, &r, &st);
    assert_int_equal(r.n, 4);
    assert_string_equal(r.ev[0], "SYNCED");
    assert_string_equal(r.ev[1], "ADDED small 6");
    assert_string_equal(r.ev[2], "ADDED small 6"); /* events-only relist */
    assert_string_equal(r.ev[3], "SYNCED");
    assert_int_equal(st.lists, 2);
    assert_int_equal(st.errors, 1);
    assert_int_equal(param(f.paths[3], "resourceVersion="), 9);
}

/* A malformed line or a non-410 ERROR event: back off and re-watch from the last good RV, no
 * relist; a stream that ends at once without data is backed off too. */
static void test_malformed_and_error_rewatch(void **state)
{
    (void)state;
    static const fstep steps[] = {
        {.is_list = 1, .pages = {"[]"}, .npages = 1, .restarted_page = -1, .rv = "5"},
        {.body = EV("ADDED", "a", "6") "this is not json\n" EV("ADDED", "b", "7"), .chunk = 3},
        {.body = EV("MODIFIED", "a", "8") "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\","
                                          "\"code\":500,\"message\":\"boom\"}}\n" EV("ADDED", "c",
                                                                                     "9")},
        {.body = ""},
    };
    static fake f;
    static rec r;
    km_watch_opts o;
    km_watch_opts_init(&o);
    o.path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
    o.field_selector = "spec.signerName=kubernetes.io/kubelet-serving";
    km_watch_stats st;
    run_script(&f, steps, 4, &o, &r, &st);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.ev[0], "SYNCED");
    assert_string_equal(r.ev[1], "ADDED a 6");
    assert_string_equal(r.ev[2], "MODIFIED a 8");
    assert_int_equal(st.lists, 1);
    assert_int_equal(st.errors, 3);
    assert_int_equal(param(f.paths[2], "resourceVersion="), 6);
    assert_int_equal(param(f.paths[3], "resourceVersion="), 8);
    assert_int_equal(param(f.paths[4], "resourceVersion="), 8);
    assert_non_null(strstr(f.paths[4], "&fieldSelector=spec.signerName%3Dkubernetes.io%2Fkubelet-"
                                       "serving"));
}

static void test_new_invalid(void **state)
{
    (void)state;
    km_watch_opts o;
    km_watch_opts_init(&o);
    assert_int_equal(o.timeout_min_s, 300);
    assert_int_equal(o.timeout_max_s, 600);
    assert_true(o.backoff_initial == 0.8 && o.backoff_max == 30 && o.backoff_reset_s == 120);
    km_watcher *w = NULL;
    km_err err;
    assert_int_equal(km_watcher_new(&o, &w, &err), KM_EINVAL);
    assert_null(w);
    o.path = "/api/v1/nodes";
    assert_int_equal(km_watcher_new(&o, &w, &err), KM_EINVAL); /* no transport */
    o.transport.list = fake_list;
    o.transport.stream = fake_stream;
    o.timeout_max_s = 10;
    assert_int_equal(km_watcher_new(&o, &w, &err), KM_EINVAL); /* max < min */
    o.timeout_max_s = 600;
    assert_int_equal(km_watcher_new(&o, &w, &err), KM_OK);
    assert_int_equal(km_watcher_synced(w), 0);
    assert_int_equal(km_watcher_wait_synced(w, 0), KM_ETIMEOUT);
    km_watcher_stop(w); /* never started: no-op */
    km_watcher_free(w);
    km_watcher_free(NULL);
    assert_string_equal(km_watch_state_name(KM_WATCH_BACKOFF), "backoff");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_store_relist_rewatch),
        cmocka_unit_test(test_events_only_list),
        cmocka_unit_test(test_oversized_event_relists),
        cmocka_unit_test(test_malformed_and_error_rewatch),
        cmocka_unit_test(test_new_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
