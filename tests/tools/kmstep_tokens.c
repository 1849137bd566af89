/* kmstep_tokens — runs the tokens or the extensionApiserverAuthentication step against a
 * cluster, for integration tests, without the ClusterRecovery orchestration (same output format
 * as kmstep).
 *
 *   kmstep_tokens --kubeconfig F --step tokens|extauth [--spec JSON] [--recovery NAME]
 *                 [--current-ca FILE|-] [--dry-run] [--status-file F] [--log-level L]
 *
 * --spec is the step's spec block (defaults are the step's own); --current-ca sets
 * ctx->current_ca_pem (default: the kubeconfig's CA; "-" = none).  --status-file: the step's
 * status is loaded from F (when it exists) and written back on every ctx->save, so a killed run
 * can be resumed.  Events are printed as JSON lines {"event":{type,reason,message}}; at the end
 * {"result":{status, condition, counters}} (exit 0) or {"error":...} (exit 1). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "operator/json.h"
#include "operator/kube.h"
#include "operator/kubeconfig.h"
#include "operator/log.h"
#include "reconcilers/extauth.h"
#include "reconcilers/tokens.h"
#include "reconcilers/step.h"

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

static cJSON *read_json_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 >= cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb)
                break;
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    cJSON *o = buf ? km_json_parse(buf, len) : NULL;
    free(buf);
    return o;
}

static int usage(void)
{
    fprintf(stderr, "usage: kmstep_tokens --kubeconfig F --step tokens|extauth [--spec JSON] "
                    "[--recovery NAME] [--current-ca FILE|-] [--dry-run] [--status-file F] "
                    "[--log-level L]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *step = NULL, *spec_text = "{}", *started_at = NULL;
    const char *level = "info";
    const char *recovery = "kmstep", *current_ca = NULL;
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
        else if (strcmp(a, "--recovery") == 0)
            recovery = v;
        else if (strcmp(a, "--current-ca") == 0)
            current_ca = v;
        else
            return usage();
        i++;
    }
    if (!kubeconfig || !step)
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

    /* The current CA: --current-ca FILE, "-" = none, default = the kubeconfig's CA. */
    char *ca_text = NULL;
    if (current_ca && strcmp(current_ca, "-") != 0) {
        FILE *f = fopen(current_ca, "rb");
        if (f) {
            ca_text = calloc(1, 1 << 20);
            if (ca_text)
                fread(ca_text, 1, (1 << 20) - 1, f);
            fclose(f);
        }
    }

    atomic_int cancel = 0;
    km_step_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.kube = kube;
    ctx.spec = spec;
    ctx.status = status;
    ctx.dry_run = dry_run;
    ctx.recovery = recovery;
    ctx.current_ca_pem = current_ca ? ca_text : km_kubeconfig_ca_pem(cfg);
    ctx.started_at = started_at;
    ctx.cancel = &cancel;
    ctx.save = ctx_save;
    ctx.event = ctx_event;
    ctx.progress = ctx_progress;
    ctx.count = ctx_count;
    if (strcmp(step, "tokens") == 0)
        st = km_tokens_step(&ctx, &err);
    else if (strcmp(step, "extauth") == 0)
        st = km_extauth_step(&ctx, &err);
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
    free(ca_text);
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
    return st == KM_OK ? 0 : 1;
}
