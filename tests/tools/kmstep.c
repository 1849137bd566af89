/* kmstep — runs one recovery step (tokens, extauth, csr or pods) or the background CSR approver
 * against a cluster, for integration tests, without the ClusterRecovery orchestration.
 *
 *   kmstep --kubeconfig F --step tokens|extauth|csr|nodes|pods [--spec JSON]
 *          [--started-at RFC3339] [--rebuild-time RFC3339|none] [--recovery NAME]
 *          [--current-ca FILE|-] [--dry-run] [--verify] [--status-file F] [--log-level L]
 *   kmstep --kubeconfig F --approver SECONDS [--spec JSON]
 *
 * --spec is the step's spec block (defaults are the step's own); --current-ca sets
 * ctx->current_ca_pem (default: the kubeconfig's CA; "-" = none).  --rebuild-time sets
 * ctx->rebuilt_at ("none" = unknown); without it the time is derived from the cluster as the
 * engine does (reconcilers/recovery/rebuild.h) and printed as {"rebuild":{time,source}}.
 * --kubeconfig incluster:DIR loads the in-cluster configuration from DIR (token, ca.crt,
 * namespace; KUBERNETES_SERVICE_HOST/PORT from the environment).  After a step that finished,
 * its `last` hook runs (as the engine runs it after the final status); with --verify then its
 * `verify` hook, printed as {"verify":{status, reason, message}} or {"verifyError": text}.
 * A step whose run hands work to the cluster (condition Unknown, step.h settle) prints
 * {"handoff":{reason, message}} and its settle runs right away.
 * ctx->cluster_ca is the engine's (rebuild.h km_rebuild_current_ca).
 * --status-file: the step's status is loaded from F (when it exists) and written back to F
 * (atomically) on every ctx->save, so a killed run can be resumed.  Events are printed as JSON
 * lines {"event":{type,reason,message}} on stdout as they happen, the approver's decisions as
 * {"decided":{name,node,decision,reason}}; at the end {"result":{status, condition}} (exit 0)
 * or {"error":...} (exit 1). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "operator/base/log.h"
#include "reconcilers/csr/approver.h"
#include "reconcilers/csr/csr.h"
#include "reconcilers/extauth/extauth.h"
#include "reconcilers/nodes/nodes.h"
#include "reconcilers/pods/pods.h"
#include "reconcilers/recovery/rebuild.h"
#include "reconcilers/tokens/tokens.h"
#include "reconcilers/step/step.h"

static const char *g_status_file;
static cJSON *g_counters;

static void emit(const char *key, cJSON *obj)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, key, obj);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static km_status ctx_save(km_step_ctx *ctx, km_err *err)
{
    if (!g_status_file)
        return KM_OK;
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", g_status_file);
    char *s = cJSON_PrintUnformatted(ctx->status);
    FILE *f = fopen(tmp, "w");
    if (!s || !f || fputs(s, f) < 0 || fclose(f) != 0 || rename(tmp, g_status_file) != 0) {
        free(s);
        return km_err_set(err, KM_EIO, "cannot write %s", g_status_file);
    }
    free(s);
    return KM_OK;
}

static void ctx_event(km_step_ctx *ctx, const char *type, const char *reason, const char *message)
{
    (void)ctx;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "reason", reason);
    cJSON_AddStringToObject(e, "message", message);
    emit("event", e);
}

static void ctx_progress(km_step_ctx *ctx, const char *text)
{
    (void)ctx;
    emit("progress", cJSON_CreateString(text));
}

static void ctx_count(km_step_ctx *ctx, const char *counter, long delta)
{
    (void)ctx;
    km_step_counter_add(g_counters, counter, delta);
}

static void hook_decided(const km_csr_result *r, void *user)
{
    (void)user;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "name", r->name);
    cJSON_AddStringToObject(d, "node", r->d.node);
    cJSON_AddStringToObject(d, "decision", km_csr_outcome_decision(r->out));
    cJSON_AddStringToObject(d, "reason", r->reason ? r->reason : "");
    emit("decided", d);
}

static void hook_event(const char *type, const char *reason, const char *message, void *user)
{
    ctx_event(user, type, reason, message);
}

/* Whole file as a malloc'ed NUL-terminated string (caller frees), NULL if unreadable. */
static char *read_file(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    km_buf b;
    km_buf_init(&b, 64u << 20);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (km_buf_append(&b, chunk, n) != KM_OK)
            break;
    fclose(f);
    if (len_out)
        *len_out = b.len;
    return km_buf_take(&b);
}

static cJSON *read_json_file(const char *path)
{
    size_t len = 0;
    char *buf = read_file(path, &len);
    cJSON *o = buf ? km_json_parse(buf, len) : NULL;
    free(buf);
    return o;
}

