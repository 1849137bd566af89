/* queue.c — rate-limited delaying work queue (client-go workqueue semantics). */
#include "watch/queue.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/array.h"
#include "operator/base/clock.h"
#include "operator/base/log.h"
#include "operator/base/strmap.h"

typedef struct delayed {
    char *key; /* owned */
    double due;
    size_t idx; /* position in the heap */
} delayed;

struct km_queue {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue changed: keys ready, delays changed, processing done, shutdown */
    km_queue_opts o;
    char **fifo; /* ring of owned key copies */
    size_t head, len, cap;
    km_strmap *dirty;      /* keys that need processing (queued or re-added while processing) */
    km_strmap *processing; /* keys held by a worker */
    km_strmap *failures;   /* key -> (uintptr_t) count */
    km_strmap *waiting;    /* key -> delayed* */
    delayed **heap;        /* min-heap on due */
    size_t nheap, capheap;
    int shutdown;
};

static void *const PRESENT = (void *)1;

void km_queue_opts_init(km_queue_opts *o)
{
    o->base_delay = 0.005;
    o->max_delay = 1000.0;
}

km_status km_queue_new(const km_queue_opts *o, km_queue **out)
{
    km_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return KM_ENOMEM;
    km_queue_opts_init(&q->o);
    if (o) {
        if (o->base_delay > 0)
            q->o.base_delay = o->base_delay;
        if (o->max_delay > 0)
            q->o.max_delay = o->max_delay;
    }
    q->dirty = km_strmap_new();
    q->processing = km_strmap_new();
    q->failures = km_strmap_new();
    q->waiting = km_strmap_new();
    if (!q->dirty || !q->processing || !q->failures || !q->waiting) {
        km_strmap_free(q->dirty);
        km_strmap_free(q->processing);
        km_strmap_free(q->failures);
        km_strmap_free(q->waiting);
        free(q);
        return KM_ENOMEM;
    }
    pthread_mutex_init(&q->mu, NULL);
    km_clock_cond_init(&q->cv, CLOCK_MONOTONIC);
    *out = q;
    return KM_OK;
}

static void drop_delayed(km_queue *q)
{
    for (size_t i = 0; i < q->nheap; i++) {
        km_strmap_remove(q->waiting, q->heap[i]->key);
        free(q->heap[i]->key);
        free(q->heap[i]);
    }
    q->nheap = 0;
}

void km_queue_free(km_queue *q)
{
    if (!q)
        return;
    drop_delayed(q);
    free(q->heap);
    for (size_t i = 0; i < q->len; i++)
        free(q->fifo[(q->head + i) % q->cap]);
    free(q->fifo);
    km_strmap_free(q->dirty);
    km_strmap_free(q->processing);
    km_strmap_free(q->failures);
    km_strmap_free(q->waiting);
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* ---- FIFO ring ------------------------------------------------------------------------------ */

static km_status fifo_push(km_queue *q, const char *key)
{
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        char **f = malloc(cap * sizeof(*f));
        if (!f)
            return KM_ENOMEM;
        for (size_t i = 0; i < q->len; i++)
            f[i] = q->fifo[(q->head + i) % q->cap];
        free(q->fifo);
        q->fifo = f;
        q->cap = cap;
        q->head = 0;
    }
    char *copy = strdup(key);
    if (!copy)
        return KM_ENOMEM;
    q->fifo[(q->head + q->len) % q->cap] = copy;
    q->len++;
    return KM_OK;
}

