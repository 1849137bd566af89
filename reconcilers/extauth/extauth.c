/* extauth.c — the extensionApiserverAuthentication step (see extauth.h). */
#include "reconcilers/extauth/extauth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "reconcilers/extauth/pem.h"
#include "reconcilers/step/backup.h"
#include "reconcilers/step/retry.h"

#define MAX_ATTEMPTS 5
#define REMOVED_MAX 20
#define PINS_MAX 20 /* the CRD's maxItems */
#define RECHECK_MS 2000

static const char *const KEYS[] = {"client-ca-file", "requestheader-client-ca-file"};
#define NKEYS (sizeof(KEYS) / sizeof(KEYS[0]))

typedef struct run {
    km_step_ctx *ctx;
    cJSON *st;
    km_pem_bundle *current;
    char pins[PINS_MAX][65];
    size_t npins;
    char *prior[REMOVED_MAX * 2]; /* normalized fingerprints removed by earlier runs */
    size_t nprior;
    char backup[320];
    int backup_done;
    char problem[700]; /* UnexpectedContent message */
    long kept;
    int readded_events;
} run;

static void event(run *r, const char *type, const char *reason, const char *msg)
{
    km_step_event(r->ctx, type, reason, msg);
}

static km_status save(run *r, km_err *err)
{
    return km_step_save(r->ctx, err);
}

/* "ab12..." -> "AB:12:..." (out >= 96 bytes). */
static void fp_display(const char *fp, char *out, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; fp[i] && fp[i + 1] && o + 3 < n; i += 2) {
        if (i)
            out[o++] = ':';
        out[o++] = (char)(fp[i] >= 'a' ? fp[i] - 32 : fp[i]);
        out[o++] = (char)(fp[i + 1] >= 'a' ? fp[i + 1] - 32 : fp[i + 1]);
    }
    out[o] = '\0';
}

static km_status load_pins(run *r, km_err *err)
{
    const cJSON *arr = KM_JSON_AT(r->ctx->spec, "pinnedFingerprints");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, arr)
    {
        if (r->npins == PINS_MAX)
            return km_err_set(err, KM_EINVAL, "spec.pinnedFingerprints: more than %d entries",
                              PINS_MAX);
        if (!cJSON_IsString(it) ||
            km_pem_fingerprint_normalize(it->valuestring, r->pins[r->npins]) != KM_OK)
            return km_err_set(err, KM_EINVAL,
                              "spec.extensionApiserverAuthentication.pinnedFingerprints[%d]: not a "
                              "SHA-256 fingerprint (64 hex digits, colons allowed)",
                              i);
        r->npins++;
        i++;
    }
    return KM_OK;
}

/* Appends PEM text to the current-CA bundle text (ignoring text that does not parse). */
static void add_current(km_buf *b, const char *pem, const char *source)
{
    if (!pem || !*pem)
        return;
    km_pem_bundle *t = NULL;
    km_err e;
    if (km_pem_parse(pem, strlen(pem), &t, &e) != KM_OK) {
        km_log_warn("extauth: ignoring an unparsable current CA", "source", source, "error",
                    e.message);
        return;
    }
    for (size_t i = 0; i < km_pem_count(t); i++) {
        size_t len = 0;
        const char *blk = km_pem_block(t, i, &len);
        km_buf_append(b, blk, len);
    }
    km_pem_free(t);
}

km_status km_extauth_current(km_step_ctx *ctx, km_pem_bundle **out, km_err *err)
{
    char path[256];
    km_kube_path(path, sizeof(path), NULL, "v1", KM_EXTAUTH_NAMESPACE, "configmaps",
                 "kube-root-ca.crt", NULL);
    cJSON *cm = NULL;
    km_err e;
    km_err_clear(&e);
    km_status st = km_kube_get(ctx->kube, path, &cm, &e);
    if (st != KM_OK && st != KM_EAPI) {
        if (err)
            *err = e;
        km_err_prefix(err, "GET kube-root-ca.crt");
        return st;
    }
    if (st == KM_EAPI)
        km_log_info("extauth: no kube-root-ca.crt ConfigMap, using the operator's CA", "http",
                    KM_LOG_INT(e.http_code));
    km_buf b;
    km_buf_init(&b, 0);
    add_current(&b, KM_JSON_STR(cm, "data", "ca.crt"), "kube-root-ca.crt");
    add_current(&b, ctx->current_ca_pem, "operator CA");
    cJSON_Delete(cm);
    st = km_pem_parse(km_buf_str(&b), b.len, out, err);
    km_buf_cleanup(&b);
    return st;
}