static int usage(void)
{
    fprintf(stderr, "usage: kmstep --kubeconfig F (--step tokens|extauth|csr|pods | --approver "
                    "SECONDS) [--spec JSON] [--started-at T] [--recovery NAME] "
                    "[--current-ca FILE|-] [--dry-run] [--status-file F] "
                    "[--log-level L]\n");
    return 2;
}

typedef struct opts {
    const char *kubeconfig, *step, *spec_text, *started_at, *level, *recovery, *current_ca;
    const char *rebuild_time;
    long approver_secs; /* >= 0: run the approver this long instead of a step */
    int dry_run;
    int verify;
} opts;

/* 0, or usage()'s exit code. */
static int parse(int argc, char **argv, opts *o)
{
    *o = (opts){.spec_text = "{}", .level = "info", .recovery = "kmstep", .approver_secs = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        const char **dst = NULL;
        if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
            continue;
        }
        if (strcmp(a, "--verify") == 0) {
            o->verify = 1;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(a, "--approver") == 0)
            o->approver_secs = strtol(v, NULL, 10);
        else if (strcmp(a, "--status-file") == 0)
            g_status_file = v;
        else if (strcmp(a, "--kubeconfig") == 0)
            dst = &o->kubeconfig;
        else if (strcmp(a, "--step") == 0)
            dst = &o->step;
        else if (strcmp(a, "--spec") == 0)
            dst = &o->spec_text;
        else if (strcmp(a, "--started-at") == 0)
            dst = &o->started_at;
        else if (strcmp(a, "--log-level") == 0)
            dst = &o->level;
        else if (strcmp(a, "--recovery") == 0)
            dst = &o->recovery;
        else if (strcmp(a, "--current-ca") == 0)
            dst = &o->current_ca;
        else if (strcmp(a, "--rebuild-time") == 0)
            dst = &o->rebuild_time;
        else
            return usage();
        if (dst)
            *dst = v;
        i++;
    }
    return !o->kubeconfig || (!o->step && o->approver_secs < 0) ? usage() : 0;
}

/* --approver SECONDS: the background approver for that long. */
static km_status run_approver(km_kube *kube, const cJSON *spec, long secs, km_err *err)
{
    km_csr_hooks hooks = {.decided = hook_decided, .event = hook_event, .user = NULL};
    km_csr_approver *a = NULL;
    km_status st = km_csr_approver_start(kube, spec, &hooks, &a, err);
    if (st != KM_OK)
        return st;
    emit("approver", cJSON_CreateString("started"));
    km_clock_sleep((double)secs, NULL);
    km_csr_approver_free(a);
    emit("approver", cJSON_CreateString("stopped"));
    return KM_OK;
}

static km_status tool_cluster_ca(km_step_ctx *ctx, char **pem, km_err *err)
{
    return km_rebuild_current_ca(ctx->kube, ctx->current_ca_pem, pem, err);
}

/* The step's verify hook, printed. */
static void run_verify(km_step_ctx *ctx)
{
    km_err e;
    km_err_clear(&e);
    ctx->cond_status[0] = ctx->cond_reason[0] = ctx->cond_message[0] = '\0';
    if (!ctx->def->verify)
        return;
    if (ctx->def->verify(ctx, &e) != KM_OK) {
        char buf[1024];
        emit("verifyError", cJSON_CreateString(km_err_str(&e, buf, sizeof(buf))));
        return;
    }
    cJSON *v = cJSON_CreateObject();
    cJSON_AddStringToObject(v, "status", ctx->cond_status);
    cJSON_AddStringToObject(v, "reason", ctx->cond_reason);
    cJSON_AddStringToObject(v, "message", ctx->cond_message);
    emit("verify", v);
}

