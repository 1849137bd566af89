/* kubeconfig.c — kubeconfig (libyaml document tree) and in-cluster configuration. */
#include "operator/base/clock.h"
#include "operator/kube/kubeconfig.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <yaml.h>

#include "operator/base/base64.h"
#include "operator/base/buf.h"
#include "operator/base/log.h"
#include "operator/base/yamljson.h"
#include "operator/kube/header.h"
#include "operator/kube/ratelimit.h"

#define KC_FILE_MAX (4 * 1024 * 1024)
/* Why a token with CR/LF or another control character is refused (it becomes a header). */
#define TOKEN_CTRL                                                                                 \
    "the token holds control characters (CR, LF, ...): refused, it would inject HTTP headers"

struct km_kubeconfig {
    char *source;
    char *server;
    char *ns;
    char *ca_pem;
    char *cert_pem;
    char *key_pem;
    char *tls_server_name;
    int insecure;
    /* bearer token: static (token) or re-read from token_file */
    pthread_mutex_t lock;
    char *token;
    char *token_file;
    int have_stat;
    struct stat st;
    double last_check;
    double recheck;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static void free_secret(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Reads a whole file (at most KC_FILE_MAX bytes) into a malloc'ed NUL-terminated string.
 * On failure returns NULL with errno set (EFBIG when too large). */
static char *slurp(const char *path, size_t *len_out)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    km_buf b;
    km_buf_init(&b, KC_FILE_MAX);
    char chunk[4096];
    size_t n;
    int fail = 0;
    while (!fail && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fail = km_buf_append(&b, chunk, n) != KM_OK;
    int saved = fail ? EFBIG : ferror(f) ? EIO : 0;
    fclose(f);
    if (saved) {
        km_buf_cleanup(&b);
        errno = saved;
        return NULL;
    }
    if (len_out)
        *len_out = b.len;
    char *s = km_buf_take(&b);
    if (!s)
        errno = ENOMEM;
    return s;
}

/* Trims trailing whitespace in place. */
static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

/* Base64 of PEM text (whitespace allowed) into a malloc'ed NUL-terminated string.  NULL with errno
 * EINVAL (malformed, or holding NUL bytes, which PEM text never does) or ENOMEM. */
static char *b64_decode(const char *in)
{
    unsigned char *out = NULL;
    size_t n = 0;
    km_status st = km_base64_decode(in, strlen(in), KM_B64_SKIP_SPACE, &out, &n);
    if (st != KM_OK || memchr(out, '\0', n)) {
        free(out);
        errno = st == KM_ENOMEM ? ENOMEM : EINVAL;
        return NULL;
    }
    return (char *)out;
}

/* ---- the YAML tree ------------------------------------------------------------------------- */

typedef struct kc_parse {
    const char *path; /* the kubeconfig file */
    char dir[PATH_MAX];
    yaml_document_t doc;
    km_err *err;
} kc_parse;

static yaml_node_t *ynode(kc_parse *p, int idx)
{
    return yaml_document_get_node(&p->doc, idx);
}

/* Value of key in a mapping node, or NULL. */
static yaml_node_t *ymap_get(kc_parse *p, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = map->data.mapping.pairs.start; pr < map->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = ynode(p, pr->key);
        if (k && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0)
            return ynode(p, pr->value);
    }
    return NULL;
}

/* The scalar text of a node, NULL for a missing node, "" for YAML null ("~", "null", empty). */
static const char *yscalar(yaml_node_t *n)
{
    if (!n || n->type != YAML_SCALAR_NODE)
        return NULL;
    return (const char *)n->data.scalar.value;
}

static km_status kc_fail(kc_parse *p, km_status st, const char *field, const char *what)
{
    return km_err_set(p->err, st, "kubeconfig %s: %s: %s", p->path, field, what);
}

/* Reads an optional string field: *out NULL when absent or empty; error when not a scalar. */
static km_status kc_str(kc_parse *p, yaml_node_t *map, const char *field, const char *key,
                        const char **out)
{
    yaml_node_t *n = ymap_get(p, map, key);
    *out = NULL;
    if (!n)
        return KM_OK;
    if (n->type != YAML_SCALAR_NODE) {
        char f[256];
        snprintf(f, sizeof(f), "%s.%s", field, key);
        return kc_fail(p, KM_ECONFIG, f, "must be a string");
    }
    const char *s = yscalar(n);
    *out = *s ? s : NULL;
    return KM_OK;
}

/* Finds list[name=NAME].INNER (e.g. clusters[prod].cluster). */
static km_status kc_find(kc_parse *p, const char *list, const char *inner, const char *name,
                         yaml_node_t **out)
{
    char f[256];
    yaml_node_t *seq = ymap_get(p, ynode(p, 1), list);
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return kc_fail(p, KM_ECONFIG, list, "missing or not a list");
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *e = ynode(p, *it);
        const char *nm = yscalar(ymap_get(p, e, "name"));
        if (!nm || strcmp(nm, name) != 0)
            continue;
        yaml_node_t *v = ymap_get(p, e, inner);
        snprintf(f, sizeof(f), "%s[%s].%s", list, name, inner);
        if (!v || v->type != YAML_MAPPING_NODE)
            return kc_fail(p, KM_ECONFIG, f, "missing or not a mapping");
        *out = v;
        return KM_OK;
    }
    char what[300];
    snprintf(what, sizeof(what), "no entry named \"%s\"", name);
    return kc_fail(p, KM_ECONFIG, list, what);
}