static km_status load_current(run *r, km_err *err)
{
    return km_extauth_current(r->ctx, &r->current, err);
}

/* Fingerprints removed by earlier runs (status.removed), unless they came from a dry run. */
static km_status load_prior(run *r)
{
    const char *phase = KM_JSON_STR(r->st, "phase");
    if (phase && strcmp(phase, "DryRun") == 0) {
        if (!r->ctx->dry_run) {
            cJSON_DeleteItemFromObjectCaseSensitive(r->st, "removed");
            cJSON_DeleteItemFromObjectCaseSensitive(r->st, "readded");
        }
        return KM_OK;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, KM_JSON_AT(r->st, "removed"))
    {
        char fp[65];
        const char *s = KM_JSON_STR(it, "fingerprint");
        if (!s || km_pem_fingerprint_normalize(s, fp) != KM_OK ||
            r->nprior == sizeof(r->prior) / sizeof(r->prior[0]))
            continue;
        r->prior[r->nprior] = strdup(fp);
        if (!r->prior[r->nprior])
            return KM_ENOMEM;
        r->nprior++;
    }
    return KM_OK;
}

static int is_prior(const run *r, const char *fp)
{
    for (size_t i = 0; i < r->nprior; i++)
        if (strcmp(r->prior[i], fp) == 0)
            return 1;
    return 0;
}

/* Adds {key, subject, fingerprint, reason} to status.removed (no duplicates, bounded). */
static km_status add_removed(run *r, const char *key, const char *subject, const char *fp,
                             const char *reason)
{
    cJSON *arr = (cJSON *)KM_JSON_AT(r->st, "removed");
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(r->st, "removed");
        arr = cJSON_AddArrayToObject(r->st, "removed");
        if (!arr)
            return KM_ENOMEM;
    }
    char disp[100];
    fp_display(fp, disp, sizeof(disp));
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, arr)
    {
        const char *k = KM_JSON_STR(it, "key");
        const char *f = KM_JSON_STR(it, "fingerprint");
        if (k && f && strcmp(k, key) == 0 && strcmp(f, disp) == 0)
            return KM_OK;
        n++;
    }
    if (n >= REMOVED_MAX)
        return KM_OK;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "key", key) ||
        !cJSON_AddStringToObject(o, "subject", subject) ||
        !cJSON_AddStringToObject(o, "fingerprint", disp) ||
        !cJSON_AddStringToObject(o, "reason", reason) || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return KM_ENOMEM;
    }
    return KM_OK;
}

/* Reports a re-added certificate once per run. */
static void report_readded(run *r, const char *key, const char *subject, const char *fp)
{
    char disp[100];
    fp_display(fp, disp, sizeof(disp));
    cJSON *arr = (cJSON *)KM_JSON_AT(r->st, "readded");
    const cJSON *it;
    cJSON_ArrayForEach(it,
                       arr) if (cJSON_IsString(it) && strcmp(it->valuestring, disp) == 0) return;
    km_step_list_add(r->st, "readded", disp, REMOVED_MAX);
    char msg[600];
    snprintf(msg, sizeof(msg),
             "%s: certificate %s (SHA-256 %s) removed earlier is back — an API server still runs "
             "with the old CA; restart it with the new PKI. Not removing it again.",
             key, subject, disp);
    event(r, "Warning", "ReAdded", msg);
    km_log_warn("extauth: removed CA was added back", "key", key, "subject", subject, "fingerprint",
                disp);
}

typedef struct plan {
    char *text[NKEYS];        /* new bundle text for a key, NULL = unchanged */
    km_pem_bundle *b[NKEYS];  /* parsed bundles */
    km_pem_verdict *v[NKEYS]; /* verdicts */
    int removes;              /* number of certificates to remove */
} plan;

static void plan_free(plan *p)
{
    for (size_t i = 0; i < NKEYS; i++) {
        free(p->text[i]);
        km_pem_free(p->b[i]);
        free(p->v[i]);
    }
    memset(p, 0, sizeof(*p));
}

