/* window.h — the CSR approval window: after the csr step's pass, a background approver
 * (approver.h) keeps deciding kubelet CSRs while the workers re-join —
 *   until status.csr.windowEndsAt (spec.csr.windowSeconds after the pass, or `run --once
 *   --csr-window SECONDS`), for ever with spec.csr.continuous (operator mode only), or, for
 *   `run --once` without --csr-window, as long as the rest of that run lasts.
 * The approver's decisions are queued on its thread and folded into status.csr (counters and
 * recent) by the thread that owns the status (km_csr_window_flush).  Whether the window is open
 * is recorded in status (the CSR condition True/WindowOpen and windowEndsAt), so a resumed
 * recovery re-opens it; the window object itself holds no state a crash could lose.
 *
 * The ClusterRecovery engine drives it; one thread calls everything but the hooks. */
#ifndef KM_CSR_WINDOW_H
#define KM_CSR_WINDOW_H

#include <stddef.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

typedef struct km_csr_window km_csr_window;

typedef struct km_csr_window_opts {
    km_kube *kube;     /* borrowed; must outlive the window (the approver clones it) */
    const cJSON *spec; /* the spec.csr block, defaults applied; copied */
    int once;          /* run --once: never continuous */
    long seconds;      /* > 0: overrides spec.csr.windowSeconds (--csr-window) */
    int dry_run;       /* a dry run opens no window: nothing is decided in the background */
    /* An Event to record; called from any thread. */
    void (*event)(const char *type, const char *reason, const char *message, void *user);
    /* A metrics counter ("csr_approved_total", ...); called from km_csr_window_flush. */
    void (*count)(const char *counter, long delta, void *user);
    void *user;
} km_csr_window_opts;

/* A closed window (no thread).  Caller frees *out with km_csr_window_free.  Failure: KM_ENOMEM;
 * *out untouched. */
km_status km_csr_window_new(const km_csr_window_opts *o, km_csr_window **out, km_err *err);

/* Stops the approver (if running) and frees the window.  Accepts NULL. */
void km_csr_window_free(km_csr_window *w);

/* The csr step's pass ended with message `pass`: sets csr.windowEndsAt (unless already set),
 * starts the approver (not in a dry run; failure is logged and reported as the Warning Event
 * ApproverNotStarted) and writes the reason ("WindowOpen", or "DryRun") and message of the step's
 * True condition into reason/msg (always NUL-terminated). */
void km_csr_window_open(km_csr_window *w, cJSON *csr, const char *pass, char *reason, size_t rn,
                        char *msg, size_t mn);

/* Non-zero when the window recorded in status is open at `now`: the step's condition is True with
 * reason cond_reason "WindowOpen" (NULL = not True), and it is continuous or before
 * csr.windowEndsAt. */
int km_csr_window_due(const km_csr_window *w, const cJSON *csr, const char *cond_reason,
                      time_t now);

/* After a resume: restarts the approver when the recorded window is still due (failure logged;
 * the next tick retries). */
void km_csr_window_resume(km_csr_window *w, const cJSON *csr, const char *cond_reason);

/* Folds the queued decisions into csr (counters, recent).  Returns 1 when csr changed. */
int km_csr_window_flush(km_csr_window *w, cJSON *csr);

/* One turn of an open window: folds decisions in, keeps the approver running while due, and
 * stops it once it is not (or when force_close).  When a window that status records as open
 * closes now, closed (size n) receives the message of the step's condition (True/WindowClosed;
 * also recorded as a Normal Event WindowClosed), else "".  *next_s (may be NULL) receives the
 * seconds until the next turn is useful, or -1 when the window is closed.  Returns 1 when csr
 * changed. */
int km_csr_window_tick(km_csr_window *w, cJSON *csr, const char *cond_reason, int force_close,
                       double *next_s, char *closed, size_t n);

/* Non-zero while the approver runs. */
int km_csr_window_running(const km_csr_window *w);

#endif