/* Resolves a path from the kubeconfig against its directory into buf (a too long result is
 * truncated and then simply fails to open). */
static const char *kc_resolve(kc_parse *p, const char *file, char *buf, size_t n)
{
    int r = file[0] == '/' ? snprintf(buf, n, "%s", file) : snprintf(buf, n, "%s/%s", p->dir, file);
    if (r < 0 || (size_t)r >= n)
        buf[n - 1] = '\0';
    return buf;
}

/* Reads inline base64 data (KEY-data) or a file (KEY) into *out (malloc'ed) and checks it holds
 * a PEM block named by `marker`.  *out stays NULL when neither is set. */
static km_status kc_pem(kc_parse *p, yaml_node_t *map, const char *field, const char *key,
                        const char *marker, char **out)
{
    char dkey[64], f[256], path[PATH_MAX], what[PATH_MAX + 64];
    const char *file, *data;
    snprintf(dkey, sizeof(dkey), "%s-data", key);
    km_status st = kc_str(p, map, field, key, &file);
    if (st == KM_OK)
        st = kc_str(p, map, field, dkey, &data);
    if (st != KM_OK)
        return st;
    char *pem = NULL;
    if (data) {
        snprintf(f, sizeof(f), "%s.%s", field, dkey);
        pem = b64_decode(data);
        if (!pem)
            return kc_fail(p, errno == ENOMEM ? KM_ENOMEM : KM_ECONFIG, f, "not valid base64");
    } else if (file) {
        snprintf(f, sizeof(f), "%s.%s", field, key);
        pem = slurp(kc_resolve(p, file, path, sizeof(path)), NULL);
        if (!pem) {
            snprintf(what, sizeof(what), "cannot read %s: %s", path, strerror(errno));
            return kc_fail(p, KM_ECONFIG, f, what);
        }
    } else {
        return KM_OK;
    }
    if (!strstr(pem, "-----BEGIN ") || !strstr(pem, marker)) {
        free_secret(pem);
        snprintf(what, sizeof(what), "does not contain a PEM %s", marker);
        return kc_fail(p, KM_ECONFIG, f, what);
    }
    *out = pem;
    return KM_OK;
}

static int parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"true", "yes", "on"};
    static const char *const no[] = {"false", "no", "off"};
    for (size_t i = 0; i < 3; i++) {
        if (strcasecmp(s, yes[i]) == 0)
            return *out = 1, 0;
        if (strcasecmp(s, no[i]) == 0)
            return *out = 0, 0;
    }
    return -1;
}

