/* kmtest.c — shared helpers for the client's cmocka tests. */
#include "tests/unit/support/kmtest.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "operator/base/buf.h"
#include "operator/base/log.h"

char *kmtest_mkdtemp(char *buf, size_t n)
{
    const char *t = getenv("TMPDIR");
    snprintf(buf, n, "%s/kmtest-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
    return buf;
}

char *kmtest_fixture(const char *name, size_t *len)
{
    const char *dir = getenv("KM_FIXTURES");
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : KMTEST_FIXTURES, name);
    FILE *f = fopen(path, "rb");
    km_buf b;
    km_buf_init(&b, 64u << 20);
    char chunk[65536];
    size_t n;
    if (!f) {
        fprintf(stderr, "fixture %s missing (run from the repository root or set KM_FIXTURES)\n",
                path);
        abort();
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (km_buf_append(&b, chunk, n) != KM_OK)
            abort();
    fclose(f);
    if (len)
        *len = b.len;
    char *text = km_buf_take(&b);
    if (!text)
        abort();
    return text;
}

void kmtest_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[PATH_MAX];
    while (d && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

void kmtest_write(const char *dir, const char *name, const char *text, char *out)
{
    char p[PATH_MAX];
    if (dir)
        snprintf(p, sizeof(p), "%s/%s", dir, name);
    else
        snprintf(p, sizeof(p), "%s", name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text) || fclose(f) != 0) {
        perror(p);
        abort();
    }
    if (out)
        memcpy(out, p, strlen(p) + 1);
}

static km_buf g_log;
static pthread_mutex_t g_log_lock = PTHREAD_MUTEX_INITIALIZER;

static void sink(km_log_level level, const char *line, void *user)
{
    (void)level;
    (void)user;
    pthread_mutex_lock(&g_log_lock);
    km_buf_puts(&g_log, line);
    km_buf_puts(&g_log, "\n");
    pthread_mutex_unlock(&g_log_lock);
}

void kmtest_log_start(void)
{
    km_buf_cleanup(&g_log);
    km_buf_init(&g_log, 0);
    km_log_set_sink(sink, NULL);
}

const char *kmtest_log_text(void)
{
    return km_buf_str(&g_log);
}

int kmtest_log_count(const char *s)
{
    int n = 0;
    const char *p = km_buf_str(&g_log);
    while ((p = strstr(p, s)) != NULL) {
        n++;
        p += strlen(s);
    }
    return n;
}

void kmtest_log_stop(void)
{
    km_log_set_sink(NULL, NULL);
    km_buf_cleanup(&g_log);
}

void kmtest_fake_client(const char *dir, const km_kube_opts *opts, km_kube_transport_fn fn,
                        void *user, km_kubeconfig **cfg, km_kube **k)
{
    char kc[PATH_MAX];
    km_err e;
    kmtest_write(dir, "kubeconfig",
                 "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                 "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"
                 "users: [{name: u, user: {token: t}}]\n"
                 "contexts: [{name: c, context: {cluster: c, user: u}}]\n",
                 kc);
    if (km_kubeconfig_from_file(kc, NULL, cfg, &e) != KM_OK ||
        km_kube_new(*cfg, opts, k, &e) != KM_OK) {
        fprintf(stderr, "kmtest: cannot make the fake client\n");
        abort();
    }
    km_kube_set_transport(*k, fn, user);
}
