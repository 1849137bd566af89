/* retire.c — the BridgeRetirable check (see retire.h). */
#include "reconcilers/bridge/retire.h"

#include <stdio.h>
#include <string.h>

#include "operator/base/base64.h"
#include "operator/base/clock.h"
#include "operator/base/json.h"
#include "reconcilers/bridge/cluster.h"
#include "reconcilers/bridge/kid.h"
#include "reconcilers/pods/podsel.h"
#include "reconcilers/step/conditions.h"
#include "reconcilers/tokens/check.h"

int km_bridge_pod_depends(const cJSON *pod, const cJSON *sa, time_t rebuilt_at)
{
    const char *phase = KM_JSON_STR(pod, "status", "phase");
    if (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))
        return 0;
    if (KM_JSON_AT(pod, "metadata", "annotations", KM_MIRROR_ANNOTATION))
        return 0; /* a static pod: the kubelet gives it no service-account token */
    if (!km_podsel_mounts_token(pod, sa))
        return 0;
    const char *started = KM_JSON_STR(pod, "status", "startTime");
    if (!started)
        started = KM_JSON_STR(pod, "metadata", "creationTimestamp");
    time_t t = 0;
    if (rebuilt_at <= 0 || !started || km_clock_parse(started, &t) != KM_OK)
        return 1;
    return t < rebuilt_at;
}

/* Appends "ns/name" of o to the list in buf (the first 3 only). */
static void name_of(const cJSON *o, long count, char *buf, size_t n)
{
    const char *ns = KM_JSON_STR(o, "metadata", "namespace");
    const char *name = KM_JSON_STR(o, "metadata", "name");
    size_t used = strlen(buf);
    if (count <= 3 && used < n)
        snprintf(buf + used, n - used, "%s%s/%s", used ? ", " : "", ns ? ns : "", name ? name : "");
}

typedef struct scan {
    km_kube *kube;
    km_bridge_retire *r;
    time_t rebuilt_at;
    km_err *err;
} scan;

static km_status on_secrets(const km_kube_page *page, void *user)
{
    scan *s = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        /* Every token Secret not being deleted counts, annotated or not: kube-apiserver accepts
         * a legacy token whose Secret lacks the uid annotation (the tokens step leaves those). */
        const char *tok = KM_JSON_STR(it, "data", "token");
        unsigned char *raw = NULL;
        size_t len = 0;
        if (!tok || KM_JSON_AT(it, "metadata", "deletionTimestamp") ||
            km_base64_decode(tok, strlen(tok), 0, &raw, &len) != KM_OK)
            continue;
        int old = km_bridge_classify((const char *)raw, s->r->signing_kid) == KM_BRIDGE_OLD;
        km_tokens_token_free((char *)raw);
        if (old)
            name_of(it, ++s->r->old_secrets, s->r->first_secret, sizeof(s->r->first_secret));
    }
    return KM_OK;
}

/* The pod's ServiceAccount into *sa (NULL when it is gone), read only when the pod's spec does
 * not tell whether a token is mounted (rare: no volume information at all). */
static km_status pod_sa(scan *s, const cJSON *pod, cJSON **sa)
{
    char path[600];
    const char *name = KM_JSON_STR(pod, "spec", "serviceAccountName");
    *sa = NULL;
    if (km_podsel_token_from_spec(pod) != -1)
        return KM_OK;
    km_kube_path(path, sizeof(path), NULL, "v1", KM_JSON_STR(pod, "metadata", "namespace"),
                 "serviceaccounts", name && *name ? name : "default", NULL);
    km_status st = km_kube_get(s->kube, path, sa, s->err);
    if (st == KM_EAPI && km_err_is_http(s->err, 404)) {
        km_err_clear(s->err);
        return KM_OK;
    }
    return st;
}

static km_status on_pods(const km_kube_page *page, void *user)
{
    scan *s = user;
    const cJSON *it;
    cJSON_ArrayForEach(it, page->items)
    {
        cJSON *sa = NULL;
        km_status st = pod_sa(s, it, &sa);
        if (st != KM_OK)
            return st;
        if (km_bridge_pod_depends(it, sa, s->rebuilt_at))
            name_of(it, ++s->r->old_pods, s->r->first_pod, sizeof(s->r->first_pod));
        cJSON_Delete(sa);
    }
    return KM_OK;
}