/* clusters[name].cluster: server, CA, insecure-skip-tls-verify, tls-server-name. */
static km_status kc_cluster(kc_parse *p, const char *name, km_kubeconfig *cfg)
{
    yaml_node_t *c;
    char field[256], f[300];
    const char *server, *insecure, *tsn;
    km_status st = kc_find(p, "clusters", "cluster", name, &c);
    if (st != KM_OK)
        return st;
    snprintf(field, sizeof(field), "clusters[%s].cluster", name);
    if ((st = kc_str(p, c, field, "server", &server)) != KM_OK ||
        (st = kc_str(p, c, field, "insecure-skip-tls-verify", &insecure)) != KM_OK ||
        (st = kc_str(p, c, field, "tls-server-name", &tsn)) != KM_OK)
        return st;
    snprintf(f, sizeof(f), "%s.server", field);
    if (!server)
        return kc_fail(p, KM_ECONFIG, f, "missing");
    int has_scheme = strncmp(server, "https://", 8) == 0 || strncmp(server, "http://", 7) == 0;
    if (!has_scheme && strstr(server, "://"))
        return kc_fail(p, KM_ECONFIG, f, "scheme must be https:// or http://");
    km_buf b;
    km_buf_init(&b, 0);
    if (km_buf_printf(&b, "%s%s", has_scheme ? "" : "https://", server) != KM_OK)
        return kc_fail(p, KM_ENOMEM, f, "out of memory");
    while (b.len > 8 && b.data[b.len - 1] == '/')
        b.data[--b.len] = '\0';
    cfg->server = km_buf_take(&b);
    if (!cfg->server)
        return kc_fail(p, KM_ENOMEM, f, "out of memory");
    snprintf(f, sizeof(f), "%s.insecure-skip-tls-verify", field);
    if (insecure && parse_bool(insecure, &cfg->insecure) != 0)
        return kc_fail(p, KM_ECONFIG, f, "not a boolean");
    if (tsn && !(cfg->tls_server_name = strdup(tsn)))
        return KM_ENOMEM;
    st = kc_pem(p, c, field, "certificate-authority", "CERTIFICATE", &cfg->ca_pem);
    if (st == KM_OK && cfg->insecure && cfg->ca_pem)
        return kc_fail(p, KM_ECONFIG, f,
                       "cannot be combined with certificate-authority(-data): "
                       "a CA with the insecure flag is not allowed");
    return st;
}

/* Refuses the user fields kubemend does not implement. */
static km_status kc_unsupported(kc_parse *p, yaml_node_t *u, const char *field)
{
    static const char *const keys[] = {"exec", "auth-provider", "username", "password"};
    static const char *const why[] = {
        "exec credential plugins are not supported; use a token, tokenFile or a client "
        "certificate",
        "auth-provider plugins are not supported; use a token, tokenFile or a client "
        "certificate",
        "basic authentication is not supported; use a token or a client certificate",
        "basic authentication is not supported; use a token or a client certificate"};
    char f[300];
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (ymap_get(p, u, keys[i])) {
            snprintf(f, sizeof(f), "%s.%s", field, keys[i]);
            return kc_fail(p, KM_EUNSUPPORTED, f, why[i]);
        }
    }
    return KM_OK;
}

static km_status token_load(km_kubeconfig *cfg, int force, int *changed);

/* users[name].user: token / tokenFile, client certificate and key. */
static km_status kc_user(kc_parse *p, const char *name, km_kubeconfig *cfg)
{
    yaml_node_t *u;
    char field[256], f[300], path[PATH_MAX], what[PATH_MAX + 160];
    const char *token, *tfile;
    km_status st = kc_find(p, "users", "user", name, &u);
    if (st != KM_OK)
        return st;
    snprintf(field, sizeof(field), "users[%s].user", name);
    if ((st = kc_unsupported(p, u, field)) != KM_OK ||
        (st = kc_str(p, u, field, "token", &token)) != KM_OK ||
        (st = kc_str(p, u, field, "tokenFile", &tfile)) != KM_OK)
        return st;
    if (token && !km_header_value_ok(token)) { /* it becomes an Authorization header */
        snprintf(f, sizeof(f), "%s.token", field);
        return kc_fail(p, KM_ECONFIG, f, TOKEN_CTRL);
    }
    if (token && !(cfg->token = strdup(token)))
        return KM_ENOMEM;
    if (tfile) {
        if (!(cfg->token_file = strdup(kc_resolve(p, tfile, path, sizeof(path)))))
            return KM_ENOMEM;
        if ((st = token_load(cfg, 1, NULL)) != KM_OK) {
            snprintf(f, sizeof(f), "%s.tokenFile", field);
            if (st == KM_EINVAL)
                snprintf(what, sizeof(what), "%s: %s", path, TOKEN_CTRL);
            else
                snprintf(what, sizeof(what), "cannot read %s: %s", path, strerror(errno));
            return kc_fail(p, KM_ECONFIG, f, what);
        }
    }
    if ((st = kc_pem(p, u, field, "client-certificate", "CERTIFICATE", &cfg->cert_pem)) != KM_OK ||
        (st = kc_pem(p, u, field, "client-key", "PRIVATE KEY", &cfg->key_pem)) != KM_OK)
        return st;
    if (!cfg->cert_pem != !cfg->key_pem) {
        snprintf(f, sizeof(f), "%s.%s", field, cfg->cert_pem ? "client-key" : "client-certificate");
        return kc_fail(p, KM_ECONFIG, f, "missing (client-certificate and client-key go together)");
    }
    return KM_OK;
}

