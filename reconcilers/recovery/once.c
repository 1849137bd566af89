/* once.c — `kubemend run --once`: the ClusterRecovery engine run from this machine, without a
 * ClusterRecovery in the cluster (status in memory, Events to the log), registered with the
 * Manager as its job (operator/cmd/manager.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "operator/cmd/manager.h"
#include "reconcilers/nodes/nodes.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/spec.h"
#include "reconcilers/recovery/verify.h"
#include "reconcilers/step/conditions.h"

typedef struct once {
    km_job_opts o;
    unsigned steps; /* mask; 0 = all */
    cJSON *obj;     /* the ClusterRecovery to run (from -f, or the defaults) */
    pthread_mutex_t mu;
    km_recovery *rec; /* while running; cancelled from the signal thread (under mu) */
} once;

static void once_free(void *self)
{
    once *j = self;
    if (!j)
        return;
    cJSON_Delete(j->obj);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

static km_status once_prepare(const km_job_opts *o, void **self, km_err *err)
{
    once *j = calloc(1, sizeof(*j));
    km_status st = KM_OK;
    if (!j)
        return km_err_set(err, KM_ENOMEM, "out of memory");
    pthread_mutex_init(&j->mu, NULL);
    j->o = *o;
    if (o->steps && (st = km_recovery_parse_steps(o->steps, &j->steps, err)) != KM_OK)
        goto fail;
    if (o->file && (st = km_recovery_load_file(o->file, &j->obj, err)) != KM_OK) {
        km_err_prefix(err, "invalid recovery file");
        goto fail;
    }
    if (o->file && KM_JSON_BOOL(j->obj, 0, "spec", "paused")) {
        st = km_err_set(err, KM_EINVAL,
                        "%s: spec.paused is true: run --once does not start a paused recovery "
                        "(set it to false or remove it)",
                        o->file);
        goto fail;
    }
    if (!o->file &&
        !(j->obj = cJSON_Parse("{\"apiVersion\":\"" KM_RECOVERY_API_VERSION
                               "\",\"kind\":\"" KM_RECOVERY_KIND
                               "\",\"metadata\":{\"name\":\"run-once\"},\"spec\":{}}"))) {
        st = km_err_set(err, KM_ENOMEM, "out of memory");
        goto fail;
    }
    *self = j;
    return KM_OK;
fail:
    once_free(j);
    return st;
}

static void once_cancel(void *self)
{
    once *j = self;
    pthread_mutex_lock(&j->mu);
    if (j->rec)
        km_recovery_cancel(j->rec);
    pthread_mutex_unlock(&j->mu);
}

static void once_progress(const char *recovery, const char *step, const char *text, void *user)
{
    (void)user;
    (void)step;
    fprintf(stderr, "[%s] %s\n", recovery, text);
}

static void print_summary(const cJSON *obj)
{
    const cJSON *status = KM_JSON_AT(obj, "status");
    const char *phase = KM_JSON_STR(status, "phase");
    printf("ClusterRecovery %s: %s\n", KM_JSON_STR(obj, "metadata", "name"),
           phase ? phase : "Unknown");
    const cJSON *c;
    cJSON_ArrayForEach(c, KM_JSON_AT(status, "conditions"))
    {
        const char *t = KM_JSON_STR(c, "type"), *s = KM_JSON_STR(c, "status");
        const char *r = KM_JSON_STR(c, "reason"), *m = KM_JSON_STR(c, "message");
        printf("  %-22s %-8s %-24s %s\n", t ? t : "", s ? s : "", r ? r : "", m ? m : "");
    }
}

/* --csr-window: keeps the approval window open until it ends or a signal arrives. */
static void keep_window(once *j, km_recovery *r, const km_runtime *rt)
{
    double next = 0;
    fprintf(stderr, "[%s] csr: approval window open (--csr-window %ld)\n",
            KM_JSON_STR(j->obj, "metadata", "name"), j->o.csr_window);
    while (!atomic_load(rt->stop) && km_recovery_window_tick(r, &next, NULL) == KM_OK && next >= 0)
        km_clock_sleep(next, rt->stop);
}

/* The exit code of a run whose steps succeeded: 0 when the Verified condition is True (or in a
 * dry run, which changes nothing to verify), else KM_EXIT_NOT_VERIFIED with what is left on
 * stderr. */
static int verified(const once *j, const cJSON *res)
{
    const cJSON *c = km_cond_get(KM_JSON_AT(res, "status"), KM_COND_VERIFIED);
    const char *s = KM_JSON_STR(c, "status"), *m = KM_JSON_STR(c, "message");
    if (s && strcmp(s, "True") == 0)
        return 0;
    if (j->o.dry_run || KM_JSON_BOOL(j->obj, 0, "spec", "dryRun")) {
        fprintf(stderr, "kubemend run: dry run: left to heal: %s\n", m ? m : "not verified");
        return 0;
    }
    fprintf(stderr, "kubemend run: not verified (%s): %s\n", s ? s : "Unknown",
            m ? m : "no Verified condition");
    return KM_EXIT_NOT_VERIFIED;
}

/* The nodes step listed NotReady nodes (status.nodes.notReady): the approval window stays open
 * until every one of them is Ready or the window ends (spec.csr.windowSeconds), checked every
 * 5 s, or a signal arrives. */
static void wait_nodes(once *j, km_recovery *r, const km_runtime *rt)
{
    cJSON *listed =
        cJSON_Duplicate(KM_JSON_AT(km_recovery_object(r), "status", "nodes", "notReady"), 1);
    const char *name = KM_JSON_STR(j->obj, "metadata", "name");
    double next = 0;
    long left = cJSON_GetArraySize(listed);
    char names[400] = "";
    if (left > 0 && km_recovery_window_open(r))
        fprintf(stderr, "[%s] csr: approval window open until the %ld NotReady node(s) are Ready\n",
                name, left);
    while (left > 0 && !atomic_load(rt->stop) && km_recovery_window_open(r) &&
           km_recovery_window_tick(r, &next, NULL) == KM_OK && next >= 0) {
        km_err e;
        if (km_nodes_waiting(rt->kube, listed, &left, names, sizeof(names), &e) == KM_OK &&
            left == 0)
            break;
        km_clock_sleep(next < 5 ? next : 5, rt->stop);
    }
    if (left > 0 && names[0])
        fprintf(stderr, "[%s] csr: approval window closed; still NotReady: %s\n", name, names);
    cJSON_Delete(listed);
}

/* Prints the final status (JSON or a summary); the exit code from it. */
static int report(const once *j, km_recovery *r, km_status st, const km_err *e)
{
    const cJSON *res = km_recovery_object(r);
    char ebuf[1024];
    if (j->o.json) {
        char *txt = cJSON_Print(KM_JSON_AT(res, "status"));
        if (txt)
            printf("%s\n", txt);
        free(txt);
    } else {
        print_summary(res);
    }
    if (st != KM_OK) {
        fprintf(stderr, "kubemend run: %s\n", km_err_str(e, ebuf, sizeof(ebuf)));
        return KM_EXIT_FAILED;
    }
    const char *phase = KM_JSON_STR(res, "status", "phase");
    if (!phase || strcmp(phase, KM_PHASE_SUCCEEDED) != 0)
        return KM_EXIT_FAILED;
    return verified(j, res);
}

static int once_run(void *self, const km_runtime *rt)
{
    once *j = self;
    km_recovery *r = NULL;
    km_err e;
    km_err_clear(&e);
    km_recovery_opts ro = {
        .kube = rt->kube,
        .events = NULL, /* no ClusterRecovery in the cluster: Events go to the log */
        .stop = rt->stop,
        .once = 1,
        .steps = j->steps,
        .dry_run = j->o.dry_run,
        .csr_window = j->o.csr_window,
        .current_ca_pem = km_kubeconfig_ca_pem(rt->config),
        .progress = once_progress,
        .rebuild_time = j->o.rebuild_time,
    };
    if (km_recovery_new(j->obj, &ro, &r, &e) != KM_OK) {
        char ebuf[1024];
        fprintf(stderr, "kubemend run: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        return KM_EXIT_USAGE;
    }
    pthread_mutex_lock(&j->mu);
    j->rec = r;
    pthread_mutex_unlock(&j->mu);
    km_log_info("run --once", "server", km_kubeconfig_server(rt->config), "recovery",
                KM_JSON_STR(j->obj, "metadata", "name"), "dryRun", j->o.dry_run ? "true" : "false");
    km_status st = km_recovery_run(r, &e);
    if (st == KM_OK && j->o.csr_window > 0)
        keep_window(j, r, rt);
    else if (st == KM_OK)
        wait_nodes(j, r, rt);
    km_recovery_window_close(r, NULL);
    int rc = report(j, r, st, &e);
    pthread_mutex_lock(&j->mu);
    j->rec = NULL;
    pthread_mutex_unlock(&j->mu);
    km_recovery_free(r);
    return rc;
}

static const km_job run_once = {
    .name = "run --once",
    .prepare = once_prepare,
    .run = once_run,
    .cancel = once_cancel,
    .free = once_free,
};

KM_REGISTER_JOB(run_once)
