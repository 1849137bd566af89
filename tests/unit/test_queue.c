/* test_queue.c — work queue invariants: de-duplication, one worker per key, deferral while
 * processing, backoff math, delayed adds, shutdown and drain, concurrent workers. */
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

#include "watch/queue.h"

static km_queue *mkqueue(void)
{
    km_queue *q = NULL;
    assert_int_equal(km_queue_new(NULL, &q), KM_OK);
    return q;
}

/* Takes a key that must be ready now. */
static char *take(km_queue *q)
{
    char *k = NULL;
    assert_int_equal(km_queue_get(q, 0, &k), KM_OK);
    return k;
}

static void test_dedup_fifo(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    assert_int_equal(km_queue_add(q, "a"), KM_OK);
    assert_int_equal(km_queue_add(q, "b"), KM_OK);
    assert_int_equal(km_queue_add(q, "a"), KM_OK);
    assert_int_equal(km_queue_add(q, "c"), KM_OK);
    assert_int_equal(km_queue_len(q), 3);
    const char *want[] = {"a", "b", "c"};
    for (int i = 0; i < 3; i++) {
        char *k = take(q);
        assert_string_equal(k, want[i]);
        km_queue_done(q, k);
        free(k);
    }
    char *k = (char *)0x1;
    assert_int_equal(km_queue_get(q, 0, &k), KM_ETIMEOUT);
    assert_ptr_equal(k, (char *)0x1);
    km_queue_free(q);
}

/* A key added while a worker holds it is not handed to another worker; done() re-queues it
 * once, however often it was added meanwhile. */
static void test_deferred_while_processing(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    km_queue_add(q, "a");
    char *k = take(q);
    assert_string_equal(k, "a");
    km_queue_add(q, "a");
    km_queue_add(q, "a");
    assert_int_equal(km_queue_len(q), 0);
    char *other = NULL;
    assert_int_equal(km_queue_get(q, 0, &other), KM_ETIMEOUT);
    km_queue_done(q, k);
    free(k);
    assert_int_equal(km_queue_len(q), 1);
    k = take(q);
    assert_string_equal(k, "a");
    km_queue_done(q, k);
    free(k);
    assert_int_equal(km_queue_len(q), 0);
    /* done() without a re-add does not re-queue; done() of an unknown key is harmless */
    km_queue_done(q, "never-taken");
    assert_int_equal(km_queue_len(q), 0);
    km_queue_free(q);
}

static void test_backoff_math(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    double want = 0.005;
    for (int i = 0; i < 30; i++) {
        double d = km_queue_when(q, "k");
        double exp = want > 1000 ? 1000 : want;
        assert_true(d > exp * 0.999999 && d < exp * 1.000001);
        want *= 2;
    }
    assert_int_equal(km_queue_num_requeues(q, "k"), 30);
    for (int i = 0; i < 100; i++)
        assert_true(km_queue_when(q, "k") == 1000.0); /* capped, no overflow */
    /* other keys have their own count */
    assert_true(km_queue_when(q, "other") == 0.005);
    km_queue_forget(q, "k");
    assert_int_equal(km_queue_num_requeues(q, "k"), 0);
    assert_true(km_queue_when(q, "k") == 0.005);
    km_queue_free(q);

    km_queue_opts o;
    km_queue_opts_init(&o);
    assert_true(o.base_delay == 0.005 && o.max_delay == 1000);
    o.base_delay = 1;
    o.max_delay = 3;
    assert_int_equal(km_queue_new(&o, &q), KM_OK);
    assert_true(km_queue_when(q, "x") == 1);
    assert_true(km_queue_when(q, "x") == 2);
    assert_true(km_queue_when(q, "x") == 3);
    assert_true(km_queue_when(q, "x") == 3);
    km_queue_free(q);
}

static void test_rate_limited_add(void **state)
{
    (void)state;
    km_queue_opts o;
    km_queue_opts_init(&o);
    o.base_delay = 3600; /* far in the future: never due during the test */
    km_queue *q = NULL;
    assert_int_equal(km_queue_new(&o, &q), KM_OK);
    assert_int_equal(km_queue_add_rate_limited(q, "k"), KM_OK);
    assert_int_equal(km_queue_num_requeues(q, "k"), 1);
    assert_int_equal(km_queue_len(q), 0);
    assert_int_equal(km_queue_delayed_len(q), 1);
    /* a plain add is not blocked by the waiting delayed one */
    km_queue_add(q, "k");
    char *k = take(q);
    assert_string_equal(k, "k");
    km_queue_done(q, k);
    free(k);
    km_queue_free(q);
}

static void test_add_after(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    assert_int_equal(km_queue_add_after(q, "late", 3600), KM_OK);
    assert_int_equal(km_queue_add_after(q, "late", 7200), KM_OK); /* later: ignored */
    assert_int_equal(km_queue_delayed_len(q), 1);
    assert_int_equal(km_queue_len(q), 0);
    char *k = NULL;
    assert_int_equal(km_queue_get(q, 0, &k), KM_ETIMEOUT);
    /* an earlier time for a waiting key moves it earlier: a blocking get receives it */
    assert_int_equal(km_queue_add_after(q, "late", 0.05), KM_OK);
    assert_int_equal(km_queue_delayed_len(q), 1);
    assert_int_equal(km_queue_get(q, -1, &k), KM_OK);
    assert_string_equal(k, "late");
    assert_int_equal(km_queue_delayed_len(q), 0);
    km_queue_done(q, k);
    free(k);
    /* several delays come out in due order */
    km_queue_add_after(q, "c", 0.06);
    km_queue_add_after(q, "a", 0.02);
    km_queue_add_after(q, "b", 0.04);
    km_queue_add_after(q, "now", 0);
    const char *want[] = {"now", "a", "b", "c"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(km_queue_get(q, -1, &k), KM_OK);
        assert_string_equal(k, want[i]);
        km_queue_done(q, k);
        free(k);
    }
    km_queue_free(q);
}

