/* kmstep — runs one recovery step (tokens, extauth, csr or pods) or the background CSR approver
 * against a cluster, for integration tests, without the ClusterRecovery orchestration.
 *
 *   kmstep --kubeconfig F --step tokens|extauth|csr|pods [--spec JSON] [--started-at RFC3339]
 *          [--recovery NAME] [--current-ca FILE|-] [--dry-run] [--status-file F] [--log-level L]
 *   kmstep --kubeconfig F --approver SECONDS [--spec JSON]
 *
 * --spec is the step's spec block (defaults are the step's own); --current-ca sets
 * ctx->current_ca_pem (default: the kubeconfig's CA; "-" = none).
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
#include "reconcilers/pods/pods.h"
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

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *step = NULL, *spec_text = "{}", *started_at = NULL;
    const char *level = "info", *recovery = "kmstep", *current_ca = NULL;
    long approver_secs = -1;
    int dry_run = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--dry-run") == 0) {
            dry_run = 1;
            continue;
        }
        if (!v)
            return usage();
        if (strcmp(a, "--kubeconfig") == 0)
            kubeconfig = v;
        else if (strcmp(a, "--step") == 0)
            step = v;
        else if (strcmp(a, "--spec") == 0)
            spec_text = v;
        else if (strcmp(a, "--started-at") == 0)
            started_at = v;
        else if (strcmp(a, "--status-file") == 0)
            g_status_file = v;
        else if (strcmp(a, "--log-level") == 0)
            level = v;
        else if (strcmp(a, "--approver") == 0)
            approver_secs = strtol(v, NULL, 10);
        else if (strcmp(a, "--recovery") == 0)
            recovery = v;
        else if (strcmp(a, "--current-ca") == 0)
            current_ca = v;
        else
            return usage();
        i++;
    }
    if (!kubeconfig || (!step && approver_secs < 0))
        return usage();
    km_log_level lvl = KM_LOG_INFO;
    km_log_parse_level(level, &lvl);
    km_log_configure(lvl, KM_LOG_TEXT);

    km_err err;
    km_err_clear(&err);
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    cJSON *spec = cJSON_Parse(spec_text);
    cJSON *status = g_status_file ? read_json_file(g_status_file) : NULL;
    char *ca = NULL; /* --current-ca FILE */
    g_counters = cJSON_CreateObject();
    km_status st = KM_EINVAL;
    if (!spec) {
        km_err_set(&err, KM_EINVAL, "--spec is not JSON");
        goto out;
    }
    if (!status)
        status = cJSON_CreateObject();
    if ((st = km_kubeconfig_from_file(kubeconfig, NULL, &cfg, &err)) != KM_OK ||
        (st = km_kube_new(cfg, NULL, &kube, &err)) != KM_OK)
        goto out;

    if (approver_secs >= 0) {
        km_csr_hooks hooks = {.decided = hook_decided, .event = hook_event, .user = NULL};
        km_csr_approver *a = NULL;
        if ((st = km_csr_approver_start(kube, spec, &hooks, &a, &err)) != KM_OK)
            goto out;
        emit("approver", cJSON_CreateString("started"));
        km_clock_sleep((double)approver_secs, NULL);
        km_csr_approver_free(a);
        emit("approver", cJSON_CreateString("stopped"));
        goto out;
    }

    atomic_int cancel = 0;
    km_step_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.kube = kube;
    ctx.spec = spec;
    ctx.status = status;
    ctx.dry_run = dry_run;
    ctx.recovery = recovery;
    ctx.current_ca_pem = km_kubeconfig_ca_pem(cfg);
    if (current_ca && strcmp(current_ca, "-") == 0)
        ctx.current_ca_pem = NULL;
    else if (current_ca && (ca = read_file(current_ca, NULL)) != NULL)
        ctx.current_ca_pem = ca;
    ctx.started_at = started_at;
    ctx.cancel = &cancel;
    ctx.save = ctx_save;
    ctx.event = ctx_event;
    ctx.progress = ctx_progress;
    ctx.count = ctx_count;
    static const km_step_def *const defs[] = {&km_tokens_def, &km_extauth_def, &km_csr_def,
                                              &km_pods_def};
    for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
        if (strcmp(step, defs[i]->flag) == 0)
            ctx.def = defs[i];
    if (ctx.def)
        st = ctx.def->run(&ctx, &err);
    else
        st = km_err_set(&err, KM_EINVAL, "unknown step %s", step);
    if (st == KM_OK) {
        cJSON *res = cJSON_CreateObject();
        cJSON_AddItemToObject(res, "status", cJSON_Duplicate(status, 1));
        cJSON *cond = cJSON_AddObjectToObject(res, "condition");
        cJSON_AddStringToObject(cond, "status", ctx.cond_status);
        cJSON_AddStringToObject(cond, "reason", ctx.cond_reason);
        cJSON_AddStringToObject(cond, "message", ctx.cond_message);
        cJSON_AddItemToObject(res, "counters", cJSON_Duplicate(g_counters, 1));
        emit("result", res);
    }
out:
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