/* Computes the cleanup of cm.  KM_OK with r->problem set when the content is unexpected. */
static km_status make_plan(run *r, const cJSON *cm, plan *p, km_err *err)
{
    memset(p, 0, sizeof(*p));
    r->kept = 0;
    const cJSON *data = KM_JSON_AT(cm, "data");
    if (!cJSON_IsObject(data)) {
        snprintf(r->problem, sizeof(r->problem), "%s/%s has no data object; left untouched",
                 KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP);
        return KM_OK;
    }
    const char *pins[PINS_MAX + REMOVED_MAX * 2];
    size_t np = 0;
    for (size_t i = 0; i < r->npins; i++)
        pins[np++] = r->pins[i];
    for (size_t i = 0; i < r->nprior; i++)
        pins[np++] = r->prior[i]; /* re-added: keep, report */
    km_pem_policy pol = {.current = r->current, .pinned = pins, .npinned = np, .now = time(NULL)};
    for (size_t k = 0; k < NKEYS; k++) {
        const cJSON *val = cJSON_GetObjectItemCaseSensitive(data, KEYS[k]);
        if (!val)
            continue;
        km_err e;
        km_err_clear(&e);
        if (!cJSON_IsString(val) ||
            km_pem_parse(val->valuestring, strlen(val->valuestring), &p->b[k], &e) != KM_OK) {
            snprintf(r->problem, sizeof(r->problem),
                     "data[%s] is not a PEM certificate bundle (%s); left untouched", KEYS[k],
                     cJSON_IsString(val) ? e.message : "not a string");
            return KM_OK;
        }
        size_t n = km_pem_count(p->b[k]);
        if (n == 0)
            continue;
        p->v[k] = calloc(n, sizeof(km_pem_verdict));
        if (!p->v[k])
            return km_err_set(err, KM_ENOMEM, "extauth: out of memory");
        km_status st = km_pem_decide(p->b[k], &pol, p->v[k], &e);
        if (st == KM_ESTATE) {
            snprintf(r->problem, sizeof(r->problem), "data[%s]: %s; left untouched", KEYS[k],
                     e.message);
            return KM_OK;
        }
        if (st != KM_OK)
            return km_err_set(err, st, "extauth: %s", e.message);
        int removes = 0;
        for (size_t i = 0; i < n; i++) {
            const char *fp = km_pem_fingerprint(p->b[k], i);
            if (km_pem_verdict_removes(p->v[k][i]))
                removes++;
            else
                r->kept++;
            if (is_prior(r, fp) && p->v[k][i] == KM_PEM_KEEP_PINNED)
                report_readded(r, KEYS[k], km_pem_subject(p->b[k], i), fp);
        }
        if (removes == 0)
            continue;
        km_buf out;
        km_buf_init(&out, 0);
        if (km_pem_encode_kept(p->b[k], p->v[k], &out) != KM_OK ||
            !(p->text[k] = km_buf_take(&out))) {
            km_buf_cleanup(&out);
            return km_err_set(err, KM_ENOMEM, "extauth: out of memory");
        }
        p->removes += removes;
    }
    return KM_OK;
}

static km_status record_plan(run *r, const plan *p)
{
    for (size_t k = 0; k < NKEYS; k++) {
        for (size_t i = 0; p->v[k] && i < km_pem_count(p->b[k]); i++) {
            if (!km_pem_verdict_removes(p->v[k][i]))
                continue;
            km_status st =
                add_removed(r, KEYS[k], km_pem_subject(p->b[k], i), km_pem_fingerprint(p->b[k], i),
                            km_pem_verdict_name(p->v[k][i]));
            if (st != KM_OK)
                return st;
        }
    }
    return KM_OK;
}