static void test_shutdown(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    km_queue_add(q, "a");
    km_queue_add(q, "b");
    km_queue_add_after(q, "delayed", 3600);
    km_queue_shutdown(q);
    assert_true(km_queue_shutting_down(q));
    assert_int_equal(km_queue_delayed_len(q), 0);
    km_queue_add(q, "ignored");
    km_queue_add_after(q, "ignored2", 0.001);
    km_queue_add_rate_limited(q, "ignored3");
    assert_int_equal(km_queue_len(q), 2);
    char *k = take(q); /* queued keys are still handed out */
    assert_string_equal(k, "a");
    km_queue_done(q, k);
    free(k);
    k = take(q);
    assert_string_equal(k, "b");
    km_queue_done(q, k);
    free(k);
    k = (char *)0x1;
    assert_int_equal(km_queue_get(q, -1, &k), KM_ECANCELED); /* does not block */
    assert_ptr_equal(k, (char *)0x1);
    km_queue_shutdown(q); /* idempotent */
    km_queue_free(q);
    km_queue_free(NULL);
}

typedef struct waiter {
    km_queue *q;
    km_status st;
} waiter;

static void *blocked_get(void *p)
{
    waiter *w = p;
    char *k = NULL;
    w->st = km_queue_get(w->q, -1, &k);
    free(k);
    return NULL;
}

/* A worker blocked in get() is woken by shutdown. */
static void test_shutdown_wakes_waiters(void **state)
{
    (void)state;
    km_queue *q = mkqueue();
    waiter w[2] = {{q, KM_OK}, {q, KM_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, blocked_get, &w[i]);
    km_queue_shutdown(q);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(w[i].st, KM_ECANCELED);
    }
    km_queue_free(q);
}

/* ---- concurrent workers ------------------------------------------------------------------- */

#define NKEYS 20
#define NWORKERS 4

typedef struct shared {
    km_queue *q;
    atomic_int inflight[NKEYS];
    atomic_int processed[NKEYS];
    atomic_int violations;
    atomic_int adds_left;
} shared;

static int key_index(const char *k)
{
    return (int)strtol(k + 1, NULL, 10);
}

static void *worker(void *p)
{
    shared *s = p;
    char *k = NULL;
    while (km_queue_get(s->q, -1, &k) == KM_OK) {
        int i = key_index(k);
        if (atomic_fetch_add(&s->inflight[i], 1) != 0)
            atomic_fetch_add(&s->violations, 1); /* two workers hold one key */
        /* re-add our own key while holding it (must be deferred, not handed out) */
        if (atomic_fetch_sub(&s->adds_left, 1) > 0)
            km_queue_add(s->q, k);
        for (volatile int spin = 0; spin < 1000; spin++)
            ;
        atomic_fetch_add(&s->processed[i], 1);
        atomic_fetch_sub(&s->inflight[i], 1);
        km_queue_done(s->q, k);
        free(k);
    }
    return NULL;
}

static void test_concurrent_workers_and_drain(void **state)
{
    (void)state;
    static shared s;
    memset(&s, 0, sizeof(s));
    s.q = mkqueue();
    atomic_store(&s.adds_left, 2000);
    pthread_t th[NWORKERS];
    for (int i = 0; i < NWORKERS; i++)
        pthread_create(&th[i], NULL, worker, &s);
    for (int round = 0; round < 200; round++) {
        for (int i = 0; i < NKEYS; i++) {
            char k[16];
            snprintf(k, sizeof(k), "k%d", i);
            km_queue_add(s.q, k);
        }
    }
    /* drain: returns only when nothing is queued or processing */
    km_queue_shutdown_drain(s.q);
    assert_int_equal(km_queue_len(s.q), 0);
    for (int i = 0; i < NKEYS; i++) {
        assert_int_equal(atomic_load(&s.inflight[i]), 0);
        assert_true(atomic_load(&s.processed[i]) >= 1);
    }
    for (int i = 0; i < NWORKERS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&s.violations), 0);
    km_queue_free(s.q);
}

/* Drain waits for a key being processed to be done. */
typedef struct slow {
    km_queue *q;
    atomic_int finished;
} slow;

static void *slow_worker(void *p)
{
    slow *s = p;
    char *k = NULL;
    while (km_queue_get(s->q, -1, &k) == KM_OK) {
        for (volatile long spin = 0; spin < 2000000; spin++)
            ;
        atomic_fetch_add(&s->finished, 1);
        km_queue_done(s->q, k);
        free(k);
    }
    return NULL;
}

static void test_drain_waits_for_processing(void **state)
{
    (void)state;
    slow s;
    s.q = mkqueue();
    atomic_init(&s.finished, 0);
    km_queue_add(s.q, "x");
    km_queue_add(s.q, "y");
    pthread_t th;
    pthread_create(&th, NULL, slow_worker, &s);
    km_queue_shutdown_drain(s.q);
    assert_int_equal(atomic_load(&s.finished), 2);
    pthread_join(th, NULL);
    km_queue_free(s.q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dedup_fifo),
        cmocka_unit_test(test_deferred_while_processing),
        cmocka_unit_test(test_backoff_math),
        cmocka_unit_test(test_rate_limited_add),
        cmocka_unit_test(test_add_after),
        cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_shutdown_wakes_waiters),
        cmocka_unit_test(test_concurrent_workers_and_drain),
        cmocka_unit_test(test_drain_waits_for_processing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
