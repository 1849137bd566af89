/* kube_rest.c — the JSON verbs on resource paths and the paginated list of kube.h, on top of
 * km_kube_do (kube.c: the connection, retries, credentials and rate limit). */
#include "operator/kube/kube.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/base/log.h"
#include "operator/base/strmap.h"

/* ---- JSON helpers --------------------------------------------------------------------------- */

/* Performs a request and parses the 2xx body into *out (when out is non-NULL). */
static km_status do_json(km_kube *k, const km_kube_req *req, cJSON **out, km_err *err)
{
    km_buf resp;
    km_buf_init(&resp, KM_KUBE_BODY_MAX);
    km_status st = km_kube_do(k, req, NULL, out ? &resp : NULL, err);
    if (st == KM_OK && out) {
        cJSON *doc = km_json_parse(resp.data ? resp.data : "", resp.len);
        if (!doc)
            st = km_err_set(err, KM_EPARSE, "%s %s: response is not JSON", req->method, req->path);
        else
            *out = doc;
    }
    km_buf_cleanup(&resp);
    return st;
}

km_status km_kube_get(km_kube *k, const char *path, cJSON **out, km_err *err)
{
    km_kube_req req = {.method = "GET", .path = path};
    return do_json(k, &req, out, err);
}

static km_status send_obj(km_kube *k, const char *method, const char *path, const cJSON *obj,
                          cJSON **out, km_err *err)
{
    char *text = obj ? km_json_print(obj) : NULL;
    if (!text)
        return km_err_set(err, obj ? KM_ENOMEM : KM_EINVAL, "%s %s: no object", method, path);
    km_kube_req req = {.method = method, .path = path, .body = text, .body_len = strlen(text)};
    km_status st = do_json(k, &req, out, err);
    free(text);
    return st;
}

km_status km_kube_create(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err)
{
    return send_obj(k, "POST", path, obj, out, err);
}

km_status km_kube_update(km_kube *k, const char *path, const cJSON *obj, cJSON **out, km_err *err)
{
    return send_obj(k, "PUT", path, obj, out, err);
}

km_status km_kube_patch(km_kube *k, const char *path, km_patch_type type, const char *patch,
                        cJSON **out, km_err *err)
{
    static const char *const types[] = {"application/merge-patch+json",
                                        "application/json-patch+json",
                                        "application/strategic-merge-patch+json"};
    if (!patch || (unsigned)type > KM_PATCH_STRATEGIC)
        return km_err_set(err, KM_EINVAL, "PATCH %s: no patch or unknown patch type", path);
    km_kube_req req = {.method = "PATCH",
                       .path = path,
                       .body = patch,
                       .body_len = strlen(patch),
                       .content_type = types[type]};
    return do_json(k, &req, out, err);
}

/* The DeleteOptions body for o (never NULL on success). */
static char *delete_body(const km_delete_opts *o)
{
    char *text = NULL;
    cJSON *d = cJSON_CreateObject();
    int ok = d && km_json_set_str(d, "apiVersion", "v1") == KM_OK &&
             km_json_set_str(d, "kind", "DeleteOptions") == KM_OK;
    if (ok && o && (o->uid || o->resource_version)) {
        cJSON *pre = km_json_obj(d, "preconditions");
        ok = pre && (!o->uid || km_json_set_str(pre, "uid", o->uid) == KM_OK) &&
             (!o->resource_version ||
              km_json_set_str(pre, "resourceVersion", o->resource_version) == KM_OK);
    }
    if (ok && o && o->propagation)
        ok = km_json_set_str(d, "propagationPolicy", o->propagation) == KM_OK;
    if (ok && o && o->grace_seconds >= 0)
        ok = km_json_set_num(d, "gracePeriodSeconds", (double)o->grace_seconds) == KM_OK;
    if (ok && o && o->dry_run) {
        cJSON *arr = cJSON_AddArrayToObject(d, "dryRun");
        ok = arr && cJSON_AddItemToArray(arr, cJSON_CreateString("All"));
    }
    if (ok)
        text = km_json_print(d);
    cJSON_Delete(d);
    return text;
}

km_status km_kube_delete(km_kube *k, const char *path, const km_delete_opts *o, cJSON **out,
                         km_err *err)
{
    char *text = delete_body(o);
    if (!text)
        return km_err_set(err, KM_ENOMEM, "DELETE %s: out of memory", path);
    km_kube_req req = {.method = "DELETE", .path = path, .body = text, .body_len = strlen(text)};
    km_status st = do_json(k, &req, out, err);
    free(text);
    return st;
}

/* ---- paths ---------------------------------------------------------------------------------- */

