/* kmctl — a tiny CLI over kubemend's Kubernetes client, for integration tests.
 *
 *   kmctl [--kubeconfig F] [--context C] [--incluster-dir D] [--qps Q] [--burst B]
 *         [--max-retries N] [--timeout-ms T] [--backoff S] [--token-recheck S]
 *         [--log-level L] COMMAND [ARGS]
 *
 * Commands (ARGS after PATH are one JSON text):
 *   config                        the resolved configuration (no secrets)
 *   get PATH | do METHOD PATH [BODY]
 *   create PATH OBJ | update PATH OBJ | patch PATH merge|json|strategic PATCH
 *   delete PATH [{"uid":..,"rv":..,"propagation":..,"grace":N,"dryRun":true}]
 *   list PATH [{"limit":N,"label":..,"field":..,"rv":..}]   one line per page, then a summary
 *   stream PATH [IDLE_MS]          the raw body on stdout, then a result line
 *   script                         reads the commands above from stdin, one per line
 *
 * Every result is one JSON line on stdout: {"ok":true,...} or {"ok":false,"error":...}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/base/json.h"
#include "operator/base/num.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "operator/base/log.h"

typedef struct cli {
    km_kubeconfig_opts kc;
    km_kube_opts ko;
    double token_recheck; /* < 0 = default */
} cli;

static void print_err(const km_status st, const km_err *e)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 0);
    cJSON_AddStringToObject(o, "error", km_strerror(st));
    cJSON_AddNumberToObject(o, "http_code", (double)e->http_code);
    cJSON_AddStringToObject(o, "reason", e->reason);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "details", e->details);
    cJSON_AddNumberToObject(o, "retry_after", (double)e->retry_after);
    char *s = km_json_print(o);
    printf("%s\n", s ? s : "{\"ok\":false}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

/* Prints {"ok":true,"result":doc} (takes doc). */
static void print_ok(cJSON *doc)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "ok", 1);
    if (doc)
        cJSON_AddItemToObject(o, "result", doc);
    char *s = km_json_print(o);
    printf("%s\n", s ? s : "{\"ok\":true}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static km_status finish(km_status st, cJSON *doc, const km_err *e)
{
    if (st == KM_OK)
        print_ok(doc);
    else
        print_err(st, e);
    return st;
}

static km_status cmd_config(km_kube *k)
{
    km_kubeconfig *c = km_kube_config(k);
    cJSON *o = cJSON_CreateObject();
    const char *ns = km_kubeconfig_namespace(c), *tsn = km_kubeconfig_tls_server_name(c);
    char *tok = NULL;
    km_kubeconfig_token(c, &tok, NULL);
    cJSON_AddStringToObject(o, "server", km_kubeconfig_server(c));
    cJSON_AddStringToObject(o, "source", km_kubeconfig_source(c));
    if (ns)
        cJSON_AddStringToObject(o, "namespace", ns);
    if (tsn)
        cJSON_AddStringToObject(o, "tls_server_name", tsn);
    cJSON_AddBoolToObject(o, "insecure", km_kubeconfig_insecure(c));
    cJSON_AddBoolToObject(o, "has_ca", km_kubeconfig_ca_pem(c) != NULL);
    cJSON_AddBoolToObject(o, "has_client_cert", km_kubeconfig_client_cert_pem(c) != NULL);
    cJSON_AddBoolToObject(o, "has_token", tok != NULL);
    free(tok);
    print_ok(o);
    return KM_OK;
}

typedef struct list_ctx {
    int pages;
    int items;
} list_ctx;

static km_status on_page(const km_kube_page *p, void *user)
{
    list_ctx *lc = user;
    cJSON *o = cJSON_CreateObject(), *names = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, p->items)
    {
        const char *n = KM_JSON_STR(it, "metadata", "name");
        cJSON_AddItemToArray(names, cJSON_CreateString(n ? n : ""));
        lc->items++;
    }
    lc->pages++;
    cJSON_AddNumberToObject(o, "page", lc->pages);
    cJSON_AddBoolToObject(o, "restarted", p->restarted);
    cJSON_AddStringToObject(o, "rv", p->resource_version);
    cJSON_AddNumberToObject(o, "remaining", (double)p->remaining);
    cJSON_AddItemToObject(o, "names", names);
    char *s = km_json_print(o);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
    return KM_OK;
}

