/* kmload — benchmark tool: the API server's own capacity for one kind of request.
 *
 *   kmload --kubeconfig FILE --method METHOD [--inflight N] [--body JSON]
 *          [--content-type TYPE] < paths
 *
 * Reads one absolute API path per line from stdin and sends METHOD to each of them, N requests
 * in flight at a time (N threads, each with its own client made by km_kube_clone: its own
 * connection; no client-side rate limit, no retries).  Prints one JSON object on stdout:
 *   {"requests":R,"ok":K,"errors":E,"codes":{"<code>":n},"seconds":S,"per_second":K/S,
 *    "p50_ms":..,"p99_ms":..}
 * Exit 0 when every path was sent (whatever the answers), 2 on invalid invocation, 1 when the
 * kubeconfig cannot be loaded.  Never prints response bodies (they may hold Secret data). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/kube/kube.h"

#define MAX_THREADS 256
#define MAX_CODES 16

typedef struct job {
    char **paths;
    size_t n;
    atomic_size_t next;
    const char *method, *body, *content_type;
    double *lat_ms; /* per path */
    long *code;     /* per path, 0 = transport error */
} job;

typedef struct worker {
    job *j;
    km_kube *kube;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    job *j = w->j;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n)
            break;
        km_kube_req req = {.method = j->method,
                           .path = j->paths[i],
                           .body = j->body,
                           .body_len = j->body ? strlen(j->body) : 0,
                           .content_type = j->content_type,
                           .no_retry = 1};
        km_err err = {0};
        long code = 0;
        double t0 = km_clock_mono();
        (void)km_kube_do(w->kube, &req, &code, NULL, &err);
        j->lat_ms[i] = (km_clock_mono() - t0) * 1000.0;
        j->code[i] = code;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Reads stdin's non-empty lines into *out (caller frees each and the array).  -1 on ENOMEM. */
static long read_paths(char ***out)
{
    char **v = NULL, *line = NULL;
    size_t cap = 0, n = 0, lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1024;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv)
                goto fail;
            v = nv, cap = nc;
        }
        if (!(v[n] = strdup(line)))
            goto fail;
        n++;
    }
    free(line);
    *out = v;
    return (long)n;
fail:
    free(line);
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
    return -1;
}

static void report(const job *j, double seconds)
{
    long codes[MAX_CODES] = {0}, counts[MAX_CODES] = {0};
    size_t ncodes = 0, ok = 0;
    double *lat = malloc((j->n ? j->n : 1) * sizeof *lat);
    for (size_t i = 0; i < j->n; i++) {
        if (j->code[i] >= 200 && j->code[i] < 300)
            ok++;
        size_t c = 0;
        while (c < ncodes && codes[c] != j->code[i])
            c++;
        if (c == ncodes && ncodes < MAX_CODES)
            codes[ncodes++] = j->code[i];
        if (c < ncodes)
            counts[c]++;
        if (lat)
            lat[i] = j->lat_ms[i];
    }
    double p50 = 0, p99 = 0;
    if (lat && j->n) {
        qsort(lat, j->n, sizeof *lat, cmp_double);
        p50 = lat[j->n / 2];
        p99 = lat[(size_t)((double)(j->n - 1) * 0.99)];
    }
    free(lat);
    printf("{\"requests\":%zu,\"ok\":%zu,\"errors\":%zu,\"codes\":{", j->n, ok, j->n - ok);
    for (size_t c = 0; c < ncodes; c++)
        printf("%s\"%ld\":%ld", c ? "," : "", codes[c], counts[c]);
    printf("},\"seconds\":%.3f,\"per_second\":%.1f,\"p50_ms\":%.2f,\"p99_ms\":%.2f}\n", seconds,
           seconds > 0 ? (double)ok / seconds : 0.0, p50, p99);
}

static int usage(void)
{
    fprintf(stderr, "usage: kmload --kubeconfig FILE --method METHOD [--inflight N] [--body JSON] "
                    "[--content-type TYPE] < paths\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *kc = NULL, *method = NULL, *body = NULL, *ctype = NULL;
    long inflight = 32;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(argv[i], "--kubeconfig") == 0)
            kc = v;
        else if (strcmp(argv[i], "--method") == 0)
            method = v;
        else if (strcmp(argv[i], "--body") == 0)
            body = v;
        else if (strcmp(argv[i], "--content-type") == 0)
            ctype = v;
        else if (strcmp(argv[i], "--inflight") == 0) {
            char *end;
            inflight = strtol(v, &end, 10);
            if (*end || inflight < 1 || inflight > MAX_THREADS)
                return usage();
        } else
            return usage();
        i++;
    }
    if (!kc || !method)
        return usage();

    int rc = 1;
    km_err err = {0};
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    worker w[MAX_THREADS] = {0};
    pthread_t th[MAX_THREADS];
    long started = 0;
    job j = {.method = method, .body = body, .content_type = ctype};
    long n = read_paths(&j.paths);
    if (n < 0)
        return 1;
    j.n = (size_t)n;
    j.lat_ms = calloc(j.n + 1, sizeof *j.lat_ms);
    j.code = calloc(j.n + 1, sizeof *j.code);
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.qps = 0;
    o.max_retries = 0;
    if (!j.lat_ms || !j.code || km_kube_global_init() != KM_OK ||
        km_kubeconfig_from_file(kc, NULL, &cfg, &err) != KM_OK ||
        km_kube_new(cfg, &o, &kube, &err) != KM_OK) {
        fprintf(stderr, "kmload: %s\n", err.message[0] ? err.message : "out of memory");
        goto out;
    }
    double t0 = km_clock_mono();
    for (; started < inflight; started++) {
        w[started].j = &j;
        if (km_kube_clone(kube, &w[started].kube, &err) != KM_OK ||
            pthread_create(&th[started], NULL, work, &w[started]) != 0) {
            km_kube_free(w[started].kube);
            break;
        }
    }
    for (long i = 0; i < started; i++) {
        pthread_join(th[i], NULL);
        km_kube_free(w[i].kube);
    }
    report(&j, km_clock_mono() - t0);
    rc = started > 0 ? 0 : 1;
out:
    km_kube_free(kube);
    km_kubeconfig_free(cfg);
    for (size_t i = 0; i < j.n; i++)
        free(j.paths[i]);
    free(j.paths);
    free(j.lat_ms);
    free(j.code);
    return rc;
}
