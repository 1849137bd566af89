/* queue.h — a rate-limited, delaying work queue of string keys with controller-runtime's
 * (client-go workqueue) invariants:
 *
 *  - de-duplication: a key waiting in the queue is held once however often it is added;
 *  - a key is never held by two workers: between km_queue_get and km_queue_done a key is
 *    "processing"; adding it meanwhile only marks it dirty, and km_queue_done re-queues it;
 *  - per-key exponential backoff for retries: base * 2^failures (5 ms -> 1000 s by default),
 *    km_queue_add_rate_limited / km_queue_forget;
 *  - delayed adds (km_queue_add_after); a key already waiting for a later time is moved earlier;
 *  - shutdown: adds are ignored from then on, waiting delayed keys are dropped, workers still get
 *    the keys already queued and then KM_ECANCELED ("shut down"); km_queue_shutdown_drain also
 *    waits until every processing key is done.
 *
 * Thread-safe (one mutex, one condition variable on CLOCK_MONOTONIC).  Keys are copied. */
#ifndef KM_QUEUE_H
#define KM_QUEUE_H

#include <stddef.h>

#include "operator/base/err.h"

typedef struct km_queue km_queue;

typedef struct km_queue_opts {
    double base_delay; /* seconds, first retry delay (default 0.005) */
    double max_delay;  /* seconds, cap (default 1000) */
} km_queue_opts;

/* Fills o with the defaults. */
void km_queue_opts_init(km_queue_opts *o);

/* A new queue (o NULL = defaults) the caller frees with km_queue_free.  On failure (KM_ENOMEM)
 * *out is untouched. */
km_status km_queue_new(const km_queue_opts *o, km_queue **out);

/* Frees the queue.  No thread may be using it.  Accepts NULL. */
void km_queue_free(km_queue *q);

/* Queues key now (see the invariants above).  KM_OK also when it was ignored (duplicate, shut
 * down); KM_ENOMEM leaves the queue unchanged. */
km_status km_queue_add(km_queue *q, const char *key);

/* Queues key after `seconds` (<= 0: now).  KM_ENOMEM leaves the queue unchanged. */
km_status km_queue_add_after(km_queue *q, const char *key, double seconds);

/* Queues key after its backoff delay (km_queue_when) and counts a failure.  KM_ENOMEM: unchanged.
 */
km_status km_queue_add_rate_limited(km_queue *q, const char *key);

/* The delay the next rate-limited add of key would use (base * 2^failures, capped), and counts
 * the failure.  On allocation failure returns max_delay without counting. */
double km_queue_when(km_queue *q, const char *key);

/* Clears key's failure count (call after a successful reconcile). */
void km_queue_forget(km_queue *q, const char *key);

/* Failures counted for key since the last forget. */
unsigned km_queue_num_requeues(km_queue *q, const char *key);

/* Takes the next key, waiting up to timeout seconds (< 0 = forever).  On KM_OK *key is a
 * malloc'ed copy the caller passes to km_queue_done and then frees.  KM_ECANCELED when the
 * queue is shut down and empty, KM_ETIMEOUT when the wait ran out, KM_ENOMEM (nothing taken);
 * *key untouched then. */
km_status km_queue_get(km_queue *q, double timeout, char **key);

/* Ends the processing of key (from km_queue_get); re-queues it if it was added meanwhile. */
void km_queue_done(km_queue *q, const char *key);

/* Keys ready to be taken (not counting processing or delayed keys). */
size_t km_queue_len(km_queue *q);

/* Keys waiting for a delayed add. */
size_t km_queue_delayed_len(km_queue *q);

/* Starts shutting down (see above) and wakes every waiting worker.  Idempotent. */
void km_queue_shutdown(km_queue *q);

/* km_queue_shutdown, then waits until no key is queued or processing. */
void km_queue_shutdown_drain(km_queue *q);

/* Non-zero after km_queue_shutdown. */
int km_queue_shutting_down(km_queue *q);

#endif