/* Picks the context and reads cluster, user and namespace. */
static km_status kc_read(kc_parse *p, const char *context, km_kubeconfig *cfg)
{
    yaml_node_t *root = ynode(p, 1);
    yaml_node_t *ctx;
    const char *cluster, *user, *ns;
    char field[256], f[300];
    if (!root || root->type != YAML_MAPPING_NODE)
        return kc_fail(p, KM_ECONFIG, "(document)", "empty or not a mapping");
    if (!context) {
        km_status st = kc_str(p, root, "(document)", "current-context", &context);
        if (st != KM_OK)
            return st;
        if (!context)
            return kc_fail(p, KM_ECONFIG, "current-context",
                           "not set (choose a context with --context)");
    }
    km_status st = kc_find(p, "contexts", "context", context, &ctx);
    if (st != KM_OK)
        return st;
    snprintf(field, sizeof(field), "contexts[%s].context", context);
    if ((st = kc_str(p, ctx, field, "cluster", &cluster)) != KM_OK ||
        (st = kc_str(p, ctx, field, "user", &user)) != KM_OK ||
        (st = kc_str(p, ctx, field, "namespace", &ns)) != KM_OK)
        return st;
    snprintf(f, sizeof(f), "%s.cluster", field);
    if (!cluster)
        return kc_fail(p, KM_ECONFIG, f, "missing");
    if ((st = kc_cluster(p, cluster, cfg)) != KM_OK)
        return st;
    if (user && (st = kc_user(p, user, cfg)) != KM_OK)
        return st;
    if (ns && !(cfg->ns = strdup(ns)))
        return KM_ENOMEM;
    return KM_OK;
}

static km_kubeconfig *cfg_alloc(const char *source)
{
    km_kubeconfig *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    pthread_mutex_init(&cfg->lock, NULL);
    cfg->recheck = 1.0;
    cfg->source = strdup(source);
    if (!cfg->source) {
        km_kubeconfig_free(cfg);
        return NULL;
    }
    return cfg;
}

/* Loads the YAML document of path into p->doc.  On failure nothing is left to free. */
static km_status kc_load_doc(kc_parse *p)
{
    size_t len;
    char *text = slurp(p->path, &len);
    if (!text)
        return km_err_set(p->err, KM_ECONFIG, "kubeconfig %s: cannot read: %s", p->path,
                          errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
    yaml_parser_t parser;
    /* Depth and size first, events only: libyaml's loader is quadratic on deep nesting. */
    km_err ye;
    km_status st = km_yaml_check(text, len, &ye);
    if (st != KM_OK) {
        st = km_err_set(p->err, KM_ECONFIG, "kubeconfig %s: YAML error: %s", p->path, ye.message);
        free_secret(text);
        return st;
    }
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &p->doc)) {
        st = km_err_set(p->err, KM_ECONFIG, "kubeconfig %s: line %lu: YAML error: %s", p->path,
                        (unsigned long)parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "malformed");
    }
    yaml_parser_delete(&parser);
    free_secret(text);
    return st;
}

km_status km_kubeconfig_from_file(const char *path, const char *context, km_kubeconfig **out,
                                  km_err *err)
{
    kc_parse p = {.path = path, .err = err};
    km_kubeconfig *cfg = NULL;
    int have_doc = 0;
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(p.dir, sizeof(p.dir), "%.*s", (int)(slash - path), path);
    else
        snprintf(p.dir, sizeof(p.dir), ".");
    if (slash == path)
        snprintf(p.dir, sizeof(p.dir), "/");
    km_status st = kc_load_doc(&p);
    if (st != KM_OK)
        goto out;
    have_doc = 1;
    cfg = cfg_alloc(path);
    if (!cfg) {
        st = km_err_set(err, KM_ENOMEM, "kubeconfig %s: out of memory", path);
        goto out;
    }
    st = kc_read(&p, context, cfg);
    if (st == KM_ENOMEM && err && !err->message[0])
        km_err_set(err, KM_ENOMEM, "kubeconfig %s: out of memory", path);
out:
    if (have_doc)
        yaml_document_delete(&p.doc);
    if (st != KM_OK) {
        km_kubeconfig_free(cfg);
        return st;
    }
    *out = cfg;
    return KM_OK;
}

/* ---- in-cluster ---------------------------------------------------------------------------- */

