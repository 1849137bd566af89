/* step.h — reconcilers/step: what every recovery step is and gets.  Read this first when adding
 * or changing a step (then a step's folder: reconcilers/tokens, extauth, csr, pods).
 *
 * A step is a km_step_def: its keys and condition, its spec block's schema with the defaults
 * (schema.h: declared once, next to the step's code) and its function.  The ClusterRecovery
 * engine (reconcilers/recovery) runs the steps of its table in order; it owns the object and its
 * status, and hands each step a km_step_ctx: the step's spec block (defaults applied), the
 * step's own status sub-object to edit in place, and callbacks to persist status, record Events
 * and report progress.  A step must be resumable: everything it needs to continue after a crash
 * is in its status object (persisted through ctx->save after every unit of work), and re-running
 * a finished unit must change nothing.
 *
 * The folder also holds what steps share: conditions.h (metav1.Condition lists) and schema.h. */
#ifndef KM_STEP_H
#define KM_STEP_H

#include <stdatomic.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/step/schema.h"

typedef struct km_step_ctx km_step_ctx;
typedef struct km_step_def km_step_def;

struct km_step_ctx {
    const km_step_def *def;     /* the step being run (its schema gives the defaults) */
    km_kube *kube;              /* borrowed; owned by the calling thread */
    const cJSON *spec;          /* the step's spec block, defaults applied; never NULL */
    cJSON *status;              /* the step's status object (e.g. status.tokens); edit in place */
    int dry_run;                /* compute and report everything, change nothing */
    const char *recovery;       /* ClusterRecovery name */
    const char *started_at;     /* RFC3339 status.startedAt of the recovery */
    const char *current_ca_pem; /* the operator's own CA bundle (kubeconfig / in-cluster ca.crt) */
    const atomic_int *cancel;   /* non-zero: stop soon, return KM_ECANCELED */

    /* Filled by the step before it returns KM_OK: its condition.  cond_status "True" (done) or
     * "False" (finished but not healthy, e.g. Secrets that did not heal); reason CamelCase. */
    char cond_status[8];
    char cond_reason[64];
    char cond_message[512];

    /* Persists the recovery's status now (a /status write with optimistic concurrency; the
     * orchestrator retries conflicts).  Call after every unit of work.  Failure: the caller
     * should return the error (the orchestrator retries the step later, from status). */
    km_status (*save)(km_step_ctx *ctx, km_err *err);
    /* Records an Event on the ClusterRecovery ("Normal"/"Warning", CamelCase reason). */
    void (*event)(km_step_ctx *ctx, const char *type, const char *reason, const char *message);
    /* Sets the short progress text shown by `kubectl get crec` (persisted with the next save). */
    void (*progress)(km_step_ctx *ctx, const char *text);
    /* Adds delta to a per-step metrics counter (name like "tokens_regenerated_total"). */
    void (*count)(km_step_ctx *ctx, const char *counter, long delta);
    void *user; /* the orchestrator's */

    /* appended */
    /* When the cluster's PKI was rebuilt (reconcilers/recovery/rebuild.h: derived from the
     * cluster's CA before any step ran, or spec.rebuildTime / --rebuild-time; status.rebuild):
     * what "stale" is measured against.  0 = unknown (rebuild_note says why). */
    time_t rebuilt_at;
    const char *rebuild_note; /* where rebuilt_at came from, or why it is unknown; may be NULL */
    /* The current cluster CA (reconcilers/recovery/rebuild.h: the certificate the rebuild time
     * is read from), as one PEM block into *pem (malloc'ed, caller frees); reads the cluster
     * each call.  May be NULL (then no CA is known).  Failure: the read's error, KM_ENOTFOUND
     * when nothing tells; *pem untouched. */
    km_status (*cluster_ca)(km_step_ctx *ctx, char **pem, km_err *err);
    /* The step's memory from run to settle within this process (see km_step_def.settle): what
     * run stores in *keep is handed to settle and freed by the engine with def->keep_free.  NULL
     * when the runner keeps nothing (then *keep is never set); *keep is NULL again after a
     * restart: settle then works from status. */
    void **keep;
};

