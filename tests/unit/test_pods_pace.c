/* test_pods_pace.c — the pods step's global restart budget (reconcilers/pods/pace.h): a batch
 * takes the free slots (at least one), never more than the budget across threads, and a waiting
 * take ends on the cancel flag. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "reconcilers/pods/pace.h"

static void test_take_what_is_free(void **state)
{
    (void)state;
    km_pods_pace *p = NULL;
    int got = 0;
    assert_int_equal(km_pods_pace_new(5, &p, NULL), KM_OK);
    assert_int_equal(km_pods_pace_take(p, 3, NULL, &got, NULL), KM_OK);
    assert_int_equal(got, 3);
    assert_int_equal(km_pods_pace_take(p, 4, NULL, &got, NULL), KM_OK);
    assert_int_equal(got, 2); /* only 2 left: the batch shrinks, it does not wait holding slots */
    km_pods_pace_give(p, 3);
    assert_int_equal(km_pods_pace_take(p, 9, NULL, &got, NULL), KM_OK);
    assert_int_equal(got, 3);
    assert_int_equal(km_pods_pace_peak(p), 5);
    km_pods_pace_free(p);
    /* serial (no pace): the whole batch at once */
    assert_int_equal(km_pods_pace_take(NULL, 4, NULL, &got, NULL), KM_OK);
    assert_int_equal(got, 4);
    km_pods_pace_free(NULL);
}

static void test_cancel_ends_a_waiting_take(void **state)
{
    (void)state;
    km_pods_pace *p = NULL;
    atomic_int cancel = 1;
    int got = 0;
    km_err e;
    assert_int_equal(km_pods_pace_new(1, &p, NULL), KM_OK);
    assert_int_equal(km_pods_pace_take(p, 1, NULL, &got, NULL), KM_OK);
    assert_int_equal(km_pods_pace_take(p, 1, &cancel, &got, &e), KM_ECANCELED);
    assert_int_equal(got, 0);
    km_pods_pace_free(p);
}

typedef struct worker {
    km_pods_pace *p;
    atomic_int *in_use, *max_seen;
} worker;

static void *run(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 200; i++) {
        int got = 0;
        km_pods_pace_take(w->p, 3, NULL, &got, NULL);
        int now = atomic_fetch_add(w->in_use, got) + got;
        int m = atomic_load(w->max_seen);
        while (now > m && !atomic_compare_exchange_weak(w->max_seen, &m, now))
            ;
        struct timespec ts = {0, 20000};
        nanosleep(&ts, NULL);
        atomic_fetch_sub(w->in_use, got);
        km_pods_pace_give(w->p, got);
    }
    return NULL;
}

static void test_never_more_than_the_budget_across_threads(void **state)
{
    (void)state;
    km_pods_pace *p = NULL;
    atomic_int in_use = 0, max_seen = 0;
    pthread_t t[6];
    worker w = {NULL, &in_use, &max_seen};
    assert_int_equal(km_pods_pace_new(4, &p, NULL), KM_OK);
    w.p = p;
    for (int i = 0; i < 6; i++)
        assert_int_equal(pthread_create(&t[i], NULL, run, &w), 0);
    for (int i = 0; i < 6; i++)
        pthread_join(t[i], NULL);
    assert_true(atomic_load(&max_seen) <= 4);
    assert_true(km_pods_pace_peak(p) <= 4);
    km_pods_pace_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_take_what_is_free),
        cmocka_unit_test(test_cancel_ends_a_waiting_take),
        cmocka_unit_test(test_never_more_than_the_budget_across_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