static km_status incluster_server(km_kubeconfig *cfg, km_err *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port)
        return km_err_set(err, KM_ECONFIG,
                          "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must "
                          "be set (not running in a pod? use --kubeconfig)");
    char *end;
    errno = 0;
    long pn = strtol(port, &end, 10);
    if (errno || *end || pn < 1 || pn > 65535)
        return km_err_set(err, KM_ECONFIG, "in-cluster: KUBERNETES_SERVICE_PORT: not a port: %s",
                          port);
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    km_buf b;
    km_buf_init(&b, 0);
    if (km_buf_printf(&b, "https://%s%s%s:%ld", v6 ? "[" : "", host, v6 ? "]" : "", pn) != KM_OK ||
        !(cfg->server = km_buf_take(&b))) {
        km_buf_cleanup(&b);
        return km_err_set(err, KM_ENOMEM, "in-cluster: out of memory");
    }
    return KM_OK;
}

static km_status incluster_files(km_kubeconfig *cfg, const char *dir, km_err *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/token", dir);
    if (!(cfg->token_file = strdup(path)))
        return km_err_set(err, KM_ENOMEM, "in-cluster: out of memory");
    km_status st = token_load(cfg, 1, NULL);
    if (st == KM_EINVAL)
        return km_err_set(err, KM_ECONFIG, "in-cluster: token %s: %s", path, TOKEN_CTRL);
    if (st != KM_OK)
        return km_err_set(err, KM_ECONFIG, "in-cluster: token %s: cannot read: %s", path,
                          strerror(errno));
    snprintf(path, sizeof(path), "%s/ca.crt", dir);
    cfg->ca_pem = slurp(path, NULL);
    if (!cfg->ca_pem)
        return km_err_set(err, KM_ECONFIG, "in-cluster: ca.crt %s: cannot read: %s", path,
                          strerror(errno));
    if (!strstr(cfg->ca_pem, "-----BEGIN CERTIFICATE-----"))
        return km_err_set(err, KM_ECONFIG,
                          "in-cluster: ca.crt %s: does not contain a PEM "
                          "CERTIFICATE",
                          path);
    snprintf(path, sizeof(path), "%s/namespace", dir);
    cfg->ns = slurp(path, NULL);
    if (cfg->ns) {
        rtrim(cfg->ns);
        if (!*cfg->ns) {
            free(cfg->ns);
            cfg->ns = NULL;
        }
    }
    return KM_OK;
}

km_status km_kubeconfig_incluster(const char *dir, km_kubeconfig **out, km_err *err)
{
    if (!dir)
        dir = KM_INCLUSTER_DIR;
    km_kubeconfig *cfg = cfg_alloc("in-cluster");
    km_status st = KM_OK;
    if (!cfg) {
        st = km_err_set(err, KM_ENOMEM, "in-cluster: out of memory");
        goto out;
    }
    if ((st = incluster_server(cfg, err)) != KM_OK)
        goto out;
    st = incluster_files(cfg, dir, err);
out:
    if (st != KM_OK) {
        km_kubeconfig_free(cfg);
        return st;
    }
    *out = cfg;
    return KM_OK;
}

/* ---- resolution ---------------------------------------------------------------------------- */

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* First existing file of a colon-separated list into buf; 0 when none. */
static int first_existing(const char *list, char *buf, size_t n)
{
    while (list && *list) {
        const char *colon = strchr(list, ':');
        size_t len = colon ? (size_t)(colon - list) : strlen(list);
        if (len && len < n) {
            memcpy(buf, list, len);
            buf[len] = '\0';
            if (file_exists(buf))
                return 1;
        }
        list = colon ? colon + 1 : NULL;
    }
    return 0;
}

km_status km_kubeconfig_load(const km_kubeconfig_opts *opts, km_kubeconfig **out, km_err *err)
{
    char path[PATH_MAX];
    const char *context = opts ? opts->context : NULL;
    if (opts && opts->kubeconfig)
        return km_kubeconfig_from_file(opts->kubeconfig, context, out, err);
    if (first_existing(getenv("KUBECONFIG"), path, sizeof(path)))
        return km_kubeconfig_from_file(path, context, out, err);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    if (host && *host)
        return km_kubeconfig_incluster(opts ? opts->incluster_dir : NULL, out, err);
    const char *home = getenv("HOME");
    if (home && *home) {
        snprintf(path, sizeof(path), "%s/.kube/config", home);
        if (file_exists(path))
            return km_kubeconfig_from_file(path, context, out, err);
    }
    return km_err_set(err, KM_ECONFIG,
                      "no configuration found: pass --kubeconfig, set $KUBECONFIG, run in a pod "
                      "or create ~/.kube/config");
}