static km_status ensure_backup(run *r, const cJSON *cm, km_err *err)
{
    if (r->backup_done)
        return KM_OK;
    const char *rec = r->ctx->recovery ? r->ctx->recovery : "run-once";
    int n = snprintf(r->backup, sizeof(r->backup), "%s%s", KM_EXTAUTH_BACKUP_PREFIX, rec);
    if (n < 0 || n > 253)
        return km_err_set(err, KM_EINVAL,
                          "backup ConfigMap name for recovery %s would exceed 253 characters", rec);
    cJSON *obj = NULL;
    if (km_step_backup_object(cm, KM_EXTAUTH_NAMESPACE, r->backup, rec, &obj) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "extauth: out of memory");
    char path[256];
    km_kube_path(path, sizeof(path), NULL, "v1", KM_EXTAUTH_NAMESPACE, "configmaps", NULL, NULL);
    km_err e;
    km_err_clear(&e);
    km_retry rt; /* a retried create that did apply answers 409: the backup exists */
    km_status st;
    km_retry_init(&rt, 0, r->ctx->cancel);
    while ((st = km_kube_create(r->ctx->kube, path, obj, NULL, &e)) != KM_OK &&
           km_retry_again(&rt, st, &e, r->backup))
        km_err_clear(&e);
    cJSON_Delete(obj);
    if (st == KM_EAPI && km_err_is_http(&e, 409)) {
        km_log_info("extauth: backup exists already, keeping it", "configmap", r->backup);
        st = KM_OK;
    } else if (st == KM_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "saved the original %s data in ConfigMap %s/%s",
                 KM_EXTAUTH_CONFIGMAP, KM_EXTAUTH_NAMESPACE, r->backup);
        event(r, "Normal", "BackupCreated", msg);
    } else {
        if (err)
            *err = e;
        km_err_prefix(err, "create backup %s", r->backup);
        return st;
    }
    r->backup_done = 1;
    km_json_set_str(r->st, "backup", r->backup);
    return save(r, err);
}

/* Replaces the changed keys in cm and PUTs it.  *conflict on 409. */
static km_status write_plan(run *r, cJSON *cm, const plan *p, int *conflict, km_err *err)
{
    cJSON *data = (cJSON *)KM_JSON_AT(cm, "data");
    for (size_t k = 0; k < NKEYS; k++) {
        if (!p->text[k])
            continue;
        if (km_json_set_str(data, KEYS[k], p->text[k]) != KM_OK)
            return km_err_set(err, KM_ENOMEM, "extauth: out of memory");
    }
    char path[256];
    km_kube_path(path, sizeof(path), NULL, "v1", KM_EXTAUTH_NAMESPACE, "configmaps",
                 KM_EXTAUTH_CONFIGMAP, NULL);
    km_retry rt; /* guarded by the resourceVersion: safe to send again */
    km_status st;
    km_retry_init(&rt, 0, r->ctx->cancel);
    while ((st = km_kube_update(r->ctx->kube, path, cm, NULL, err)) != KM_OK &&
           km_retry_again(&rt, st, err, KM_EXTAUTH_CONFIGMAP))
        km_err_clear(err);
    *conflict = st == KM_EAPI && km_err_is_http(err, 409);
    return st;
}

static km_status get_cm(run *r, cJSON **out, km_err *err)
{
    char path[256];
    km_kube_path(path, sizeof(path), NULL, "v1", KM_EXTAUTH_NAMESPACE, "configmaps",
                 KM_EXTAUTH_CONFIGMAP, NULL);
    return km_kube_get(r->ctx->kube, path, out, err);
}

/* After a write: re-read once after a short delay and report removed certificates that are
 * back. */
static km_status recheck(run *r, const plan *done, km_err *err)
{
    if (km_clock_sleep(RECHECK_MS / 1000.0, r->ctx->cancel) != KM_OK)
        return km_err_set(err, KM_ECANCELED, "extauth: cancelled");
    cJSON *cm = NULL;
    km_err e;
    km_err_clear(&e);
    km_status st = get_cm(r, &cm, &e);
    if (st != KM_OK) {
        char b[600];
        km_log_warn("extauth: re-check failed", "error", km_err_str(&e, b, sizeof(b)));
        return KM_OK; /* the next run checks again */
    }
    for (size_t k = 0; k < NKEYS; k++) {
        const char *val = KM_JSON_STR(cm, "data", KEYS[k]);
        km_pem_bundle *now = NULL;
        if (!val || !done->v[k] || km_pem_parse(val, strlen(val), &now, NULL) != KM_OK)
            continue;
        for (size_t i = 0; i < km_pem_count(done->b[k]); i++) {
            const char *fp = km_pem_fingerprint(done->b[k], i);
            if (km_pem_verdict_removes(done->v[k][i]) && km_pem_contains(now, fp))
                report_readded(r, KEYS[k], km_pem_subject(done->b[k], i), fp);
        }
        km_pem_free(now);
    }
    cJSON_Delete(cm);
    return KM_OK;
}