static km_status cmd_list(km_kube *k, const char *path, const cJSON *opt, km_err *e)
{
    km_list_opts lo = {.limit = KM_JSON_LONG(opt, 0, "limit"),
                       .label_selector = KM_JSON_STR(opt, "label"),
                       .field_selector = KM_JSON_STR(opt, "field"),
                       .resource_version = KM_JSON_STR(opt, "rv")};
    list_ctx lc = {0};
    char *rv = NULL;
    km_status st = km_kube_list(k, path, &lo, on_page, &lc, &rv, e);
    cJSON *o = NULL;
    if (st == KM_OK) {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "pages", lc.pages);
        cJSON_AddNumberToObject(o, "items", lc.items);
        cJSON_AddStringToObject(o, "rv", rv);
    }
    free(rv);
    return finish(st, o, e);
}

static km_status cmd_delete(km_kube *k, const char *path, const cJSON *opt, km_err *e)
{
    km_delete_opts d;
    km_delete_opts_init(&d);
    d.uid = KM_JSON_STR(opt, "uid");
    d.resource_version = KM_JSON_STR(opt, "rv");
    d.propagation = KM_JSON_STR(opt, "propagation");
    d.grace_seconds = KM_JSON_LONG(opt, -1, "grace");
    d.dry_run = KM_JSON_BOOL(opt, 0, "dryRun");
    cJSON *out = NULL;
    km_status st = km_kube_delete(k, path, &d, &out, e);
    return finish(st, out, e);
}

static km_status on_chunk(const char *data, size_t len, void *user)
{
    (void)user;
    fwrite(data, 1, len, stdout);
    fflush(stdout);
    return KM_OK;
}

static km_status cmd_do(km_kube *k, const char *method, const char *path, const char *body,
                        km_err *e)
{
    km_kube_req req = {
        .method = method, .path = path, .body = body, .body_len = body ? strlen(body) : 0};
    km_buf resp;
    long code = 0;
    km_buf_init(&resp, 0);
    km_status st = km_kube_do(k, &req, &code, &resp, e);
    cJSON *o = NULL;
    if (st == KM_OK) {
        o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "code", (double)code);
        cJSON_AddStringToObject(o, "body", km_buf_str(&resp));
    }
    km_buf_cleanup(&resp);
    return finish(st, o, e);
}

static km_status cmd_patch(km_kube *k, const char *path, const char *rest, km_err *e)
{
    static const char *const names[] = {"merge", "json", "strategic"};
    const char *sp = rest ? strchr(rest, ' ') : NULL;
    cJSON *out = NULL;
    for (int t = 0; sp && t < 3; t++) {
        if ((size_t)(sp - rest) == strlen(names[t]) && strncmp(rest, names[t], sp - rest) == 0) {
            km_status st = km_kube_patch(k, path, (km_patch_type)t, sp + 1, &out, e);
            return finish(st, out, e);
        }
    }
    return finish(km_err_set(e, KM_EINVAL, "patch PATH merge|json|strategic PATCH"), NULL, e);
}

/* Runs one command: cmd, path, and the rest of the line (may be NULL). */
static km_status run(km_kube *k, const char *cmd, const char *path, const char *rest)
{
    km_err e;
    km_err_clear(&e);
    cJSON *out = NULL, *opt = rest ? cJSON_Parse(rest) : NULL;
    km_status st;
    if (strcmp(cmd, "config") == 0)
        st = cmd_config(k);
    else if (!path)
        st = finish(km_err_set(&e, KM_EINVAL, "%s needs a PATH", cmd), NULL, &e);
    else if (strcmp(cmd, "get") == 0) {
        st = km_kube_get(k, path, &out, &e);
        finish(st, out, &e);
    } else if (strcmp(cmd, "list") == 0)
        st = cmd_list(k, path, opt, &e);
    else if (strcmp(cmd, "create") == 0 || strcmp(cmd, "update") == 0) {
        if (!opt)
            st = finish(km_err_set(&e, KM_EINVAL, "%s needs a JSON object", cmd), NULL, &e);
        else {
            st = cmd[0] == 'c' ? km_kube_create(k, path, opt, &out, &e)
                               : km_kube_update(k, path, opt, &out, &e);
            finish(st, out, &e);
        }
    } else if (strcmp(cmd, "patch") == 0)
        st = cmd_patch(k, path, rest, &e);
    else if (strcmp(cmd, "delete") == 0)
        st = cmd_delete(k, path, opt, &e);
    else if (strcmp(cmd, "do") == 0) {
        /* do METHOD PATH [BODY]: here `path` is the method */
        const char *sp = rest ? strchr(rest, ' ') : NULL;
        char p[4096];
        snprintf(p, sizeof(p), "%.*s", sp ? (int)(sp - rest) : (int)strlen(rest ? rest : ""),
                 rest ? rest : "");
        st = cmd_do(k, path, p, sp ? sp + 1 : NULL, &e);
    } else if (strcmp(cmd, "stream") == 0) {
        st = km_kube_stream(k, path, rest ? strtol(rest, NULL, 10) : 0, on_chunk, NULL, &e);
        st = finish(st, NULL, &e);
    } else
        st = finish(km_err_set(&e, KM_EINVAL, "unknown command %s", cmd), NULL, &e);
    cJSON_Delete(opt);
    return st;
}

