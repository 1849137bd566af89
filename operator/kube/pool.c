/* pool.c — N workers, a one-slot hand-over, the first failure wins (pool.h). */
#include "operator/kube/pool.h"

#include <pthread.h>
#include <stdlib.h>

#define POOL_MAX 64

typedef struct worker {
    struct km_pool *p;
    km_kube *kube;
    pthread_t th;
    int started;
} worker;

struct km_pool {
    km_pool_fn fn;
    void (*free_unit)(void *unit);
    void *user;
    km_kube *direct; /* one worker: units run in the caller on this client */
    worker w[POOL_MAX];
    int n;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* any change of slot, busy, failed or stop */
    void *slot;          /* the unit handed over, not yet taken; NULL = free */
    int has_slot;
    int busy; /* units taken and running */
    int stop;
    km_status failed; /* the first failure, KM_OK while none */
    km_err err;
};

static void *work(void *arg)
{
    worker *w = arg;
    km_pool *p = w->p;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->has_slot && !p->stop)
            pthread_cond_wait(&p->cond, &p->lock);
        if (!p->has_slot)
            break;
        void *unit = p->slot;
        p->slot = NULL;
        p->has_slot = 0;
        p->busy++;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
        km_err e;
        km_err_clear(&e);
        km_status st = p->fn(w->kube, unit, p->user, &e);
        pthread_mutex_lock(&p->lock);
        if (st != KM_OK && p->failed == KM_OK) {
            p->failed = st;
            p->err = e;
        }
        p->busy--;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

km_status km_pool_new(km_kube *kube, int workers, km_pool_fn fn, void (*free_unit)(void *unit),
                      void *user, km_pool **out, km_err *err)
{
    if (!kube || !fn || !free_unit || workers < 1 || workers > POOL_MAX)
        return km_err_set(err, KM_EINVAL, "pool: a client, callbacks and 1..%d workers", POOL_MAX);
    km_pool *p = calloc(1, sizeof(*p));
    if (!p)
        return km_err_set(err, KM_ENOMEM, "pool: out of memory");
    p->fn = fn;
    p->free_unit = free_unit;
    p->user = user;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    km_status st = KM_OK;
    if (workers == 1) {
        p->direct = kube;
        goto out;
    }
    for (; p->n < workers; p->n++) {
        worker *w = &p->w[p->n];
        w->p = p;
        if ((st = km_kube_clone(kube, &w->kube, err)) != KM_OK)
            goto out;
        if (pthread_create(&w->th, NULL, work, w) != 0) {
            st = km_err_set(err, KM_EIO, "pool: cannot start a worker thread");
            km_kube_free(w->kube);
            w->kube = NULL;
            goto out;
        }
        w->started = 1;
    }
out:
    if (st != KM_OK) {
        km_pool_free(p);
        return st;
    }
    *out = p;
    return KM_OK;
}

km_status km_pool_submit(km_pool *p, void *unit, km_err *err)
{
    if (p->direct) {
        if (p->failed != KM_OK) {
            p->free_unit(unit);
            if (err)
                *err = p->err;
            return p->failed;
        }
        km_status st = p->fn(p->direct, unit, p->user, &p->err);
        if (st != KM_OK) {
            p->failed = st;
            if (err)
                *err = p->err;
        }
        return st;
    }
    pthread_mutex_lock(&p->lock);
    while (p->failed == KM_OK && (p->has_slot || p->busy >= p->n))
        pthread_cond_wait(&p->cond, &p->lock);
    km_status st = p->failed;
    if (st == KM_OK) {
        p->slot = unit;
        p->has_slot = 1;
        pthread_cond_broadcast(&p->cond);
    } else if (err) {
        *err = p->err;
    }
    pthread_mutex_unlock(&p->lock);
    if (st != KM_OK)
        p->free_unit(unit);
    return st;
}

km_status km_pool_wait(km_pool *p, km_err *err)
{
    pthread_mutex_lock(&p->lock);
    while (p->has_slot || p->busy > 0)
        pthread_cond_wait(&p->cond, &p->lock);
    km_status st = p->failed;
    if (st != KM_OK && err)
        *err = p->err;
    pthread_mutex_unlock(&p->lock);
    return st;
}

void km_pool_free(km_pool *p)
{
    if (!p)
        return;
    if (p->n > 0) {
        (void)km_pool_wait(p, NULL);
        pthread_mutex_lock(&p->lock);
        p->stop = 1;
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    for (int i = 0; i < p->n; i++) {
        if (p->w[i].started)
            pthread_join(p->w[i].th, NULL);
        km_kube_free(p->w[i].kube);
    }
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}