static void removed_text(const cJSON *st, char *buf, size_t n)
{
    size_t o = 0;
    int i = 0;
    const cJSON *it;
    buf[0] = '\0';
    cJSON_ArrayForEach(it, KM_JSON_AT(st, "removed"))
    {
        const char *s = KM_JSON_STR(it, "subject");
        const char *f = KM_JSON_STR(it, "fingerprint");
        const char *why = KM_JSON_STR(it, "reason");
        const char *k = KM_JSON_STR(it, "key");
        if (!s || !f || !why || !k || o + strlen(s) + 60 >= n)
            break;
        o += (size_t)snprintf(buf + o, n - o, "%s%s %s %.11s... (%s)", i ? "; " : "", k, s, f, why);
        i++;
    }
}

/* How the read-plan-write loop ended. */
typedef enum cleaned { CLEAN_GO_ON = 0, CLEAN_LEFT_ALONE } cleaned;

/* Reads the ConfigMap, plans, backs it up once and writes the plan, again after a conflict.
 * *how = CLEAN_LEFT_ALONE when the ConfigMap is missing or unexpected (condition set).  *wrote
 * receives the number of certificates removed by the write (0 = no write).  The plan stays in
 * p.  Failure: API/transport errors, KM_ECANCELED. */
static km_status clean(run *r, plan *p, cleaned *how, int *wrote, km_err *err)
{
    cJSON *cm = NULL;
    km_status st = KM_OK;
    for (int attempt = 1; st == KM_OK; attempt++) {
        km_err e;
        km_err_clear(&e);
        plan_free(p);
        cJSON_Delete(cm);
        cm = NULL;
        if (km_step_cancelled(r->ctx)) {
            st = km_err_set(err, KM_ECANCELED, "extauth: cancelled");
            break;
        }
        st = get_cm(r, &cm, &e);
        if (st == KM_EAPI && km_err_is_http(&e, 404)) {
            km_json_set_str(r->st, "phase", "Failed");
            km_step_set_result(r->ctx, "False", "ConfigMapMissing", "%s/%s does not exist",
                               KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP);
            *how = CLEAN_LEFT_ALONE;
            st = KM_OK;
            break;
        }
        if (st != KM_OK) {
            if (err)
                *err = e;
            break;
        }
        if ((st = make_plan(r, cm, p, err)) != KM_OK)
            break;
        if (r->problem[0]) {
            km_json_set_str(r->st, "phase", "Failed");
            km_step_set_result(r->ctx, "False", "UnexpectedContent", "%s", r->problem);
            event(r, "Warning", "UnexpectedContent", r->problem);
            *how = CLEAN_LEFT_ALONE;
            break;
        }
        if (p->removes == 0 || r->ctx->dry_run)
            break;
        if ((st = ensure_backup(r, cm, err)) != KM_OK)
            break;
        int conflict = 0;
        km_err_clear(&e);
        if ((st = write_plan(r, cm, p, &conflict, &e)) == KM_OK) {
            *wrote = p->removes;
            break;
        }
        if (conflict && attempt < MAX_ATTEMPTS) {
            km_log_info("extauth: conflict, re-reading", "attempt", KM_LOG_INT(attempt));
            st = KM_OK;
            continue;
        }
        if (err)
            *err = e;
        km_err_prefix(err, "update %s/%s", KM_EXTAUTH_NAMESPACE, KM_EXTAUTH_CONFIGMAP);
    }
    cJSON_Delete(cm);
    return st;
}

/* After the write: the removed certificates in status, the Event, then the re-check. */
static km_status after_write(run *r, plan *p, int wrote, km_err *err)
{
    if (p->removes > 0 && record_plan(r, p) != KM_OK)
        return km_err_set(err, KM_ENOMEM, "extauth: out of memory");
    km_json_set_num(r->st, "kept", (double)r->kept);
    if (!wrote)
        return KM_OK;
    char msg[700], ev[800];
    removed_text(r->st, msg, sizeof(msg));
    snprintf(ev, sizeof(ev), "removed %d old CA certificate(s): %s", wrote, msg);
    event(r, "Normal", "OldCAsRemoved", ev);
    km_json_set_str(r->st, "phase", "Cleaned");
    km_status st = save(r, err);
    return st == KM_OK ? recheck(r, p, err) : st;
}

