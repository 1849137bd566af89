/* fuzz_kubeconfig.c — a kubeconfig file loaded (operator/kube/kubeconfig.h).
 *
 * Input: the file NUL context name (absent = current-context).  The file is written into a
 * private temporary folder once per input (relative certificate/token paths then name files that
 * do not exist).  On success the server must be set and every accessor answer; the token is read
 * when the user has one.  On failure the output must be untouched and the message terminated. */
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "operator/base/err.h"
#include "operator/kube/kubeconfig.h"
#include "tests/fuzz/fuzz.h"

static char dir[3000], path[4096];

static void cleanup(void)
{
    unlink(path);
    rmdir(dir);
}

/* The file the inputs are written to, in a folder made once (removed at exit) in
 * $KM_FUZZ_TMPDIR, else /dev/shm (no disk I/O per input) when it exists, else $TMPDIR or /tmp. */
static const char *config_path(void)
{
    if (!path[0]) {
        struct stat st;
        const char *tmp = getenv("KM_FUZZ_TMPDIR");
        if (!tmp || !*tmp)
            tmp = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : getenv("TMPDIR");
        snprintf(dir, sizeof(dir), "%s/km-fuzz-kubeconfig-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        FUZZ_CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/config", dir);
        atexit(cleanup);
    }
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parts fp;
    if (fuzz_split(data, size, 2, &fp) != 0)
        return 0;
    const char *file = config_path();
    FILE *f = fopen(file, "wb");
    FUZZ_CHECK(f != NULL);
    FUZZ_CHECK(fwrite(fp.p[0], 1, fp.len[0], f) == fp.len[0]);
    FUZZ_CHECK(fclose(f) == 0);
    const char *context = fp.n > 1 ? fp.p[1] : NULL;

    km_kubeconfig *cfg = (km_kubeconfig *)&fp; /* a sentinel: must stay on failure */
    km_err err = {0};
    km_status st = km_kubeconfig_from_file(file, context, &cfg, &err);
    if (st != KM_OK) {
        FUZZ_CHECK(cfg == (km_kubeconfig *)&fp);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        fuzz_parts_free(&fp);
        return 0;
    }
    FUZZ_CHECK(cfg != NULL && km_kubeconfig_server(cfg) != NULL);
    FUZZ_CHECK(strcmp(km_kubeconfig_source(cfg), file) == 0);
    (void)km_kubeconfig_namespace(cfg);
    const char *ca = km_kubeconfig_ca_pem(cfg);
    if (ca)
        FUZZ_CHECK(strstr(ca, "-----BEGIN ") != NULL);
    (void)km_kubeconfig_insecure(cfg);
    (void)km_kubeconfig_client_cert_pem(cfg);
    (void)km_kubeconfig_client_key_pem(cfg);
    (void)km_kubeconfig_tls_server_name(cfg);
    (void)km_kubeconfig_token_from_file(cfg);
    char *token = NULL;
    int changed = 0;
    if (km_kubeconfig_token(cfg, &token, &changed) == KM_OK)
        free(token);
    km_kubeconfig_free(cfg);
    fuzz_parts_free(&fp);
    return 0;
}
