/* test_pool.c — operator/kube/pool: at most N units in flight, all done by km_pool_wait, the
 * first failure ends the work and frees what is still submitted; one worker runs in the caller. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/kube/pool.h"
#include "tests/unit/support/kmtest.h"

typedef struct counts {
    pthread_mutex_t lock;
    int running, max_running, done, freed, fail_at;
    pthread_t caller;
    int ran_in_caller;
} counts;

/* A transport answering 200 after 5 ms (thread-safe: no state). */
static km_status slow_ok(const km_kube_req *req, const char *token, km_kube_reply *reply,
                         km_buf *body, km_err *err, void *user)
{
    (void)req, (void)token, (void)err, (void)user;
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    reply->code = 200;
    return km_buf_append(body, "{}", 2);
}

static counts *g_counts;

static void free_unit(void *unit)
{
    pthread_mutex_lock(&g_counts->lock);
    g_counts->freed++;
    pthread_mutex_unlock(&g_counts->lock);
    free(unit);
}

static km_status one(km_kube *kube, void *unit, void *user, km_err *err)
{
    counts *c = user;
    int id = *(int *)unit;
    pthread_mutex_lock(&c->lock);
    if (++c->running > c->max_running)
        c->max_running = c->running;
    if (pthread_equal(pthread_self(), c->caller))
        c->ran_in_caller++;
    pthread_mutex_unlock(&c->lock);
    long code = 0;
    km_kube_req req = {
        .method = "PATCH", .path = "/api/v1/namespaces/a/secrets/b", .body = "{}", .body_len = 2};
    km_status st = km_kube_do(kube, &req, &code, NULL, err);
    pthread_mutex_lock(&c->lock);
    c->running--;
    c->done++;
    pthread_mutex_unlock(&c->lock);
    free(unit);
    if (st == KM_OK && id == c->fail_at)
        st = km_err_set(err, KM_EAPI, "unit %d failed", id);
    return st;
}

typedef struct fixture {
    char dir[256];
    km_kubeconfig *cfg;
    km_kube *k;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    kmtest_mkdtemp(f->dir, sizeof(f->dir));
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.adaptive = 0; /* no client-side limit: the pool alone bounds the requests in flight */
    kmtest_fake_client(f->dir, &o, slow_ok, NULL, &f->cfg, &f->k);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    km_kube_free(f->k);
    km_kubeconfig_free(f->cfg);
    kmtest_rmdir(f->dir);
    free(f);
    return 0;
}

static void run_units(fixture *f, int workers, int units, counts *c, km_status *submit_st,
                      km_status *wait_st)
{
    km_pool *p = NULL;
    km_err e;
    g_counts = c;
    c->caller = pthread_self();
    assert_int_equal(km_pool_new(f->k, workers, one, free_unit, c, &p, &e), KM_OK);
    *submit_st = KM_OK;
    for (int i = 0; i < units; i++) {
        int *u = malloc(sizeof(*u));
        *u = i;
        km_status st = km_pool_submit(p, u, &e);
        if (st != KM_OK && *submit_st == KM_OK)
            *submit_st = st;
    }
    *wait_st = km_pool_wait(p, &e);
    km_pool_free(p);
}

static void test_bounded_window_all_done(void **state)
{
    fixture *f = *state;
    counts c = {.lock = PTHREAD_MUTEX_INITIALIZER, .fail_at = -1};
    km_status sst, wst;
    run_units(f, 8, 200, &c, &sst, &wst);
    assert_int_equal(sst, KM_OK);
    assert_int_equal(wst, KM_OK);
    assert_int_equal(c.done, 200);
    assert_int_equal(c.freed, 0);
    assert_true(c.max_running <= 8);
    assert_true(c.max_running >= 2); /* really concurrent: 200 x 5 ms on 8 workers */
    assert_int_equal(c.ran_in_caller, 0);
}

static void test_first_failure_stops_and_frees_the_rest(void **state)
{
    fixture *f = *state;
    counts c = {.lock = PTHREAD_MUTEX_INITIALIZER, .fail_at = 3};
    km_status sst, wst;
    run_units(f, 4, 100, &c, &sst, &wst);
    assert_int_equal(wst, KM_EAPI);
    assert_int_equal(sst, KM_EAPI);
    assert_int_equal(c.done + c.freed, 100); /* every unit ran or was freed: nothing leaked */
    assert_true(c.freed > 0);
}

static void test_one_worker_runs_in_the_caller_in_order(void **state)
{
    fixture *f = *state;
    counts c = {.lock = PTHREAD_MUTEX_INITIALIZER, .fail_at = 5};
    km_status sst, wst;
    run_units(f, 1, 10, &c, &sst, &wst);
    assert_int_equal(c.ran_in_caller, 6); /* units 0..5 ran; 6..9 freed unrun */
    assert_int_equal(c.freed, 4);
    assert_int_equal(sst, KM_EAPI);
    assert_int_equal(wst, KM_EAPI);
    assert_int_equal(c.max_running, 1);
}

static void test_invalid(void **state)
{
    fixture *f = *state;
    km_pool *p = NULL;
    km_err e;
    assert_int_equal(km_pool_new(f->k, 0, one, free_unit, NULL, &p, &e), KM_EINVAL);
    assert_int_equal(km_pool_new(f->k, 65, one, free_unit, NULL, &p, &e), KM_EINVAL);
    assert_null(p);
    km_pool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bounded_window_all_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_failure_stops_and_frees_the_rest, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_one_worker_runs_in_the_caller_in_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
