/* window.c — the CSR approval window (see window.h). */
#include "reconcilers/csr/window.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/array.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "reconcilers/csr/approver.h"
#include "reconcilers/csr/csr.h"

#define PENDING_MAX 10000 /* decisions queued between two flushes (more are only counted) */
#define TICK_S 10.0

struct km_csr_window {
    km_csr_window_opts o;
    cJSON *spec; /* owned copy of spec.csr */
    int continuous;
    km_csr_approver *approver; /* while open */

    pthread_mutex_t mu; /* guards the queue (the approver's thread adds) */
    km_csr_result *queue;
    size_t nqueue, capqueue;
    unsigned long dropped; /* decisions beyond PENDING_MAX (counted, not listed) */
};

km_status km_csr_window_new(const km_csr_window_opts *o, km_csr_window **out, km_err *err)
{
    km_csr_window *w = calloc(1, sizeof(*w));
    if (!w || !(w->spec = o->spec ? cJSON_Duplicate(o->spec, 1) : cJSON_CreateObject())) {
        free(w);
        return km_err_set(err, KM_ENOMEM, "csr window: out of memory");
    }
    w->o = *o;
    w->o.spec = w->spec;
    w->continuous = km_schema_bool(km_csr_def.fields, w->spec, "continuous") && !o->once;
    pthread_mutex_init(&w->mu, NULL);
    *out = w;
    return KM_OK;
}

static void approver_stop(km_csr_window *w)
{
    if (!w->approver)
        return;
    km_csr_approver_free(w->approver);
    w->approver = NULL;
    km_log_info("CSR approver stopped");
}