km_status km_kube_path(char *buf, size_t n, const char *group, const char *version, const char *ns,
                       const char *resource, const char *name, const char *sub)
{
    int core = !group || !*group;
    int r = snprintf(buf, n, "%s%s/%s%s%s/%s%s%s%s%s", core ? "/api" : "/apis/", core ? "" : group,
                     version ? version : "v1", ns ? "/namespaces/" : "", ns ? ns : "",
                     resource ? resource : "", name ? "/" : "", name ? name : "",
                     name && sub ? "/" : "", name && sub ? sub : "");
    return r < 0 || (size_t)r >= n ? KM_ETOOBIG : KM_OK;
}

char *km_kube_escape(const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out)
        return NULL;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

/* ---- paginated list ------------------------------------------------------------------------- */

/* Appends "&key=escaped(value)" (or "?..." first); no-op when value is NULL. */
static km_status put_param(km_buf *b, const char *key, const char *value)
{
    if (!value)
        return KM_OK;
    char *esc = km_kube_escape(value);
    if (!esc)
        return KM_ENOMEM;
    km_status st = km_buf_printf(b, "%s%s=%s", strchr(km_buf_str(b), '?') ? "&" : "?", key, esc);
    free(esc);
    return st;
}

static km_status list_url(km_buf *b, const char *path, const km_list_opts *o, long limit,
                          const char *cont)
{
    char lim[24];
    snprintf(lim, sizeof(lim), "%ld", limit);
    km_buf_reset(b);
    km_status st = km_buf_puts(b, path);
    if (st == KM_OK && limit > 0)
        st = put_param(b, "limit", lim);
    if (st == KM_OK && o)
        st = put_param(b, "labelSelector", o->label_selector);
    if (st == KM_OK && o)
        st = put_param(b, "fieldSelector", o->field_selector);
    if (st == KM_OK && cont)
        st = put_param(b, "continue", cont);
    else if (st == KM_OK && o && o->resource_version)
        st = put_param(b, "resourceVersion", o->resource_version);
    return st;
}

typedef struct list_state {
    char *cont;      /* continue token of the next page, NULL on the first */
    char *rv;        /* resourceVersion of the last page */
    long limit;      /* page size (halved when a page is too big); 0 = unpaginated */
    int expired;     /* continue tokens that expired (410) so far */
    int mark_first;  /* the next delivered page is the first after a restart */
    long pages;      /* pages fetched since the list (re)started */
    km_strmap *seen; /* hashes of the continue tokens the server handed out */
    int stopped;     /* the page callback failed */
} list_state;

/* FNV-1a of s as 16 hex digits into buf (17 bytes). */
static void token_hash(const char *s, char *buf, size_t n)
{
    unsigned long long h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    snprintf(buf, n, "%016llx", h);
}

/* Remembers the next page's continue token; a token the server handed out before (the list
 * would loop) or a page beyond KM_KUBE_LIST_PAGES_MAX fails with KM_ESTATE. */
static km_status list_guard(list_state *ls, const char *cont, const char *path, km_err *err)
{
    char h[24];
    if (!cont || !*cont)
        return KM_OK;
    if (++ls->pages >= KM_KUBE_LIST_PAGES_MAX)
        return km_err_set(err, KM_ESTATE,
                          "list %s: more than %d pages: the server's continue tokens do not end "
                          "the list",
                          path, KM_KUBE_LIST_PAGES_MAX);
    token_hash(cont, h, sizeof(h));
    if (km_strmap_has(ls->seen, h))
        return km_err_set(err, KM_ESTATE,
                          "list %s: the server returned a continue token it returned before "
                          "(page %ld): the list would never end",
                          path, ls->pages + 1);
    return km_strmap_put(ls->seen, h, ls, NULL) == KM_OK
               ? KM_OK
               : km_err_set(err, KM_ENOMEM, "out of memory");
}

/* Hands one parsed page to fn and remembers continue / resourceVersion. */
static km_status list_page(const cJSON *doc, list_state *ls, km_kube_page_fn fn, void *user,
                           const char *path, km_err *err)
{
    cJSON *empty = NULL;
    const cJSON *items = KM_JSON_AT(doc, "items");
    if (!cJSON_IsArray(items)) {
        if (items && !cJSON_IsNull(items))
            return km_err_set(err, KM_EPARSE, "list %s: items is not an array", path);
        if (!(empty = cJSON_CreateArray()))
            return km_err_set(err, KM_ENOMEM, "out of memory");
        items = empty;
    }
    const char *rv = KM_JSON_STR(doc, "metadata", "resourceVersion");
    const char *cont = KM_JSON_STR(doc, "metadata", "continue");
    km_kube_page page = {.items = items,
                         .resource_version = rv ? rv : "",
                         .restarted = ls->mark_first,
                         .remaining = KM_JSON_LONG(doc, -1, "metadata", "remainingItemCount")};
    ls->mark_first = 0;
    km_status st = fn(&page, user);
    cJSON_Delete(empty);
    if (st != KM_OK) {
        ls->stopped = 1;
        return km_err_set(err, st, "list %s: stopped by the page callback", path);
    }
    if ((st = list_guard(ls, cont, path, err)) != KM_OK)
        return st;
    char *nrv = strdup(rv ? rv : "");
    char *ncont = cont && *cont ? strdup(cont) : NULL;
    if (!nrv || (cont && *cont && !ncont)) {
        free(nrv);
        free(ncont);
        return km_err_set(err, KM_ENOMEM, "out of memory");
    }
    free(ls->rv);
    free(ls->cont);
    ls->rv = nrv;
    ls->cont = ncont;
    return KM_OK;
}