km_status km_bridge_retire_check(km_kube *kube, time_t rebuilt_at, km_bridge_retire *out,
                                 km_err *err)
{
    memset(out, 0, sizeof(*out));
    km_status st = km_bridge_probe(kube, out->signing_kid, sizeof(out->signing_kid), err);
    if (st != KM_OK || !out->signing_kid[0])
        return st;
    out->bridged = 1;
    scan s = {.kube = kube, .r = out, .rebuilt_at = rebuilt_at, .err = err};
    km_list_opts so = {.field_selector = "type=" KM_SA_TOKEN_TYPE, .limit = 500};
    km_list_opts po = {.limit = 500};
    st = km_kube_list(kube, "/api/v1/secrets", &so, on_secrets, &s, NULL, err);
    if (st == KM_OK)
        st = km_kube_list(kube, "/api/v1/pods", &po, on_pods, &s, NULL, err);
    return st;
}

int km_bridge_retire_condition(km_kube *kube, cJSON *status, long long generation)
{
    km_bridge_retire r;
    km_err e;
    char now[40], msg[2048], eb[600];
    time_t rebuilt = 0;
    km_err_clear(&e);
    km_clock_now_text(now, sizeof(now));
    if (km_clock_parse(KM_JSON_STR(status, "rebuild", "time"), &rebuilt) != KM_OK)
        rebuilt = 0;
    km_status st = km_bridge_retire_check(kube, rebuilt, &r, &e);
    if (st != KM_OK) {
        snprintf(msg, sizeof(msg), "cannot tell: %s", km_err_str(&e, eb, sizeof(eb)));
        return km_cond_set(status, KM_COND_BRIDGE_RETIRABLE, "Unknown", "ReadFailed", msg,
                           generation, now) < 0
                   ? -1
                   : 0;
    }
    if (!r.bridged) { /* once said bridged: say it is gone */
        const char *was = km_cond_reason(status, KM_COND_BRIDGE_RETIRABLE);
        if (!km_cond_get(status, KM_COND_BRIDGE_RETIRABLE) ||
            (was && strcmp(was, KM_BRIDGE_RETIRED) == 0))
            return 0;
        return km_cond_set(status, KM_COND_BRIDGE_RETIRABLE, "True", KM_BRIDGE_RETIRED,
                           "the API server trusts one service-account key again: the bridge is "
                           "gone",
                           generation, now) < 0
                   ? -1
                   : 0;
    }
    if (r.old_secrets == 0 && r.old_pods == 0) {
        snprintf(msg, sizeof(msg),
                 "nothing depends on the old key any more: remove the extra "
                 "--service-account-key-file line (the old key's file, not sa.pub) from "
                 "/etc/kubernetes/manifests/kube-apiserver.yaml on every control-plane node; "
                 "new tokens are signed by kid %s",
                 r.signing_kid);
        return km_cond_set(status, KM_COND_BRIDGE_RETIRABLE, "True", "NothingDependsOnOldKey", msg,
                           generation, now) < 0
                   ? -1
                   : 0;
    }
    snprintf(msg, sizeof(msg),
             "keep the bridge: %ld token Secret(s) hold a token of the old key%s%s%s, %ld pod(s) "
             "with a service-account token started before the rebuild%s%s%s",
             r.old_secrets, r.old_secrets ? " (e.g. " : "", r.first_secret,
             r.old_secrets ? ")" : "", r.old_pods, r.old_pods ? " (e.g. " : "", r.first_pod,
             r.old_pods ? ")" : "");
    return km_cond_set(status, KM_COND_BRIDGE_RETIRABLE, "False", "OldKeyInUse", msg, generation,
                       now) < 0
               ? -1
               : 0;
}

int km_bridge_active(const cJSON *status)
{
    const char *reason = km_cond_reason(status, KM_COND_BRIDGE_RETIRABLE);
    return km_cond_get(status, KM_COND_BRIDGE_RETIRABLE) &&
           !(reason && strcmp(reason, KM_BRIDGE_RETIRED) == 0);
}