void km_csr_window_free(km_csr_window *w)
{
    if (!w)
        return;
    approver_stop(w);
    cJSON_Delete(w->spec);
    free(w->queue);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

/* Approver thread: queues a decision for the next flush. */
static void on_decided(const km_csr_result *r, void *user)
{
    km_csr_window *w = user;
    pthread_mutex_lock(&w->mu);
    if (w->nqueue < PENDING_MAX &&
        km_array_grow(&w->queue, w->nqueue, &w->capqueue, sizeof(*w->queue)) == KM_OK)
        w->queue[w->nqueue++] = *r;
    else
        w->dropped++;
    pthread_mutex_unlock(&w->mu);
}

static void on_event(const char *type, const char *reason, const char *message, void *user)
{
    km_csr_window *w = user;
    if (w->o.event)
        w->o.event(type, reason, message, w->o.user);
}

/* Starts the approver (no-op when running) until windowEndsAt unless continuous — or, for run
 * --once without --csr-window, until the run ends.  Failure: the approver's error. */
static km_status approver_start(km_csr_window *w, const cJSON *csr, km_err *err)
{
    if (w->approver)
        return KM_OK;
    const char *ends = KM_JSON_STR(csr, "windowEndsAt");
    int bounded = !w->continuous && ends && !(w->o.once && w->o.seconds <= 0);
    cJSON *spec = cJSON_Duplicate(w->spec, 1);
    if (!spec || (bounded && km_json_set_str(spec, "windowEndsAt", ends) != KM_OK)) {
        cJSON_Delete(spec);
        return km_err_set(err, KM_ENOMEM, "csr window: out of memory");
    }
    km_csr_hooks hooks = {on_decided, on_event, w};
    km_status st = km_csr_approver_start(w->o.kube, spec, &hooks, &w->approver, err);
    cJSON_Delete(spec);
    if (st == KM_OK)
        km_log_info("CSR approver started", "until",
                    w->continuous ? "continuous"
                    : bounded     ? ends
                                  : "end of run");
    return st;
}

void km_csr_window_open(km_csr_window *w, cJSON *csr, const char *pass, char *reason, size_t rn,
                        char *msg, size_t mn)
{
    long secs = w->o.seconds > 0
                    ? w->o.seconds
                    : km_num_long(km_schema_num(km_csr_def.fields, w->spec, "windowSeconds"), 0);
    char ends[KM_CLOCK_TEXT_MAX];
    km_clock_format_s(time(NULL) + secs, ends, sizeof(ends));
    if (csr && !KM_JSON_STR(csr, "windowEndsAt"))
        km_json_set_str(csr, "windowEndsAt", ends);
    const char *until = csr ? KM_JSON_STR(csr, "windowEndsAt") : ends;
    snprintf(reason, rn, "%s", w->o.dry_run ? "DryRun" : "WindowOpen");
    if (w->o.dry_run) {
        /* pass already begins with "dry run: " */
        snprintf(msg, mn, "%s; the background approver is not started", pass);
        return;
    }
    if (w->continuous)
        snprintf(msg, mn, "%s; approving kubelet CSRs continuously", pass);
    else if (w->o.once && w->o.seconds <= 0)
        snprintf(msg, mn, "%s; approving kubelet CSRs while the pods step runs", pass);
    else
        snprintf(msg, mn, "%s; approving kubelet CSRs until %s", pass, until ? until : ends);
    char text[1024];
    km_err e;
    km_err_clear(&e);
    if (approver_start(w, csr, &e) != KM_OK) {
        char buf[768];
        km_log_warn("CSR approver not started", "error", km_err_str(&e, buf, sizeof(buf)));
        snprintf(text, sizeof(text), "CSR approver not started: %s", e.message);
        on_event("Warning", "ApproverNotStarted", text, w);
    } else {
        snprintf(text, sizeof(text), "CSR approval window open: %s", msg);
        on_event("Normal", "WindowOpen", text, w);
    }
}

int km_csr_window_due(const km_csr_window *w, const cJSON *csr, const char *cond_reason, time_t now)
{
    time_t ends;
    if (w->o.dry_run || !cond_reason || strcmp(cond_reason, "WindowOpen") != 0)
        return 0;
    if (w->continuous)
        return 1;
    return km_clock_parse(KM_JSON_STR(csr, "windowEndsAt"), &ends) == KM_OK && now < ends;
}

void km_csr_window_resume(km_csr_window *w, const cJSON *csr, const char *cond_reason)
{
    km_err e;
    km_err_clear(&e);
    if (km_csr_window_due(w, csr, cond_reason, time(NULL)) && approver_start(w, csr, &e) != KM_OK)
        km_log_warn("CSR approver not restarted", "error", e.message);
}

int km_csr_window_flush(km_csr_window *w, cJSON *csr)
{
    pthread_mutex_lock(&w->mu);
    km_csr_result *q = w->queue;
    size_t n = w->nqueue;
    unsigned long dropped = w->dropped;
    w->queue = NULL;
    w->nqueue = w->capqueue = 0;
    w->dropped = 0;
    pthread_mutex_unlock(&w->mu);
    for (size_t i = 0; i < n; i++) {
        char name[64];
        km_csr_status_add(csr, &q[i]);
        snprintf(name, sizeof(name), "csr_%s_total", km_csr_outcome_counter(q[i].out));
        if (w->o.count)
            w->o.count(name, 1, w->o.user);
    }
    if (dropped)
        km_log_warn("csr window: decisions not recorded in status", "count",
                    KM_LOG_INT((long)dropped));
    free(q);
    return n > 0;
}

int km_csr_window_tick(km_csr_window *w, cJSON *csr, const char *cond_reason, int force_close,
                       double *next_s, char *closed, size_t n)
{
    time_t now = time(NULL), ends;
    int changed = km_csr_window_flush(w, csr);
    double next = -1;
    closed[0] = '\0';
    if (!force_close && km_csr_window_due(w, csr, cond_reason, now)) {
        km_err e;
        km_err_clear(&e);
        if (!w->approver && approver_start(w, csr, &e) != KM_OK)
            km_log_warn("CSR approver not started", "error", e.message);
        next = TICK_S;
        if (!w->continuous && km_clock_parse(KM_JSON_STR(csr, "windowEndsAt"), &ends) == KM_OK &&
            (double)(ends - now) < next)
            next = (double)(ends - now) + 0.5;
    } else {
        approver_stop(w);
        changed |= km_csr_window_flush(w, csr);
        if (cond_reason && strcmp(cond_reason, "WindowOpen") == 0 && !w->o.dry_run) {
            char at[KM_CLOCK_TEXT_MAX];
            km_clock_now_text(at, sizeof(at));
            snprintf(closed, n, "approval window closed at %s (approved %ld, denied %ld)", at,
                     KM_JSON_LONG(csr, 0, "approved"), KM_JSON_LONG(csr, 0, "denied"));
            on_event("Normal", "WindowClosed", closed, w);
        }
    }
    if (next_s)
        *next_s = next;
    return changed;
}

int km_csr_window_running(const km_csr_window *w)
{
    return w->approver != NULL && km_csr_approver_running(w->approver);
}
