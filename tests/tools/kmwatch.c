/* kmwatch — runs one kubemend watcher (watch/watcher.h) against a real or simulated API server,
 * for integration tests.
 *
 *   kmwatch [--kubeconfig F] [--store] [--label SEL] [--field SEL] [--page-size N]
 *           [--timeout-min S] [--timeout-max S] [--idle-grace-ms MS] [--backoff-initial S]
 *           [--backoff-max S] [--log-level L] PATH
 *
 * PATH is a collection path ("/api/v1/namespaces/ns/configmaps").  stdout gets one JSON line
 * per delivered event {"event":"ADDED","key":"ns/a","rv":"12"} and per completed list
 * {"synced":true,"store":N}.  Commands on stdin, one per line: "dump" prints
 * {"dump":[{"key":..,"rv":..},...]} (the store's contents; needs --store), "stats" prints
 * {"stats":{...}}, "quit" or end of input stops the watcher and exits 0.  Exit 2 on bad usage,
 * 1 when the client cannot be set up. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/json.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "operator/base/log.h"
#include "watch/store.h"
#include "watch/watcher.h"

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

/* Prints o as one line (takes o). */
static void emit(cJSON *o)
{
    char *s = km_json_print(o);
    pthread_mutex_lock(&out_mu);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
    free(s);
    cJSON_Delete(o);
}

typedef struct app {
    km_store *store;
} app;

static void on_event(km_event_type type, const cJSON *obj, void *user)
{
    (void)user;
    char key[KM_STORE_KEY_MAX];
    if (km_store_key(obj, key, sizeof(key)) != KM_OK)
        snprintf(key, sizeof(key), "?");
    const char *rv = KM_JSON_STR(obj, "metadata", "resourceVersion");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", km_event_type_name(type));
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddStringToObject(o, "rv", rv ? rv : "");
    emit(o);
}

static void on_synced(void *user)
{
    app *a = user;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "synced", 1);
    cJSON_AddNumberToObject(o, "store", a->store ? (double)km_store_len(a->store) : -1);
    emit(o);
}

static int dump_cb(const char *key, const cJSON *obj, void *user)
{
    const char *rv = KM_JSON_STR(obj, "metadata", "resourceVersion");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "key", key);
    cJSON_AddStringToObject(e, "rv", rv ? rv : "");
    cJSON_AddItemToArray(user, e);
    return 0;
}

static void print_stats(km_watcher *w)
{
    km_watch_stats st;
    km_watcher_stats(w, &st);
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "state", km_watch_state_name(st.state));
    cJSON_AddBoolToObject(s, "synced", st.synced);
    cJSON_AddNumberToObject(s, "lists", (double)st.lists);
    cJSON_AddNumberToObject(s, "relists", (double)st.relists);
    cJSON_AddNumberToObject(s, "watches", (double)st.watches);
    cJSON_AddNumberToObject(s, "restarts", (double)st.restarts);
    cJSON_AddNumberToObject(s, "expired", (double)st.expired);
    cJSON_AddNumberToObject(s, "errors", (double)st.errors);
    cJSON_AddNumberToObject(s, "events", (double)st.events);
    cJSON_AddNumberToObject(s, "bookmarks", (double)st.bookmarks);
    cJSON_AddStringToObject(s, "resourceVersion", st.resource_version);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "stats", s);
    emit(o);
}

static int usage(void)
{
    fprintf(stderr, "usage: kmwatch [--kubeconfig F] [--store] [--label SEL] [--field SEL] "
                    "[--page-size N] [--timeout-min S] [--timeout-max S] [--idle-grace-ms MS] "
                    "[--backoff-initial S] [--backoff-max S] [--log-level L] PATH\n");
    return 2;
}

/* One option with its value v into kc / o.  0, or usage()'s exit code. */
static int option(const char *a, const char *v, km_kubeconfig_opts *kc, km_watch_opts *o)
{
    char *end = NULL;
    km_log_level lvl;
    if (strcmp(a, "--kubeconfig") == 0)
        kc->kubeconfig = v;
    else if (strcmp(a, "--label") == 0)
        o->label_selector = v;
    else if (strcmp(a, "--field") == 0)
        o->field_selector = v;
    else if (strcmp(a, "--page-size") == 0)
        o->page_size = strtol(v, &end, 10);
    else if (strcmp(a, "--timeout-min") == 0)
        o->timeout_min_s = (int)strtol(v, &end, 10);
    else if (strcmp(a, "--timeout-max") == 0)
        o->timeout_max_s = (int)strtol(v, &end, 10);
    else if (strcmp(a, "--idle-grace-ms") == 0)
        o->idle_grace_ms = strtol(v, &end, 10);
    else if (strcmp(a, "--backoff-initial") == 0)
        o->backoff_initial = strtod(v, &end);
    else if (strcmp(a, "--backoff-max") == 0)
        o->backoff_max = strtod(v, &end);
    else if (strcmp(a, "--log-level") == 0 && km_log_parse_level(v, &lvl) == KM_OK)
        km_log_configure(lvl, KM_LOG_TEXT);
    else
        return usage();
    return end && *end ? usage() : 0;
}

/* 0, or usage()'s exit code. */
static int parse(int argc, char **argv, km_kubeconfig_opts *kc, km_watch_opts *o, int *use_store)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc;
        if (strcmp(a, "--store") == 0) {
            *use_store = 1;
        } else if (a[0] != '-') {
            if (o->path)
                return usage();
            o->path = a;
        } else if (!v || (rc = option(a, v, kc, o)) != 0) {
            return usage();
        } else {
            i++;
        }
    }
    return o->path ? 0 : usage();
}

/* Answers stdin commands (stats, dump, quit) until quit or EOF. */
static void serve(km_watcher *w, app *a)
{
    char line[256];
    while (fgets(line, sizeof(line), stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0)
            break;
        if (strcmp(line, "stats") == 0) {
            print_stats(w);
        } else if (strcmp(line, "dump") == 0) {
            cJSON *arr = cJSON_CreateArray();
            if (a->store)
                km_store_each(a->store, dump_cb, arr);
            cJSON *d = cJSON_CreateObject();
            cJSON_AddItemToObject(d, "dump", arr);
            emit(d);
        }
    }
}

int main(int argc, char **argv)
{
    km_kubeconfig_opts kc = {0};
    km_watch_opts o;
    km_watch_opts_init(&o);
    int use_store = 0;
    int rc = parse(argc, argv, &kc, &o, &use_store);
    if (rc)
        return rc;
    rc = 1;
    char eb[700];
    km_err err;
    km_err_clear(&err);
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    km_watcher *w = NULL;
    app a = {NULL};
    if (km_kubeconfig_load(&kc, &cfg, &err) != KM_OK ||
        km_kube_new(cfg, NULL, &kube, &err) != KM_OK)
        goto out;
    if (use_store && km_store_new(&a.store) != KM_OK)
        goto out;
    o.store = a.store;
    o.on_event = on_event;
    o.on_synced = on_synced;
    o.user = &a;
    km_watch_transport_kube(&o.transport, kube);
    if (km_watcher_new(&o, &w, &err) != KM_OK || km_watcher_start(w, &err) != KM_OK)
        goto out;
    serve(w, &a);
    km_watcher_stop(w);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "kmwatch: %s\n", km_err_str(&err, eb, sizeof(eb)));
    km_watcher_free(w);
    km_store_free(a.store);
    km_kube_free(kube);
    km_kubeconfig_free(cfg);
    return rc;
}