/* --step NAME: the step with the tool's callbacks; {"result": ...} on success. */
static km_status run_step(const opts *o, km_kube *kube, const char *ca, cJSON *spec, cJSON *status,
                          km_err *err)
{
    static const km_step_def *const defs[] = {&km_tokens_def, &km_extauth_def, &km_csr_def,
                                              &km_nodes_def, &km_pods_def};
    atomic_int cancel = 0;
    km_step_ctx ctx = {.kube = kube,
                       .spec = spec,
                       .status = status,
                       .dry_run = o->dry_run,
                       .recovery = o->recovery,
                       .started_at = o->started_at,
                       .current_ca_pem = ca,
                       .cancel = &cancel,
                       .save = ctx_save,
                       .event = ctx_event,
                       .progress = ctx_progress,
                       .count = ctx_count,
                       .cluster_ca = tool_cluster_ca};
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        if (strcmp(o->step, defs[i]->flag) == 0)
            ctx.def = defs[i];
    if (!ctx.def)
        return km_err_set(err, KM_EINVAL, "unknown step %s", o->step);
    km_rebuild rb = {0};
    km_err rerr;
    km_err_clear(&rerr);
    if (o->rebuild_time && strcmp(o->rebuild_time, "none") == 0)
        snprintf(rb.source, sizeof(rb.source), "--rebuild-time none");
    else if (o->rebuild_time && km_clock_parse(o->rebuild_time, &rb.at) != KM_OK)
        return km_err_set(err, KM_EINVAL, "bad --rebuild-time %s", o->rebuild_time);
    else if (o->rebuild_time)
        snprintf(rb.source, sizeof(rb.source), "--rebuild-time");
    else if (km_rebuild_derive(kube, ca, &rb, &rerr) != KM_OK)
        km_err_str(&rerr, rb.source, sizeof(rb.source));
    ctx.rebuilt_at = rb.at;
    ctx.rebuild_note = rb.source;
    char when[KM_CLOCK_TEXT_MAX];
    cJSON *rbj = cJSON_CreateObject();
    if (rb.at)
        cJSON_AddStringToObject(rbj, "time", km_clock_format_s(rb.at, when, sizeof(when)));
    cJSON_AddStringToObject(rbj, "source", rb.source);
    emit("rebuild", rbj);
    void *kept = NULL;
    ctx.keep = &kept;
    km_status st = ctx.def->run(&ctx, err);
    if (st == KM_OK && ctx.def->settle && strcmp(ctx.cond_status, "Unknown") == 0) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "reason", ctx.cond_reason);
        cJSON_AddStringToObject(h, "message", ctx.cond_message);
        emit("handoff", h);
        ctx.cond_status[0] = ctx.cond_reason[0] = ctx.cond_message[0] = '\0';
        st = ctx.def->settle(&ctx, err);
    }
    if (kept && ctx.def->keep_free)
        ctx.def->keep_free(kept);
    if (st != KM_OK)
        return st;
    if (ctx.def->last) {
        km_err lerr;
        km_err_clear(&lerr);
        if (ctx.def->last(&ctx, &lerr) != KM_OK) {
            char buf[1024];
            emit("lastError", cJSON_CreateString(km_err_str(&lerr, buf, sizeof(buf))));
        }
    }
    cJSON *res = cJSON_CreateObject();
    cJSON_AddItemToObject(res, "status", cJSON_Duplicate(status, 1));
    cJSON *cond = cJSON_AddObjectToObject(res, "condition");
    cJSON_AddStringToObject(cond, "status", ctx.cond_status);
    cJSON_AddStringToObject(cond, "reason", ctx.cond_reason);
    cJSON_AddStringToObject(cond, "message", ctx.cond_message);
    cJSON_AddItemToObject(res, "counters", cJSON_Duplicate(g_counters, 1));
    emit("result", res);
    if (o->verify)
        run_verify(&ctx);
    return KM_OK;
}

int main(int argc, char **argv)
{
    opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc;
    km_log_level lvl = KM_LOG_INFO;
    km_log_parse_level(o.level, &lvl);
    km_log_configure(lvl, KM_LOG_TEXT);

    km_err err;
    km_err_clear(&err);
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    cJSON *spec = cJSON_Parse(o.spec_text);
    cJSON *status = g_status_file ? read_json_file(g_status_file) : NULL;
    char *ca = NULL; /* --current-ca FILE */
    g_counters = cJSON_CreateObject();
    km_status st = KM_EINVAL;
    if (!spec)
        km_err_set(&err, KM_EINVAL, "--spec is not JSON");
    else if (!status && !(status = cJSON_CreateObject()))
        km_err_set(&err, KM_ENOMEM, "out of memory");
    else if ((st = strncmp(o.kubeconfig, "incluster:", 10) == 0
                       ? km_kubeconfig_incluster(o.kubeconfig + 10, &cfg, &err)
                       : km_kubeconfig_from_file(o.kubeconfig, NULL, &cfg, &err)) == KM_OK &&
             (st = km_kube_new(cfg, NULL, &kube, &err)) == KM_OK) {
        const char *ca_pem = km_kubeconfig_ca_pem(cfg);
        if (o.current_ca && strcmp(o.current_ca, "-") == 0)
            ca_pem = NULL;
        else if (o.current_ca && (ca = read_file(o.current_ca, NULL)) != NULL)
            ca_pem = ca;
        st = o.approver_secs >= 0 ? run_approver(kube, spec, o.approver_secs, &err)
                                  : run_step(&o, kube, ca_pem, spec, status, &err);
    }
    if (st != KM_OK) {
        char buf[1024];
        emit("error", cJSON_CreateString(km_err_str(&err, buf, sizeof(buf))));
    }
    km_kube_free(kube);
    km_kubeconfig_free(cfg);
    cJSON_Delete(spec);
    cJSON_Delete(status);
    cJSON_Delete(g_counters);
    free(ca);
    return st == KM_OK ? 0 : 1;
}