/* Splits "cmd path rest" in place. */
static km_status run_line(km_kube *k, char *line)
{
    line[strcspn(line, "\r\n")] = '\0';
    char *cmd = line + strspn(line, " ");
    if (!*cmd || *cmd == '#')
        return KM_OK;
    char *path = strchr(cmd, ' ');
    char *rest = NULL;
    if (path) {
        *path++ = '\0';
        rest = strchr(path, ' ');
        if (rest)
            *rest++ = '\0';
    }
    return run(k, cmd, path, rest);
}

static int script(km_kube *k)
{
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0)
        run_line(k, line);
    free(line);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: kmctl [--kubeconfig F] [--context C] [--incluster-dir D] [--qps Q] "
                    "[--burst B] [--max-retries N] [--timeout-ms T] [--backoff S] "
                    "[--token-recheck S] [--log-level L] COMMAND [ARGS]\n");
    return 2;
}

/* Parses the options; returns the index of the command or -1. */
static int parse_opts(int argc, char **argv, cli *c)
{
    int i = 1;
    for (; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        const char *o = argv[i] + 2, *v = argv[i + 1];
        km_log_level lvl;
        if (strcmp(o, "kubeconfig") == 0)
            c->kc.kubeconfig = v;
        else if (strcmp(o, "context") == 0)
            c->kc.context = v;
        else if (strcmp(o, "incluster-dir") == 0)
            c->kc.incluster_dir = v;
        else if (strcmp(o, "qps") == 0)
            c->ko.qps = strtod(v, NULL);
        else if (strcmp(o, "burst") == 0)
            c->ko.burst = (int)strtol(v, NULL, 10);
        else if (strcmp(o, "max-retries") == 0)
            c->ko.max_retries = (int)strtol(v, NULL, 10);
        else if (strcmp(o, "timeout-ms") == 0)
            c->ko.timeout_ms = strtol(v, NULL, 10);
        else if (strcmp(o, "backoff") == 0)
            c->ko.backoff_initial = strtod(v, NULL);
        else if (strcmp(o, "token-recheck") == 0)
            c->token_recheck = strtod(v, NULL);
        else if (strcmp(o, "log-level") == 0 && km_log_parse_level(v, &lvl) == KM_OK)
            km_log_configure(lvl, KM_LOG_TEXT);
        else
            return -1;
    }
    return i < argc ? i : -1;
}

int main(int argc, char **argv)
{
    cli c = {.token_recheck = -1};
    km_kubeconfig *cfg = NULL;
    km_kube *k = NULL;
    km_err e;
    int rc = 1;
    km_kube_opts_default(&c.ko);
    int i = parse_opts(argc, argv, &c);
    if (i < 0)
        return usage();
    if (km_kube_global_init() != KM_OK)
        return 1;
    km_status st = km_kubeconfig_load(&c.kc, &cfg, &e);
    if (st == KM_OK && c.token_recheck >= 0)
        km_kubeconfig_set_token_recheck(cfg, c.token_recheck);
    if (st == KM_OK)
        st = km_kube_new(cfg, &c.ko, &k, &e);
    if (st != KM_OK) {
        print_err(st, &e);
        goto out;
    }
    if (strcmp(argv[i], "script") == 0) {
        rc = script(k);
        goto out;
    }
    /* single command: cmd path rest-joined-by-spaces */
    km_buf rest;
    km_buf_init(&rest, 0);
    for (int j = i + 2; j < argc; j++)
        km_buf_printf(&rest, "%s%s", j > i + 2 ? " " : "", argv[j]);
    st = run(k, argv[i], i + 1 < argc ? argv[i + 1] : NULL, rest.len ? km_buf_str(&rest) : NULL);
    km_buf_cleanup(&rest);
    rc = st == KM_OK ? 0 : 1;
out:
    km_kube_free(k);
    km_kubeconfig_free(cfg);
    return rc;
}
