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

#include "operator/cmd/manager.h"

/* The controller as the Manager runs it (registered with KM_REGISTER_RUNNABLE): start = the
 * watcher (read-only), lead = the workers, ready = the watcher's first list completed, collect =
 * queue depth and watch restarts, stop = everything (the runner is cancelled and joined: its
 * progress is in status; approvers stopped; queue drained; watcher stopped). */
extern const km_runnable km_recovery_controller;

#endif