/* A step: KM_OK when it ran to its end (see cond_*); another status when it could not (the
 * orchestrator records err in the step's condition and retries transient errors with backoff). */
typedef km_status (*km_step_fn)(km_step_ctx *ctx, km_err *err);

/* One step, as the engine's step table holds it. */
struct km_step_def {
    const char *key;         /* spec and status key: "tokens", "extensionApiserverAuthentication" */
    const char *flag;        /* its name for --steps: "tokens", "extauth" */
    const char *cond;        /* its condition type: "TokensRegenerated" */
    const char *fail_reason; /* the Succeeded=False reason when it failed: "TokensFailed" */
    const km_field *fields;  /* its spec block (KM_FIELD_END-terminated, defaults included) */
    /* Rules across fields (the CRD's CEL rules) on the defaulted block; NULL = none.  Failure:
     * KM_EINVAL with "spec.<key>...: <problem>". */
    km_status (*check)(const cJSON *block, km_err *err);
    km_step_fn run;
    /* appended */
    /* Optional: runs once after the recovery's final status was persisted (phase Succeeded or
     * Failed), for what must come last (the pods step restarting kubemend's own Deployment).
     * ctx as for run, ctx->status the step's final status (save persists it again); the
     * condition fields are ignored.  Its errors are the step's to report (status, Events). */
    km_step_fn last;
    /* Optional: re-checks, from the server's answers only, that what this step repairs is healed
     * (the recovery's Verified condition, after every step ran).  Sets ctx's condition fields:
     * "True" when healed, "False" with what is left (names, counts) in cond_message.  ctx as for
     * run (ctx->status the step's final status, read-only by convention); writes nothing to the
     * cluster.  Failure (could not read): the error; the engine reports Verified Unknown. */
    km_step_fn verify;
    /* Optional: the second half of a step whose run handed work to the cluster and need not
     * hold up the later steps (the tokens controller refilling regenerated Secrets while the
     * pods step restarts workloads).  run then returns KM_OK with cond_status "Unknown" (reason
     * and message say what is awaited); the engine records that condition, runs the later
     * steps, and calls settle before the recovery's outcome is decided: settle waits for that
     * work and sets the final condition (True/False) as run would.  Same contract as run
     * (resumable, KM_ECANCELED, errors retried by the engine).  After a restart the engine calls
     * run again (its status says only the wait is left: it returns "Unknown" at once), then
     * settle after the later steps.  A step without settle never returns "Unknown" (the engine
     * would record False). */
    km_step_fn settle;
    /* Frees what run left in *ctx->keep (NULL accepted); NULL when the step keeps nothing. */
    void (*keep_free)(void *kept);
};

/* The step's setting `name` from ctx->spec, or its declared default (schema.h). */
long km_step_int(const km_step_ctx *ctx, const char *name);
int km_step_bool(const km_step_ctx *ctx, const char *name);
const char *km_step_str(const km_step_ctx *ctx, const char *name);

/* Null-safe calls of the context's callbacks (a runner may leave any of them NULL). */
/* Non-zero once the step should stop (ctx->cancel set). */
int km_step_cancelled(const km_step_ctx *ctx);
/* ctx->save, or KM_OK without one.  Failure: the save's status (err filled). */
km_status km_step_save(km_step_ctx *ctx, km_err *err);
/* ctx->event, if set. */
void km_step_event(km_step_ctx *ctx, const char *type, const char *reason, const char *message);
/* km_step_event with a printf-style message (truncated to 1 KiB). */
void km_step_eventf(km_step_ctx *ctx, const char *type, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* ctx->count, if set. */
void km_step_count(km_step_ctx *ctx, const char *counter, long delta);

/* Sets the condition fields of ctx (truncating). */
void km_step_set_result(km_step_ctx *ctx, const char *status, const char *reason, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* Appends s to the string array `key` of obj (created if missing) unless it already holds max
 * entries or s.  Returns KM_OK, or KM_ENOMEM (obj unchanged). */
km_status km_step_list_add(cJSON *obj, const char *key, const char *s, int max);

/* Adds delta to the number `key` of obj (created as 0 if missing). */
void km_step_counter_add(cJSON *obj, const char *key, long delta);

#endif
