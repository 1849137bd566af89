/* recovery.h — reconcilers/recovery: the ClusterRecovery.  In reading order: recovery.h (this
 * file: one recovery's run, the engine), spec.h (the step table and the document), controller.h
 * (the operator's controller, registered with the Manager), once.c (`run --once`, the
 * Manager's job), persist.h (the /status write), finalizer.h.
 *
 * The ClusterRecovery lifecycle: the steps in order (tokens ->
 * extensionApiserverAuthentication -> csr (the approval window opens) -> pods, then the tokens
 * step's settle: the wait for the tokens controller; the step table
 * and the spec are in reconcilers/recovery/spec.h), progress in status after every unit of
 * work, resume from status, the CSR approval window.
 *
 * A km_recovery wraps ONE ClusterRecovery object (its own copy) and is driven by one thread
 * (km_recovery_run, km_recovery_window_tick); km_recovery_cancel may be called from any thread.
 *
 * Status semantics (see reconcilers/step/conditions.h for conditions):
 *   phase Running / Succeeded / Failed, currentStep (the step running, "" when done), progress,
 *   startedAt, completedAt, observedGeneration = metadata.generation the run acted on.
 *   One condition per step (TokensRegenerated, ExtensionAuthCleaned, CSRApprovalWindow,
 *   PodsRestarted): Unknown/InProgress while it runs, True or False when it finished (True/
 *   Disabled for a disabled step), Unknown/Retrying after a transient error.  A step whose
 *   condition is True or False is finished and skipped on resume; the current step resumes from
 *   its own status object.  Summary condition Succeeded: Unknown/Running, then True/Completed,
 *   or False/<Step>Failed when a step failed or finished False (the remaining steps still run
 *   after a step that finished False; a step that returned an error ends the run).
 *   A step with a settle hook (step.h; the tokens step) may end its run handing work to the
 *   cluster: its condition stays Unknown with its reason (TokensRegenerated Unknown/Refilling,
 *   Event StepWaiting), the later steps run meanwhile, and its settle runs after them and makes
 *   the condition final before Succeeded is decided (a settle that finishes False counts as that
 *   step's failure; the first failed step in order is named).  After a restart its run is called
 *   again (it hands off at once) and its settle after the later steps.
 *   Condition Verified (reconcilers/recovery/verify.h): Unknown/Verifying in the final status
 *   write, then every step's verify hook (read-only, from the server's answers) folded into
 *   True/Healed, False/NotHealed (what is left) or Unknown/VerifyFailed, persisted.
 *   After completion nothing runs again, even when the spec changes later (observedGeneration
 *   stays the generation that ran), except each step's `last` hook, once, right after Verified
 *   was written (the pods step restarting kubemend's own Deployment).
 *   status.rebuild {time, source} (or {error}): when the PKI was rebuilt (rebuild.h), settled at
 *   the start before any step runs — --rebuild-time, else spec.rebuildTime, else what an
 *   earlier attempt recorded, else derived from the cluster's CA (an Event says which); steps
 *   get it as km_step_ctx.rebuilt_at. */
#ifndef KM_RECOVERY_H
#define KM_RECOVERY_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "operator/kube/events.h"

#define KM_RECOVERY_GROUP "kubemend.io"
#define KM_RECOVERY_VERSION "v1alpha1"
#define KM_RECOVERY_API_VERSION "kubemend.io/v1alpha1"
#define KM_RECOVERY_KIND "ClusterRecovery"
#define KM_RECOVERY_PLURAL "clusterrecoveries"
#define KM_RECOVERY_FINALIZER "kubemend.io/finalizer"

/* The summary condition of a ClusterRecovery (each step's own is in its km_step_def). */
#define KM_COND_SUCCEEDED "Succeeded"
/* spec.paused (the user's brake): True/UserPaused while a run stopped for it, False/UserResumed
 * once a run resumed. */
#define KM_COND_PAUSED "Paused"

/* Phases. */
#define KM_PHASE_PENDING "Pending"
#define KM_PHASE_WAITING "Waiting"
#define KM_PHASE_RUNNING "Running"
#define KM_PHASE_SUCCEEDED "Succeeded"
#define KM_PHASE_FAILED "Failed"

/* Index of the recovery that may run now among objs[0..n) (ClusterRecovery objects): one that
 * is neither completed (phase Succeeded/Failed) nor being deleted; a Running one first (resume),
 * else the oldest creationTimestamp (ties: name).  -1 when none. */
int km_recovery_pick_active(const cJSON *const *objs, size_t n);

/* A new reference to obj for Events: {apiVersion, kind, metadata{name, uid}} (list items carry
 * no apiVersion/kind).  Caller frees with cJSON_Delete; NULL when out of memory. */
cJSON *km_recovery_ref(const cJSON *obj);

/* 1 when obj's phase is Succeeded or Failed. */
int km_recovery_is_completed(const cJSON *obj);

typedef struct km_recovery km_recovery;