/* Fetches the page for ls->cont.  KM_OK with *doc, or an error. */
static km_status list_fetch(km_kube *k, const char *path, const km_list_opts *o, list_state *ls,
                            cJSON **doc, km_err *err)
{
    km_buf url, resp;
    km_buf_init(&url, 0);
    km_buf_init(&resp, KM_KUBE_BODY_MAX);
    km_status st = list_url(&url, path, o, ls->limit, ls->cont);
    if (st != KM_OK) {
        km_err_set(err, st, "list %s: out of memory", path);
        goto out;
    }
    km_kube_req req = {.method = "GET", .path = km_buf_str(&url)};
    st = km_kube_do(k, &req, NULL, &resp, err); /* a collection GET: verb "list" */
    if (st != KM_OK)
        goto out;
    *doc = km_json_parse(resp.data ? resp.data : "", resp.len);
    if (!*doc)
        st = km_err_set(err, KM_EPARSE, "list %s: response is not JSON", path);
out:
    km_buf_cleanup(&url);
    km_buf_cleanup(&resp);
    return st;
}

/* The list starts over (after an expired continue token): the next page is marked restarted. */
static void list_restart(list_state *ls)
{
    free(ls->cont);
    ls->cont = NULL;
    ls->mark_first = 1;
    ls->pages = 0;
    km_strmap_free(ls->seen);
    ls->seen = km_strmap_new();
}

/* What to do after a failed fetch: 1 = fetch again (ls adjusted), 0 = the list fails.  An
 * expired continue token restarts the list once, then falls back to one unpaginated list (as
 * client-go's pager); a page too big for the response cap is asked again with half the limit. */
static int list_recover(list_state *ls, km_status st, const km_err *e, const char *path)
{
    if (st == KM_EAPI && e->http_code == 410 && ls->cont && ls->expired < 2) {
        if (ls->expired++ == 0) {
            km_log_warn("list continue token expired; restarting the list", "path", path);
        } else {
            km_log_warn("list continue token expired again; listing without pages", "path", path);
            ls->limit = 0;
        }
        list_restart(ls);
        return ls->seen != NULL;
    }
    if (st == KM_ETOOBIG && ls->limit > 1) {
        ls->limit /= 2;
        km_log_warn("list page too big; asking again with a smaller page", "path", path, "limit",
                    KM_LOG_INT(ls->limit));
        return 1;
    }
    return 0;
}

km_status km_kube_list(km_kube *k, const char *path, const km_list_opts *o, km_kube_page_fn fn,
                       void *user, char **out_rv, km_err *err)
{
    list_state ls = {.limit = o && o->limit > 0 ? o->limit : 500L};
    km_status st = KM_OK;
    km_err e;
    if (!path || !fn)
        return km_err_set(err, KM_EINVAL, "list: path and callback are required");
    if (!(ls.seen = km_strmap_new()))
        return km_err_set(err, KM_ENOMEM, "out of memory");
    km_err_clear(err); /* what a failing callback writes into it is recognised below */
    for (;;) {
        cJSON *doc = NULL;
        km_err_clear(&e);
        st = list_fetch(k, path, o, &ls, &doc, &e);
        if (st != KM_OK && list_recover(&ls, st, &e, path))
            continue;
        if (st == KM_ETOOBIG)
            km_err_prefix(&e, "list %s: %s", path,
                          ls.limit > 0 ? "one object exceeds the response cap"
                                       : "the unpaginated list exceeds the response cap");
        if (st == KM_OK)
            st = list_page(doc, &ls, fn, user, path, &e);
        cJSON_Delete(doc);
        if (st != KM_OK || !ls.cont)
            break;
    }
    if (st == KM_OK && out_rv) {
        *out_rv = ls.rv;
        ls.rv = NULL;
    }
    /* A callback that failed with an error of its own in err keeps it (its HTTP details). */
    if (st != KM_OK && err && !(ls.stopped && err->status == st))
        *err = e;
    free(ls.cont);
    free(ls.rv);
    km_strmap_free(ls.seen);
    return st;
}