/* The step's condition. */
static void result(run *r, const plan *p, int wrote)
{
    km_step_ctx *ctx = r->ctx;
    const cJSON *readded = KM_JSON_AT(r->st, "readded");
    char list[700];
    if (cJSON_GetArraySize(readded) > 0) {
        size_t o = 0;
        const cJSON *it;
        list[0] = '\0';
        cJSON_ArrayForEach(it, readded) if (cJSON_IsString(it) && o + 100 < sizeof(list)) o +=
            (size_t)snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", it->valuestring);
        km_json_set_str(r->st, "phase", "OldCAReAdded");
        km_step_set_result(ctx, "False", "OldCAReAdded",
                           "old CA certificate(s) re-added by an API server still running with the "
                           "old CA (SHA-256 %s); restart it with the new PKI, kubemend will not "
                           "remove them again",
                           list);
    } else if (ctx->dry_run) {
        removed_text(r->st, list, sizeof(list));
        km_json_set_str(r->st, "phase", "DryRun");
        if (p->removes > 0)
            km_step_set_result(ctx, "True", "DryRun",
                               "dry run: would remove %d old CA certificate(s): %s", p->removes,
                               list);
        else
            km_step_set_result(ctx, "True", "DryRun", "dry run: nothing to remove");
    } else if (wrote) {
        removed_text(r->st, list, sizeof(list));
        km_step_set_result(ctx, "True", "Cleaned",
                           "removed %d old CA certificate(s): %s; original in ConfigMap %s/%s",
                           wrote, list, KM_EXTAUTH_NAMESPACE, r->backup);
    } else {
        if (!KM_JSON_STR(r->st, "phase") || strcmp(KM_JSON_STR(r->st, "phase"), "Cleaned") != 0)
            km_json_set_str(r->st, "phase", "Clean");
        km_step_set_result(ctx, "True", "AlreadyClean",
                           "no expired or superseded CA certificates (%ld kept)", r->kept);
    }
}

static km_status extauth_step(km_step_ctx *ctx, km_err *err)
{
    run r;
    plan p;
    memset(&r, 0, sizeof(r));
    memset(&p, 0, sizeof(p));
    r.ctx = ctx;
    r.st = ctx->status;
    cleaned how = CLEAN_GO_ON;
    int wrote = 0;
    km_status st = load_pins(&r, err);
    if (st == KM_OK && (st = load_prior(&r)) != KM_OK)
        km_err_set(err, st, "extauth: out of memory");
    if (st == KM_OK)
        st = load_current(&r, err);
    const char *bk = KM_JSON_STR(r.st, "backup");
    if (st == KM_OK && bk && !ctx->dry_run) {
        snprintf(r.backup, sizeof(r.backup), "%s", bk);
        r.backup_done = 1; /* created by an earlier (interrupted) run of this recovery */
    }
    if (st == KM_OK)
        st = clean(&r, &p, &how, &wrote, err);
    if (st == KM_OK && how == CLEAN_GO_ON && (st = after_write(&r, &p, wrote, err)) == KM_OK)
        result(&r, &p, wrote);
    plan_free(&p);
    km_pem_free(r.current);
    for (size_t i = 0; i < r.nprior; i++)
        free(r.prior[i]);
    return st;
}

static const km_field fields[] = {
    {"enabled", KM_FIELD_BOOL, 1, 0, 0, NULL},
    {"pinnedFingerprints", KM_FIELD_FPRLIST, 0, 0, PINS_MAX, NULL},
    KM_FIELD_END,
};

const km_step_def km_extauth_def = {
    .key = "extensionApiserverAuthentication",
    .flag = "extauth",
    .cond = "ExtensionAuthCleaned",
    .fail_reason = "ExtensionAuthFailed",
    .fields = fields,
    .run = extauth_step,
    .verify = km_extauth_verify,
};