typedef struct km_recovery_opts {
    km_kube *kube;              /* borrowed; used by the driving thread only */
    km_events *events;          /* borrowed, may be NULL (log only) */
    const atomic_int *stop;     /* borrowed, may be NULL: process shutdown */
    int persist;                /* 1 = write status through the API (/status, optimistic) */
    int once;                   /* run --once: the approver only lives until km_recovery_free */
    unsigned steps;             /* mask of selected steps; 0 = all.  Unselected = Disabled */
    int dry_run;                /* 1 forces dryRun on (OR-ed with spec.dryRun) */
    long csr_window;            /* > 0: overrides spec.csr.windowSeconds */
    const char *current_ca_pem; /* borrowed, may be NULL */
    /* Optional: each progress text (terminal output of run --once). */
    void (*progress)(const char *recovery, const char *step, const char *text, void *user);
    /* Optional: per-step counters (metrics), counter like "tokens_regenerated_total". */
    void (*count)(const char *step, const char *counter, long delta, void *user);
    void *user;
    /* appended */
    const char *rebuild_time; /* borrowed, may be NULL: --rebuild-time (RFC 3339), overrides
                                 spec.rebuildTime and the derived time */
} km_recovery_opts;

/* Wraps a copy of obj (a ClusterRecovery; its spec is validated and defaulted).  o is copied
 * (its pointers stay borrowed).  Caller frees *out with km_recovery_free.  Failure: KM_EINVAL
 * for an invalid spec, KM_ENOMEM; *out untouched. */
km_status km_recovery_new(const cJSON *obj, const km_recovery_opts *o, km_recovery **out,
                          km_err *err);

/* Stops the approver (if running) and frees everything.  Accepts NULL. */
void km_recovery_free(km_recovery *r);

/* The current object with our status (borrowed; valid until the next call on r). */
const cJSON *km_recovery_object(const km_recovery *r);

/* Runs (or resumes) the recovery until it completes.  Returns KM_OK once the phase is Succeeded
 * or Failed (also when it was already completed: then nothing runs).  Other returns mean the
 * run was interrupted and can be resumed later from status: KM_ECANCELED (km_recovery_cancel,
 * the stop flag, or the object is being deleted — see km_recovery_deleting), or the step's /
 * status write's error (transient: the caller retries with backoff).  When opts.persist is 0,
 * transient step errors are retried here with backoff until the retry policy's deadline
 * (reconcilers/step/retry.h) and then fail the step. */
km_status km_recovery_run(km_recovery *r, km_err *err);

/* Marks the object as Waiting for `running` (condition Succeeded Unknown/WaitingForOtherRecovery)
 * and persists it when something changed.  Failure: the /status write's error. */
km_status km_recovery_mark_waiting(km_recovery *r, const char *running, km_err *err);

/* For an open CSR approval window: folds the approver's decisions into status.csr, closes the
 * window at windowEndsAt (unless continuous), restarts the approver after a resume when the
 * window is still open, persists when something changed.  *next_s (may be NULL) receives the
 * seconds until the next tick is useful, or -1 when the window is closed (nothing to do).
 * Failure: the /status write's error (the decisions stay queued). */
km_status km_recovery_window_tick(km_recovery *r, double *next_s, km_err *err);

/* Closes the window now: stops the approver, folds its decisions into status.csr, and marks an
 * open window WindowClosed; persists when something changed.  Failure: the /status write's
 * error. */
km_status km_recovery_window_close(km_recovery *r, km_err *err);

/* 1 while the approver runs. */
int km_recovery_window_open(const km_recovery *r);

/* Stops the run soon (thread-safe): steps see their cancel flag, the run returns KM_ECANCELED. */
void km_recovery_cancel(km_recovery *r);

/* The user's brake (spec.paused), thread-safe: like km_recovery_cancel, but the run, once its
 * step stopped at its next safe point (between units of work, status saved), writes condition
 * Paused True/UserPaused and returns KM_ECANCELED; the phase stays Running (resumable: a later
 * km_recovery_run on a new km_recovery with spec.paused false resumes from status, writing Paused
 * False/UserResumed).  km_recovery_run on a spec with paused true does the same at once. */
void km_recovery_pause(km_recovery *r);

/* Condition Paused True/UserPaused (progress "paused"), persisted when it changed (operator
 * mode).  Failure: the /status write's error. */
km_status km_recovery_mark_paused(km_recovery *r, km_err *err);

/* 1 when the last object seen has a deletionTimestamp. */
int km_recovery_deleting(const km_recovery *r);

/* Pure: non-zero when obj is a completed recovery whose Verified condition must be checked
 * again: KM_REVERIFY_INTERRUPTED when its verification was interrupted (Unknown/Verifying: the
 * operator stopped between the final status and Verified), KM_REVERIFY_BRIDGED when the server
 * was still bridged (reconcilers/bridge/retire.h); 0 otherwise. */
#define KM_REVERIFY_INTERRUPTED 1
#define KM_REVERIFY_BRIDGED 2
int km_recovery_needs_reverify(const cJSON *obj);

/* For a completed recovery: reads the bridge again (BridgeRetirable), runs every verify hook and
 * writes Verified (persisted in operator mode).  *again_s (may be NULL) receives the seconds until
 * the next check is useful (the server still bridged), else -1.  Failure: KM_ENOMEM only (a
 * hook's read error is Verified Unknown). */
km_status km_recovery_reverify(km_recovery *r, double *again_s, km_err *err);

/* Replaces the wrapped object's metadata and spec by those of fresh (same uid), keeping our
 * status.  KM_ESTATE when fresh is another object (uid differs), KM_ENOMEM. */
km_status km_recovery_refresh(km_recovery *r, const cJSON *fresh, km_err *err);

#endif