void km_kubeconfig_free(km_kubeconfig *cfg)
{
    if (!cfg)
        return;
    free(cfg->source);
    free(cfg->server);
    free(cfg->ns);
    free(cfg->ca_pem);
    free(cfg->cert_pem);
    free_secret(cfg->key_pem);
    free(cfg->tls_server_name);
    free_secret(cfg->token);
    free(cfg->token_file);
    pthread_mutex_destroy(&cfg->lock);
    free(cfg);
}

/* ---- accessors ----------------------------------------------------------------------------- */

const char *km_kubeconfig_server(const km_kubeconfig *cfg)
{
    return cfg->server;
}

const char *km_kubeconfig_namespace(const km_kubeconfig *cfg)
{
    return cfg->ns;
}

const char *km_kubeconfig_source(const km_kubeconfig *cfg)
{
    return cfg->source;
}

const char *km_kubeconfig_ca_pem(const km_kubeconfig *cfg)
{
    return cfg->ca_pem;
}

int km_kubeconfig_insecure(const km_kubeconfig *cfg)
{
    return cfg->insecure;
}

const char *km_kubeconfig_client_cert_pem(const km_kubeconfig *cfg)
{
    return cfg->cert_pem;
}

const char *km_kubeconfig_client_key_pem(const km_kubeconfig *cfg)
{
    return cfg->key_pem;
}

const char *km_kubeconfig_tls_server_name(const km_kubeconfig *cfg)
{
    return cfg->tls_server_name;
}

int km_kubeconfig_token_from_file(const km_kubeconfig *cfg)
{
    return cfg->token_file != NULL;
}

void km_kubeconfig_set_token_recheck(km_kubeconfig *cfg, double seconds)
{
    pthread_mutex_lock(&cfg->lock);
    cfg->recheck = seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&cfg->lock);
}

/* ---- the token file -------------------------------------------------------------------------- */

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Re-reads the token file when it changed (or always when force); lock held or cfg private.
 * Returns KM_EIO (errno set) when the file cannot be read or is empty, KM_EINVAL (errno EINVAL)
 * when the token holds control characters (a header injection: header.h); the old token stays. */
static km_status token_load(km_kubeconfig *cfg, int force, int *changed)
{
    struct stat st;
    cfg->last_check = km_clock_mono();
    if (stat(cfg->token_file, &st) != 0)
        return KM_EIO;
    if (!force && cfg->have_stat && same_file(&st, &cfg->st))
        return KM_OK;
    char *tok = slurp(cfg->token_file, NULL);
    if (!tok)
        return KM_EIO;
    rtrim(tok);
    if (!*tok) {
        free(tok);
        errno = ENODATA;
        return KM_EIO;
    }
    if (!km_header_value_ok(tok)) {
        free_secret(tok);
        errno = EINVAL;
        return KM_EINVAL;
    }
    cfg->st = st;
    cfg->have_stat = 1;
    if (cfg->token && strcmp(cfg->token, tok) == 0) {
        free_secret(tok);
        return KM_OK;
    }
    free_secret(cfg->token);
    cfg->token = tok;
    if (changed)
        *changed = 1;
    return KM_OK;
}

static km_status token_get(km_kubeconfig *cfg, int force, char **out, int *changed)
{
    int ch = 0;
    pthread_mutex_lock(&cfg->lock);
    if (cfg->token_file && (force || km_clock_mono() - cfg->last_check >= cfg->recheck)) {
        if (token_load(cfg, force, &ch) != KM_OK)
            km_log_warn("cannot re-read the token file; keeping the previous token", "file",
                        cfg->token_file, "error", strerror(errno));
    }
    char *copy = cfg->token ? strdup(cfg->token) : NULL;
    int oom = cfg->token && !copy;
    pthread_mutex_unlock(&cfg->lock);
    if (oom)
        return KM_ENOMEM;
    *out = copy;
    if (changed)
        *changed = ch;
    return KM_OK;
}

km_status km_kubeconfig_token(km_kubeconfig *cfg, char **out, int *changed)
{
    return token_get(cfg, 0, out, changed);
}

km_status km_kubeconfig_token_reload(km_kubeconfig *cfg, char **out, int *changed)
{
    return token_get(cfg, 1, out, changed);
}
