/* pace.c — the status lock and the global restart budget (see pace.h). */
#include "reconcilers/pods/pace.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct km_pods_pace {
    pthread_mutex_t status_mu; /* recursive: a save under an edit */
    pthread_mutex_t mu;        /* the budget */
    pthread_cond_t cv;         /* slots given back */
    int budget, in_use, peak;
};

km_status km_pods_pace_new(int budget, km_pods_pace **out, km_err *err)
{
    km_pods_pace *p = calloc(1, sizeof(*p));
    pthread_mutexattr_t a;
    if (!p)
        return km_err_set(err, KM_ENOMEM, "pods: out of memory");
    p->budget = budget > 0 ? budget : 1;
    if (pthread_mutexattr_init(&a) != 0) {
        free(p);
        return km_err_set(err, KM_EIO, "pods: cannot make a mutex");
    }
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    int bad = pthread_mutex_init(&p->status_mu, &a) != 0;
    pthread_mutexattr_destroy(&a);
    if (bad) {
        free(p);
        return km_err_set(err, KM_EIO, "pods: cannot make a mutex");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    *out = p;
    return KM_OK;
}

void km_pods_pace_free(km_pods_pace *p)
{
    if (!p)
        return;
    pthread_mutex_destroy(&p->status_mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

void km_pods_pace_lock(km_pods_pace *p)
{
    if (p)
        pthread_mutex_lock(&p->status_mu);
}

void km_pods_pace_unlock(km_pods_pace *p)
{
    if (p)
        pthread_mutex_unlock(&p->status_mu);
}

km_status km_pods_pace_take(km_pods_pace *p, int want, const atomic_int *cancel, int *got,
                            km_err *err)
{
    *got = 0;
    if (want < 1)
        want = 1;
    if (!p) {
        *got = want;
        return KM_OK;
    }
    pthread_mutex_lock(&p->mu);
    while (p->in_use >= p->budget && !(cancel && atomic_load(cancel))) {
        struct timespec ts; /* wakes up now and then to see the cancel flag */
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    if (p->in_use < p->budget) {
        int free_slots = p->budget - p->in_use;
        *got = want < free_slots ? want : free_slots;
        p->in_use += *got;
        if (p->in_use > p->peak)
            p->peak = p->in_use;
    }
    pthread_mutex_unlock(&p->mu);
    if (!*got)
        return km_err_set(err, KM_ECANCELED, "pods step cancelled");
    return KM_OK;
}

void km_pods_pace_give(km_pods_pace *p, int n)
{
    if (!p || n <= 0)
        return;
    pthread_mutex_lock(&p->mu);
    p->in_use -= n;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

int km_pods_pace_peak(km_pods_pace *p)
{
    if (!p)
        return 0;
    pthread_mutex_lock(&p->mu);
    int v = p->peak;
    pthread_mutex_unlock(&p->mu);
    return v;
}
