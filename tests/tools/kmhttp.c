/* kmhttp — test tool: runs operator/http with kubemend's default metrics registry.
 *
 *   kmhttp [--bind ADDR] [--port N] [--ready-file PATH] [--unhealthy-file PATH] [--no-metrics]
 *          [--series N]
 *
 * Prints "port=<N>" on stdout (flushed) once listening, then serves until stdin reaches EOF or
 * SIGTERM/SIGINT arrives, then stops the server and exits 0.  /readyz is ready while
 * --ready-file exists (reason "waiting for <path>" otherwise); /healthz fails while
 * --unhealthy-file exists.  Every /readyz or /healthz check increments
 * kubemend_reconcile_total{controller="kmhttp",result="check"}, so /metrics changes visibly;
 * kubemend_leader is set to 1 and one API request (get 200) is recorded at start; --series N
 * adds N series kubemend_step_objects_total{step="bulk",counter="c<i>"} (a large /metrics). */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "operator/serve/http.h"
#include "operator/serve/families.h"

typedef struct tool {
    const char *ready_file;
    const char *unhealthy_file;
    km_metrics *metrics;
} tool;

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static void count_check(tool *t)
{
    if (t->metrics)
        (void)KM_METRIC_INC(km_metrics_get(t->metrics, KM_METRIC_RECONCILE_TOTAL), "kmhttp",
                            "check");
}

static int ready(char *reason, size_t n, void *user)
{
    tool *t = user;
    count_check(t);
    if (t->ready_file && access(t->ready_file, F_OK) == 0)
        return 1;
    snprintf(reason, n, "waiting for %s", t->ready_file ? t->ready_file : "(no --ready-file)");
    return 0;
}

static int live(char *reason, size_t n, void *user)
{
    tool *t = user;
    count_check(t);
    if (t->unhealthy_file && access(t->unhealthy_file, F_OK) == 0) {
        snprintf(reason, n, "%s exists", t->unhealthy_file);
        return 0;
    }
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: kmhttp [--bind ADDR] [--port N] [--ready-file PATH] "
                    "[--unhealthy-file PATH] [--no-metrics] [--series N]\n");
    return 2;
}

/* 0, or usage()'s exit code. */
static int parse(int argc, char **argv, tool *t, km_http_opts *opts, int *metrics, long *series)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(a, "--no-metrics") == 0) {
            *metrics = 0;
            continue;
        }
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--bind") == 0) {
            opts->bind_address = v;
        } else if (strcmp(a, "--port") == 0) {
            long p = strtol(v, &end, 10);
            if (*end || p < 0 || p > 65535)
                return usage();
            opts->port = (int)p;
        } else if (strcmp(a, "--series") == 0) {
            *series = strtol(v, &end, 10);
            if (*end || *series < 0 || *series > KM_METRICS_DEFAULT_MAX_SERIES)
                return usage();
        } else if (strcmp(a, "--ready-file") == 0) {
            t->ready_file = v;
        } else if (strcmp(a, "--unhealthy-file") == 0) {
            t->unhealthy_file = v;
        } else {
            return usage();
        }
    }
    return 0;
}

/* The default registry with the leader gauge, one API request and `series` bulk series. */
static km_status make_metrics(tool *t, long series, km_err *err)
{
    km_status st = km_metrics_new_default(&t->metrics, err);
    if (st != KM_OK)
        return st;
    (void)km_metric_set(km_metrics_get(t->metrics, KM_METRIC_LEADER), NULL, 1);
    km_metrics_observe_api("get", 200, 0.01, t->metrics);
    for (long i = 0; i < series; i++) {
        char c[32];
        snprintf(c, sizeof(c), "c%04ld", i);
        (void)km_metric_add(km_metrics_get(t->metrics, KM_METRIC_STEP_OBJECTS),
                            KM_METRIC_VALUES("bulk", c), (double)i);
    }
    return KM_OK;
}

/* Until stdin reaches EOF or a signal arrives. */
static void wait_for_end(void)
{
    while (!stop_flag) {
        struct pollfd pfd = {.fd = 0, .events = POLLIN};
        int rc = poll(&pfd, 1, 200);
        if (rc < 0 && errno != EINTR)
            break;
        if (rc > 0) {
            char buf[256];
            ssize_t n = read(0, buf, sizeof(buf));
            if (n <= 0)
                break;
        }
    }
}

int main(int argc, char **argv)
{
    tool t = {0};
    km_http_opts opts = {.bind_address = "127.0.0.1", .port = 0};
    int metrics = 1;
    long series = 0;
    int rc = parse(argc, argv, &t, &opts, &metrics, &series);
    if (rc)
        return rc;
    km_err err;
    km_err_clear(&err);
    if (metrics && make_metrics(&t, series, &err) != KM_OK) {
        fprintf(stderr, "kmhttp: metrics: %s\n", err.message);
        return 1;
    }
    opts.metrics = t.metrics;
    opts.ready = ready;
    opts.live = live;
    opts.user = &t;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    km_http *h = NULL;
    if (km_http_start(&opts, &h, &err) != KM_OK) {
        fprintf(stderr, "kmhttp: %s\n", err.message);
        km_metrics_free(t.metrics);
        return 1;
    }
    printf("port=%d\n", km_http_port(h));
    fflush(stdout);
    wait_for_end();
    km_http_stop(h);
    km_metrics_free(t.metrics);
    fprintf(stderr, "kmhttp: stopped\n");
    return 0;
}
