/* controller.h — the ClusterRecovery controller of `kubemend operator`: one watcher on
 * clusterrecoveries (with a store), a work queue, N workers and one runner thread.
 *
 * Workers reconcile one ClusterRecovery per key, quickly, with one handler per state:
 *   on_gone           stop its run / approval window;
 *   on_deleting       (deletionTimestamp) stop its run (cancel + wait), close its window, remove
 *                     the finalizer kubemend.io/finalizer (resourceVersion-guarded merge patch);
 *   ensure_finalizer  no finalizer yet: add it (guarded merge patch);
 *   on_completed      keep its CSR approval window ticking (requeue) until windowEndsAt;
 *   on_pending        the active one (km_recovery_pick_active) starts the runner when nothing
 *                     runs; the others are marked Waiting for the running/active one.
 * The runner executes km_recovery_run once (long: steps with progress in status).  The work
 * queue is the one retry policy: a failed reconcile and an interrupted run go back to it rate
 * limited (per key, 1 s doubling to 60 s) and resume from status.  Status-only changes (our own
 * writes) do not enqueue.  Only one recovery runs at a time.  All writes happen from workers
 * and the runner, which only exist while this process leads (km_recovery_ctl_start_workers is
 * called on becoming leader). */
#ifndef KM_RECOVERY_CTL_H
#define KM_RECOVERY_CTL_H

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "operator/serve/metrics.h"
#include "operator/kube/events.h"

typedef struct km_recovery_ctl km_recovery_ctl;

typedef struct km_recovery_ctl_opts {
    km_kube *kube;              /* borrowed; cloned for every thread */
    km_events *events;          /* borrowed, may be NULL */
    km_metrics *metrics;        /* borrowed, may be NULL (a km_metrics_new_default registry) */
    const char *current_ca_pem; /* borrowed, may be NULL */
    int workers;                /* 0 = 2 */
} km_recovery_ctl_opts;

/* Creates the controller and starts its watcher (read-only).  Caller frees with
 * km_recovery_ctl_free.  Failure: KM_ENOMEM, KM_EIO (thread), the watcher's error; *out
 * untouched, nothing running. */
km_status km_recovery_ctl_start(const km_recovery_ctl_opts *o, km_recovery_ctl **out, km_err *err);

/* Starts the workers (call once this process leads).  Idempotent.  KM_EIO when a thread cannot
 * be created (the ones started keep running). */
km_status km_recovery_ctl_start_workers(km_recovery_ctl *c, km_err *err);

/* 1 once the watcher's first list completed. */
int km_recovery_ctl_synced(km_recovery_ctl *c);

/* Updates gauges/counters that are sampled (queue depth, watch restarts).  Thread-safe. */
void km_recovery_ctl_sample_metrics(km_recovery_ctl *c);

/* Stops everything (runner cancelled and joined: its progress is in status; approvers stopped;
 * queue drained; watcher stopped) and frees.  Accepts NULL. */
void km_recovery_ctl_free(km_recovery_ctl *c);

#endif
