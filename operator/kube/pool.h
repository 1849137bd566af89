/* pool.h — a bounded window of API requests in flight: N worker threads, each with its own
 * client (km_kube_clone: its own connection, the family's shared rate limit and cancel flag).
 *
 * A step hands the pool one unit of work at a time (km_pool_submit), e.g. "fix this Secret";
 * submit blocks while N units are already running, so at most N requests are in flight and
 * memory stays bounded by N units.  km_pool_wait returns once every submitted unit finished —
 * call it at the end of each list page, so a resume marker written after it covers only
 * finished work.  With N = 1 no thread is started: units run in the caller, in order.
 *
 *   km_pool *p;  km_pool_new(kube, 8, &p, &err);
 *   for each item: km_pool_submit(p, fix_one, item_copy, &err);   // fix_one frees item_copy
 *   km_pool_wait(p, &err);  km_pool_free(p);
 *
 * Units run concurrently: what they share (counters, status) needs the caller's lock.
 */
#ifndef KM_POOL_H
#define KM_POOL_H

#include "operator/base/err.h"
#include "operator/kube/kube.h"

typedef struct km_pool km_pool;

/* One unit of work on the worker's own client.  Takes ownership of `unit` (frees it, also on
 * failure).  A non-KM_OK status is remembered (the first one wins) and ends the pool's work:
 * units submitted afterwards are freed without running (km_pool_submit says so). */
typedef km_status (*km_pool_fn)(km_kube *kube, void *unit, void *user, km_err *err);

/* A pool of `workers` (1..64) clients cloned from kube (borrowed: it must outlive the pool).
 * fn(kube, unit, user, err) runs each unit; free_unit(unit) frees a unit that does not run.
 * On success *out is a new pool the caller frees with km_pool_free; on failure (KM_EINVAL,
 * KM_ENOMEM, a clone's error, KM_EIO when a thread cannot start) *out is untouched and nothing
 * runs. */
km_status km_pool_new(km_kube *kube, int workers, km_pool_fn fn, void (*free_unit)(void *unit),
                      void *user, km_pool **out, km_err *err);

/* Hands `unit` (ownership taken) to the pool; blocks while every worker is busy.  Returns KM_OK,
 * or — when an earlier unit failed — that unit's status with its error copied to err, unit freed
 * unrun.  With one worker the unit runs here and its own status is returned. */
km_status km_pool_submit(km_pool *p, void *unit, km_err *err);

/* Waits until every submitted unit finished.  Returns KM_OK, or the first failed unit's status
 * (err filled); the pool stays usable after a failure only to be freed. */
km_status km_pool_wait(km_pool *p, km_err *err);

/* Waits for running units, stops the workers, frees their clients and the pool.  Accepts NULL. */
void km_pool_free(km_pool *p);

#endif
