/* kubeconfig.h — where the API server is and how to authenticate: a kubeconfig file (libyaml)
 * or the in-cluster service-account files.
 *
 * A km_kubeconfig is immutable after loading except for the bearer token of a token file, which
 * is re-read when the file changes (bound service-account tokens rotate).  It is shared by every
 * km_kube client created from it and must outlive them.  Thread-safe. */
#ifndef KM_KUBECONFIG_H
#define KM_KUBECONFIG_H

#include <stddef.h>

#include "operator/base/err.h"

typedef struct km_kubeconfig km_kubeconfig;

#define KM_INCLUSTER_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

typedef struct km_kubeconfig_opts {
    const char *kubeconfig;    /* --kubeconfig; NULL = resolve (see km_kubeconfig_load) */
    const char *context;       /* --context; NULL = current-context */
    const char *incluster_dir; /* NULL = KM_INCLUSTER_DIR (tests override it) */
} km_kubeconfig_opts;

/* Loads the configuration the way controller-runtime does: opts->kubeconfig if set, else the
 * first existing file of $KUBECONFIG (colon-separated), else in-cluster when
 * KUBERNETES_SERVICE_HOST is set, else ~/.kube/config.  On success *out is a new config the
 * caller frees with km_kubeconfig_free.  On failure *out is untouched and err names the file and
 * the field (e.g. "kubeconfig /x: users[admin].user: exec is not supported ..."). */
km_status km_kubeconfig_load(const km_kubeconfig_opts *opts, km_kubeconfig **out, km_err *err);

/* Parses one kubeconfig file (context NULL = current-context).  Failure as km_kubeconfig_load. */
km_status km_kubeconfig_from_file(const char *path, const char *context, km_kubeconfig **out,
                                  km_err *err);

/* In-cluster config from KUBERNETES_SERVICE_HOST/PORT and dir/{token,ca.crt,namespace}
 * (dir NULL = KM_INCLUSTER_DIR).  Failure as km_kubeconfig_load. */
km_status km_kubeconfig_incluster(const char *dir, km_kubeconfig **out, km_err *err);

/* Frees the config.  Accepts NULL. */
void km_kubeconfig_free(km_kubeconfig *cfg);

/* Accessors; returned strings are borrowed from cfg (valid while cfg lives), NULL when unset. */
const char *km_kubeconfig_server(const km_kubeconfig *cfg);    /* "https://host:port" */
const char *km_kubeconfig_namespace(const km_kubeconfig *cfg); /* context / in-cluster ns */
const char *km_kubeconfig_source(const km_kubeconfig *cfg);    /* file path or "in-cluster" */
const char *km_kubeconfig_ca_pem(const km_kubeconfig *cfg);    /* CA bundle PEM, or NULL */
int km_kubeconfig_insecure(const km_kubeconfig *cfg);          /* insecure-skip-tls-verify */
const char *km_kubeconfig_client_cert_pem(const km_kubeconfig *cfg);
const char *km_kubeconfig_client_key_pem(const km_kubeconfig *cfg);

/* Copies the current bearer token into a malloc'ed string *out (caller frees; NULL when the
 * config has no token), re-reading the token file if its mtime/size changed.  On a read failure
 * the previous token is kept and returned with KM_OK; KM_ENOMEM leaves *out untouched.
 * *changed (may be NULL) is set to 1 when the token differs from the previous call's. */
km_status km_kubeconfig_token(km_kubeconfig *cfg, char **out, int *changed);

/* ---- additions (appended) -------------------------------------------------------------- */

/* tls-server-name of the cluster (SNI and the name the server certificate is verified
 * against), borrowed from cfg, or NULL when unset. */
const char *km_kubeconfig_tls_server_name(const km_kubeconfig *cfg);

/* Like km_kubeconfig_token but re-reads the token file now, whatever its stat says (used after
 * a 401).  Same failure behaviour. */
km_status km_kubeconfig_token_reload(km_kubeconfig *cfg, char **out, int *changed);

/* How often km_kubeconfig_token may stat the token file (default 1 s; 0 = every call). */
void km_kubeconfig_set_token_recheck(km_kubeconfig *cfg, double seconds);

/* Non-zero when the token comes from a file that is re-read (tokenFile / in-cluster). */
int km_kubeconfig_token_from_file(const km_kubeconfig *cfg);

#endif