static char *fifo_pop(km_queue *q)
{
    char *k = q->fifo[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return k;
}

/* ---- delay heap ----------------------------------------------------------------------------- */

static void heap_swap(km_queue *q, size_t a, size_t b)
{
    delayed *t = q->heap[a];
    q->heap[a] = q->heap[b];
    q->heap[b] = t;
    q->heap[a]->idx = a;
    q->heap[b]->idx = b;
}

static void heap_up(km_queue *q, size_t i)
{
    while (i > 0 && q->heap[(i - 1) / 2]->due > q->heap[i]->due) {
        heap_swap(q, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(km_queue *q, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->nheap && q->heap[l]->due < q->heap[m]->due)
            m = l;
        if (r < q->nheap && q->heap[r]->due < q->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(q, i, m);
        i = m;
    }
}

/* ---- adding --------------------------------------------------------------------------------- */

static km_status add_locked(km_queue *q, const char *key)
{
    if (km_strmap_has(q->dirty, key))
        return KM_OK;
    km_status st = km_strmap_put(q->dirty, key, PRESENT, NULL);
    if (st != KM_OK)
        return st;
    if (km_strmap_has(q->processing, key))
        return KM_OK; /* deferred: km_queue_done re-queues it */
    st = fifo_push(q, key);
    if (st != KM_OK) {
        km_strmap_remove(q->dirty, key);
        return st;
    }
    pthread_cond_signal(&q->cv);
    return KM_OK;
}

/* Moves delayed keys that are due into the queue. */
static void promote_due(km_queue *q, double now)
{
    while (q->nheap > 0 && q->heap[0]->due <= now) {
        delayed *d = q->heap[0];
        q->nheap--;
        if (q->nheap > 0) {
            q->heap[0] = q->heap[q->nheap];
            q->heap[0]->idx = 0;
            heap_down(q, 0);
        }
        km_strmap_remove(q->waiting, d->key);
        if (add_locked(q, d->key) != KM_OK)
            km_log_error("work queue: out of memory, dropped a delayed key");
        free(d->key);
        free(d);
    }
}

km_status km_queue_add(km_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    km_status st = q->shutdown ? KM_OK : add_locked(q, key);
    pthread_mutex_unlock(&q->mu);
    return st;
}

static km_status add_after_locked(km_queue *q, const char *key, double seconds)
{
    if (seconds <= 0)
        return add_locked(q, key);
    double due = km_clock_mono() + seconds;
    delayed *d = km_strmap_get(q->waiting, key);
    if (d) {
        if (due < d->due) {
            d->due = due;
            heap_up(q, d->idx);
            pthread_cond_broadcast(&q->cv);
        }
        return KM_OK;
    }
    if (km_array_grow(&q->heap, q->nheap, &q->capheap, sizeof(*q->heap)) != KM_OK)
        return KM_ENOMEM;
    d = calloc(1, sizeof(*d));
    if (!d)
        return KM_ENOMEM;
    d->key = strdup(key);
    if (!d->key || km_strmap_put(q->waiting, key, d, NULL) != KM_OK) {
        free(d->key);
        free(d);
        return KM_ENOMEM;
    }
    d->due = due;
    d->idx = q->nheap;
    q->heap[q->nheap++] = d;
    heap_up(q, d->idx);
    pthread_cond_broadcast(&q->cv); /* waiters recompute their wake-up time */
    return KM_OK;
}

km_status km_queue_add_after(km_queue *q, const char *key, double seconds)
{
    pthread_mutex_lock(&q->mu);
    km_status st = q->shutdown ? KM_OK : add_after_locked(q, key, seconds);
    pthread_mutex_unlock(&q->mu);
    return st;
}

static double when_locked(km_queue *q, const char *key)
{
    uintptr_t n = (uintptr_t)km_strmap_get(q->failures, key);
    /* base * 2^n, computed so that huge n cannot overflow */
    double d = n >= 64 ? q->o.max_delay : ldexp(q->o.base_delay, (int)n);
    if (d > q->o.max_delay)
        d = q->o.max_delay;
    if (km_strmap_put(q->failures, key, (void *)(n + 1), NULL) != KM_OK)
        return q->o.max_delay;
    return d;
}

double km_queue_when(km_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    double d = when_locked(q, key);
    pthread_mutex_unlock(&q->mu);
    return d;
}

km_status km_queue_add_rate_limited(km_queue *q, const char *key)
{
    km_status st = KM_OK;
    pthread_mutex_lock(&q->mu);
    if (!q->shutdown)
        st = add_after_locked(q, key, when_locked(q, key));
    pthread_mutex_unlock(&q->mu);
    return st;
}

void km_queue_forget(km_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    km_strmap_remove(q->failures, key);
    pthread_mutex_unlock(&q->mu);
}

unsigned km_queue_num_requeues(km_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    uintptr_t n = (uintptr_t)km_strmap_get(q->failures, key);
    pthread_mutex_unlock(&q->mu);
    return (unsigned)n;
}

/* ---- taking --------------------------------------------------------------------------------- */

km_status km_queue_get(km_queue *q, double timeout, char **key)
{
    km_status st = KM_OK;
    pthread_mutex_lock(&q->mu);
    double deadline = timeout >= 0 ? km_clock_mono() + timeout : -1;
    for (;;) {
        double now = km_clock_mono();
        promote_due(q, now);
        if (q->len > 0)
            break;
        if (q->shutdown) {
            st = KM_ECANCELED;
            goto out;
        }
        if (deadline >= 0 && now >= deadline) {
            st = KM_ETIMEOUT;
            goto out;
        }
        double wake = deadline;
        if (q->nheap > 0 && (wake < 0 || q->heap[0]->due < wake))
            wake = q->heap[0]->due;
        if (wake < 0) {
            pthread_cond_wait(&q->cv, &q->mu);
        } else {
            struct timespec ts = km_clock_deadline(CLOCK_MONOTONIC, wake - now);
            pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        }
    }
    char *k = q->fifo[q->head];
    if (km_strmap_put(q->processing, k, PRESENT, NULL) != KM_OK) {
        st = KM_ENOMEM;
        goto out;
    }
    fifo_pop(q);
    km_strmap_remove(q->dirty, k);
    *key = k;
out:
    pthread_mutex_unlock(&q->mu);
    return st;
}

void km_queue_done(km_queue *q, const char *key)
{
    pthread_mutex_lock(&q->mu);
    if (km_strmap_remove(q->processing, key) && km_strmap_has(q->dirty, key)) {
        if (fifo_push(q, key) != KM_OK) {
            km_strmap_remove(q->dirty, key);
            km_log_error("work queue: out of memory, dropped a re-added key");
        }
    }
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

size_t km_queue_len(km_queue *q)
{
    pthread_mutex_lock(&q->mu);
    promote_due(q, km_clock_mono());
    size_t n = q->len;
    pthread_mutex_unlock(&q->mu);
    return n;
}

size_t km_queue_delayed_len(km_queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t n = q->nheap;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void km_queue_shutdown(km_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutdown = 1;
    drop_delayed(q);
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
}

void km_queue_shutdown_drain(km_queue *q)
{
    pthread_mutex_lock(&q->mu);
    q->shutdown = 1;
    drop_delayed(q);
    pthread_cond_broadcast(&q->cv);
    while (q->len > 0 || km_strmap_len(q->processing) > 0)
        pthread_cond_wait(&q->cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
}

int km_queue_shutting_down(km_queue *q)
{
    pthread_mutex_lock(&q->mu);
    int s = q->shutdown;
    pthread_mutex_unlock(&q->mu);
    return s;
}
