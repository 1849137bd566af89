/* main.c — the kubemend command line: `operator`, `run --once`, `version`.
 *
 * Exit codes: 0 success, 1 a failed step / runtime failure, 2 usage or invalid file. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "operator/base/clock.h"
#include "operator/serve/http.h"
#include "operator/base/json.h"
#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"
#include "operator/serve/lease.h"
#include "operator/serve/metrics.h"
#include "operator/base/log.h"
#include "operator/base/yamljson.h"
#include "reconcilers/recovery/recovery.h"
#include "reconcilers/recovery/spec.h"
#include "reconcilers/recovery/controller.h"

#ifndef KM_VERSION
#define KM_VERSION "0.1.0"
#endif

#define EXIT_FAILED 1
#define EXIT_USAGE 2

/* ---- signals: one thread takes SIGTERM/SIGINT with sigwait ------------------------------- */

static atomic_int g_stop;
static pthread_mutex_t g_sig_mu = PTHREAD_MUTEX_INITIALIZER;
static km_recovery *g_sig_recovery; /* run --once: cancelled on a signal */

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (atomic_load(&g_stop)) {
            fprintf(stderr, "kubemend: second signal, exiting now\n");
            _exit(130);
        }
        km_log_info("signal received, stopping", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        atomic_store(&g_stop, 1);
        pthread_mutex_lock(&g_sig_mu);
        if (g_sig_recovery)
            km_recovery_cancel(g_sig_recovery);
        pthread_mutex_unlock(&g_sig_mu);
    }
    return NULL;
}

/* Blocks SIGTERM/SIGINT in every thread created afterwards and starts the signal thread. */
static void start_signal_thread(void)
{
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    pthread_t t;
    if (pthread_create(&t, NULL, signal_thread, &set) == 0)
        pthread_detach(t);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "kubemend %s: ", cmd);
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\nRun 'kubemend %s --help' for usage.\n", cmd);
    return EXIT_USAGE;
}

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end = NULL;
    if (!s || !*s)
        return -1;
    long v = strtol(s, &end, 10);
    if (*end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* The unknown/missing-argument message for getopt's last error. */
static int getopt_error(const char *cmd, char *const argv[], int c)
{
    const char *bad = argv[optind - 1];
    if (c == ':')
        return usage_error(cmd, "flag %s needs a value", bad);
    return usage_error(cmd, "unknown flag %s", bad);
}

/* ---- version / help ----------------------------------------------------------------------- */

static const char usage_main[] =
    "kubemend — finishes a Kubernetes cluster's repair after its control plane got new PKI.\n"
    "\n"
    "Usage:\n"
    "  kubemend operator [flags]     run the ClusterRecovery operator (in-cluster or "
    "--kubeconfig)\n"
    "  kubemend run --once [flags]   run the recovery steps once from this machine (break-glass)\n"
    "  kubemend version              print the version\n"
    "\n"
    "Run 'kubemend <command> --help' for the flags of a command.\n";

static const char usage_run[] =
    "Usage: kubemend run --once [flags]\n"
    "\n"
    "Runs the recovery steps once, in order (tokens, extauth, csr, pods), with the "
    "ClusterRecovery\n"
    "defaults, from a machine with admin credentials (e.g. a master node's admin.conf).  Needs\n"
    "nothing installed in the cluster.  Progress goes to stderr.\n"
    "\n"
    "Flags:\n"
    "  --once                  required: run once and exit\n"
    "  --dry-run               compute and report everything, change nothing\n"
    "  -f, --file FILE         a ClusterRecovery (YAML or JSON) whose spec to use\n"
    "  --steps LIST            comma-separated subset of tokens,extauth,csr,pods (default all)\n"
    "  --csr-window SECONDS    keep approving kubelet CSRs this long after the csr step\n"
    "                          (default: only while the pods step runs)\n"
    "  -o, --output FORMAT     'json': print the final status as JSON on stdout\n"
    "  --kubeconfig FILE       kubeconfig (default $KUBECONFIG, in-cluster, ~/.kube/config)\n"
    "  --context NAME          kubeconfig context\n"
    "  --log-level LEVEL       debug|info|warn|error (default info)\n"
    "  --log-format FORMAT     text|json (default text)\n"
    "  --qps Q                 client-side request rate, 0 = unlimited (default 50)\n"
    "  --burst B               client-side burst (default 100)\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit status: 0 success, 1 a step failed, 2 usage error or invalid file.\n";

static const char usage_operator[] =
    "Usage: kubemend operator [flags]\n"
    "\n"
    "Runs the ClusterRecovery operator: watches clusterrecoveries.kubemend.io and runs one\n"
    "recovery at a time, recording progress in its status.\n"
    "\n"
    "Flags:\n"
    "  --kubeconfig FILE                 kubeconfig (default: in-cluster, $KUBECONFIG, "
    "~/.kube/config)\n"
    "  --context NAME                    kubeconfig context\n"
    "  --namespace NS                    namespace of the leader-election Lease (default: the\n"
    "                                    in-cluster/context namespace, else kubemend-system)\n"
    "  --leader-elect                    enable leader election (run several replicas)\n"
    "  --lease-name NAME                 Lease name (default kubemend-leader)\n"
    "  --metrics-bind-address ADDR       /metrics address (default :8080; 0 = off)\n"
    "  --health-probe-bind-address ADDR  /healthz /readyz address (default :8081; 0 = off)\n"
    "  --qps Q                           client-side request rate (default 50)\n"
    "  --burst B                         client-side burst (default 100)\n"
    "  --workers N                       reconcile workers (default 2)\n"
    "  --log-level LEVEL                 debug|info|warn|error (default info)\n"
    "  --log-format FORMAT               text|json (default text)\n"
    "  -h, --help                        this help\n";

static int cmd_version(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: kubemend version\n\nPrints the version.\n");
        return 0;
    }
    if (argc > 1)
        return usage_error("version", "unexpected argument %s", argv[1]);
    printf("kubemend %s\n", KM_VERSION);
    return 0;
}

static int set_logging(const char *cmd, const char *level, const char *format)
{
    km_log_level lvl = KM_LOG_INFO;
    km_log_format fmt = KM_LOG_TEXT;
    if (level && km_log_parse_level(level, &lvl) != KM_OK)
        return usage_error(cmd, "invalid --log-level %s (use debug, info, warn or error)", level);
    if (format && km_log_parse_format(format, &fmt) != KM_OK)
        return usage_error(cmd, "invalid --log-format %s (use text or json)", format);
    km_log_configure(lvl, fmt);
    return 0;
}

/* Loads the kubeconfig and makes a client.  Returns 0 or an exit code (message printed). */
static int connect_client(const char *kubeconfig, const char *context, const km_kube_opts *ko,
                          km_kubeconfig **cfg, km_kube **kube)
{
    km_err e;
    km_err_clear(&e);
    char buf[1024];
    km_kubeconfig_opts co = {kubeconfig, context, NULL};
    km_status st = km_kubeconfig_load(&co, cfg, &e);
    if (st != KM_OK) {
        fprintf(stderr, "kubemend: %s\n", km_err_str(&e, buf, sizeof(buf)));
        return EXIT_USAGE;
    }
    st = km_kube_new(*cfg, ko, kube, &e);
    if (st != KM_OK) {
        fprintf(stderr, "kubemend: %s\n", km_err_str(&e, buf, sizeof(buf)));
        km_kubeconfig_free(*cfg);
        *cfg = NULL;
        return EXIT_FAILED;
    }
    km_kube_set_cancel(*kube, &g_stop);
    return 0;
}

/* ---- run --once --------------------------------------------------------------------------- */

static void once_progress(const char *recovery, const char *step, const char *text, void *user)
{
    (void)user;
    (void)step;
    fprintf(stderr, "[%s] %s\n", recovery, text);
}

static void print_summary(const cJSON *obj)
{
    const cJSON *status = KM_JSON_AT(obj, "status");
    const char *phase = KM_JSON_STR(status, "phase");
    printf("ClusterRecovery %s: %s\n", KM_JSON_STR(obj, "metadata", "name"),
           phase ? phase : "Unknown");
    const cJSON *conds = KM_JSON_AT(status, "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds)
    {
        const char *t = KM_JSON_STR(c, "type"), *s = KM_JSON_STR(c, "status");
        const char *r = KM_JSON_STR(c, "reason"), *m = KM_JSON_STR(c, "message");
        printf("  %-22s %-8s %-24s %s\n", t ? t : "", s ? s : "", r ? r : "", m ? m : "");
    }
}

/* Client options from --qps / --burst (NULL = default) into *ko.  0, or EXIT_USAGE after the
 * error was printed. */
static int parse_client_opts(const char *cmd, const char *qps_s, const char *burst_s,
                             km_kube_opts *ko)
{
    km_kube_opts_default(ko);
    long v = 0;
    if (qps_s) {
        char *end = NULL;
        double q = strtod(qps_s, &end);
        if (!*qps_s || *end || !(q >= 0 && q <= 100000))
            return usage_error(cmd, "invalid --qps %s", qps_s);
        ko->qps = q;
    }
    if (burst_s) {
        if (parse_long(burst_s, 1, 100000, &v) != 0)
            return usage_error(cmd, "invalid --burst %s", burst_s);
        ko->burst = (int)v;
    }
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"once", no_argument, NULL, 'O'},
        {"dry-run", no_argument, NULL, 'D'},
        {"file", required_argument, NULL, 'f'},
        {"steps", required_argument, NULL, 'S'},
        {"csr-window", required_argument, NULL, 'W'},
        {"output", required_argument, NULL, 'o'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"qps", required_argument, NULL, 'Q'},
        {"burst", required_argument, NULL, 'B'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int once = 0, dry_run = 0;
    const char *qps_s = NULL, *burst_s = NULL;
    const char *file = NULL, *steps = NULL, *window = NULL, *output = NULL;
    const char *kubeconfig = NULL, *context = NULL, *log_level = NULL, *log_format = NULL;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":f:o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'O':
            once = 1;
            break;
        case 'D':
            dry_run = 1;
            break;
        case 'f':
            file = optarg;
            break;
        case 'S':
            steps = optarg;
            break;
        case 'W':
            window = optarg;
            break;
        case 'o':
            output = optarg;
            break;
        case 'k':
            kubeconfig = optarg;
            break;
        case 'c':
            context = optarg;
            break;
        case 'L':
            log_level = optarg;
            break;
        case 'F':
            log_format = optarg;
            break;
        case 'Q':
            qps_s = optarg;
            break;
        case 'B':
            burst_s = optarg;
            break;
        case 'h':
            fputs(usage_run, stdout);
            return 0;
        default:
            return getopt_error("run", argv, c);
        }
    }
    if (optind < argc)
        return usage_error("run", "unexpected argument %s", argv[optind]);
    if (!once)
        return usage_error("run", "%s--once is required (the operator is 'kubemend operator')", "");
    if (output && strcmp(output, "json") != 0 && strcmp(output, "text") != 0)
        return usage_error("run", "invalid --output %s (use json)", output);
    long csr_window = 0;
    if (window && parse_long(window, 1, 31536000, &csr_window) != 0)
        return usage_error("run", "invalid --csr-window %s (seconds, 1..31536000)", window);
    unsigned mask = 0;
    km_err e;
    km_err_clear(&e);
    char ebuf[1024];
    if (steps && km_recovery_parse_steps(steps, &mask, &e) != KM_OK)
        return usage_error("run", "%s", e.message);
    km_kube_opts ko;
    int rc = parse_client_opts("run", qps_s, burst_s, &ko);
    if (rc)
        return rc;
    rc = set_logging("run", log_level, log_format);
    if (rc)
        return rc;

    cJSON *obj = NULL;
    if (file) {
        if (km_recovery_load_file(file, &obj, &e) != KM_OK) {
            fprintf(stderr, "kubemend run: invalid recovery file: %s\n", e.message);
            return EXIT_USAGE;
        }
    } else {
        obj = cJSON_Parse("{\"apiVersion\":\"" KM_RECOVERY_API_VERSION
                          "\",\"kind\":\"" KM_RECOVERY_KIND
                          "\",\"metadata\":{\"name\":\"run-once\"},\"spec\":{}}");
        if (!obj) {
            fprintf(stderr, "kubemend run: out of memory\n");
            return EXIT_FAILED;
        }
    }

    curl_global_init(CURL_GLOBAL_DEFAULT);
    start_signal_thread();
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    km_recovery *r = NULL;
    rc = connect_client(kubeconfig, context, &ko, &cfg, &kube);
    if (rc)
        goto out;

    km_recovery_opts ro;
    memset(&ro, 0, sizeof(ro));
    ro.kube = kube;
    ro.events = NULL; /* no ClusterRecovery in the cluster: Events go to the log */
    ro.stop = &g_stop;
    ro.persist = 0;
    ro.once = 1;
    ro.steps = mask;
    ro.dry_run = dry_run;
    ro.csr_window = csr_window;
    ro.current_ca_pem = km_kubeconfig_ca_pem(cfg);
    ro.progress = once_progress;
    if (km_recovery_new(obj, &ro, &r, &e) != KM_OK) {
        fprintf(stderr, "kubemend run: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        rc = EXIT_USAGE;
        goto out;
    }
    pthread_mutex_lock(&g_sig_mu);
    g_sig_recovery = r;
    pthread_mutex_unlock(&g_sig_mu);

    km_log_info("run --once", "server", km_kubeconfig_server(cfg), "recovery",
                KM_JSON_STR(obj, "metadata", "name"), "dryRun", dry_run ? "true" : "false");
    km_status st = km_recovery_run(r, &e);
    if (st == KM_OK && csr_window > 0) {
        double next = 0;
        fprintf(stderr, "[%s] csr: approval window open (--csr-window %ld)\n",
                KM_JSON_STR(obj, "metadata", "name"), csr_window);
        while (!atomic_load(&g_stop) && km_recovery_window_tick(r, &next, NULL) == KM_OK &&
               next >= 0) {
            km_clock_sleep(next, &g_stop);
        }
    }
    km_recovery_window_close(r, NULL);
    const cJSON *res = km_recovery_object(r);
    if (output && strcmp(output, "json") == 0) {
        char *txt = cJSON_Print(KM_JSON_AT(res, "status"));
        if (txt)
            printf("%s\n", txt);
        free(txt);
    } else {
        print_summary(res);
    }
    if (st != KM_OK) {
        fprintf(stderr, "kubemend run: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        rc = EXIT_FAILED;
    } else {
        const char *phase = KM_JSON_STR(res, "status", "phase");
        rc = phase && strcmp(phase, KM_PHASE_SUCCEEDED) == 0 ? 0 : EXIT_FAILED;
    }
out:
    pthread_mutex_lock(&g_sig_mu);
    g_sig_recovery = NULL;
    pthread_mutex_unlock(&g_sig_mu);
    km_recovery_free(r);
    cJSON_Delete(obj);
    km_kube_free(kube);
    km_kubeconfig_free(cfg);
    curl_global_cleanup();
    return rc;
}

/* ---- operator ----------------------------------------------------------------------------- */

typedef struct op_state {
    atomic_int leading;   /* 1 after on_started_leading */
    atomic_int lost;      /* 1 after on_stopped_leading: exit */
    km_recovery_ctl *ctl; /* set before the HTTP server starts */
    km_lease *lease;      /* NULL without --leader-elect */
    int leader_elect;
    km_metrics *metrics;
    km_kube *kube;             /* for the credentials-rejected liveness check */
    _Atomic long long beat_ms; /* monotonic ms of the main loop's last turn */
} op_state;

#define OP_STALL_MS 30000 /* /healthz fails when the main loop has not turned for this long */

static long long mono_ms(void)
{
    return (long long)(km_clock_mono() * 1000);
}

static void op_started_leading(void *user)
{
    op_state *s = user;
    atomic_store(&s->leading, 1);
}

static void op_stopped_leading(void *user)
{
    op_state *s = user;
    /* Stop acting at once: cancel every request of this process, then main exits. */
    atomic_store(&s->lost, 1);
    atomic_store(&g_stop, 1);
}

/* Liveness: the main loop turns, and the API server still accepts our credentials — after a PKI
 * rebuild a restart is what gives the pod a fresh projected token, so failing liveness is the fix.
 */
static int op_live(char *reason, size_t n, void *user)
{
    op_state *s = user;
    if (s->kube && km_kube_credentials_rejected(s->kube)) {
        snprintf(reason, n,
                 "credentials rejected by the API server; a restart mounts a fresh token");
        return 0;
    }
    long long idle = mono_ms() - atomic_load(&s->beat_ms);
    if (idle > OP_STALL_MS) {
        snprintf(reason, n, "main loop stalled for %lld s", idle / 1000);
        return 0;
    }
    return 1;
}

static int op_ready(char *reason, size_t n, void *user)
{
    op_state *s = user;
    if (!s->ctl || !km_recovery_ctl_synced(s->ctl)) {
        snprintf(reason, n, "ClusterRecovery cache not synced");
        return 0;
    }
    if (s->leader_elect && !km_lease_state_known(s->lease)) {
        snprintf(reason, n, "leader state unknown");
        return 0;
    }
    return 1;
}

/* Starts an HTTP server on addr ("0" = off). */
static int start_http(const char *flag, const char *addr, km_metrics *metrics, op_state *s,
                      km_http **out)
{
    if (!addr || strcmp(addr, "0") == 0)
        return 0;
    char host[128];
    int port = 0;
    km_err e;
    km_err_clear(&e);
    if (km_http_parse_address(addr, host, sizeof(host), &port, &e) != KM_OK)
        return usage_error("operator", "invalid address: %s", flag);
    km_http_opts ho;
    memset(&ho, 0, sizeof(ho));
    ho.bind_address = host;
    ho.port = port;
    ho.metrics = metrics;
    ho.live = op_live;
    ho.ready = op_ready;
    ho.user = s;
    if (km_http_start(&ho, out, &e) != KM_OK) {
        char buf[768];
        fprintf(stderr, "kubemend operator: %s %s: %s\n", flag, addr,
                km_err_str(&e, buf, sizeof(buf)));
        return EXIT_FAILED;
    }
    km_log_info("http server listening", "flag", flag, "port", KM_LOG_INT(km_http_port(*out)));
    return 0;
}

static int cmd_operator(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {"namespace", required_argument, NULL, 'n'},
        {"leader-elect", no_argument, NULL, 'E'},
        {"lease-name", required_argument, NULL, 'N'},
        {"metrics-bind-address", required_argument, NULL, 'M'},
        {"health-probe-bind-address", required_argument, NULL, 'H'},
        {"qps", required_argument, NULL, 'Q'},
        {"burst", required_argument, NULL, 'B'},
        {"workers", required_argument, NULL, 'w'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *kubeconfig = NULL, *context = NULL, *ns = NULL, *lease_name = "kubemend-leader";
    const char *metrics_addr = ":8080", *health_addr = ":8081";
    const char *qps_s = NULL, *burst_s = NULL, *workers_s = NULL;
    const char *log_level = NULL, *log_format = NULL;
    int leader_elect = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            kubeconfig = optarg;
            break;
        case 'c':
            context = optarg;
            break;
        case 'n':
            ns = optarg;
            break;
        case 'E':
            leader_elect = 1;
            break;
        case 'N':
            lease_name = optarg;
            break;
        case 'M':
            metrics_addr = optarg;
            break;
        case 'H':
            health_addr = optarg;
            break;
        case 'Q':
            qps_s = optarg;
            break;
        case 'B':
            burst_s = optarg;
            break;
        case 'w':
            workers_s = optarg;
            break;
        case 'L':
            log_level = optarg;
            break;
        case 'F':
            log_format = optarg;
            break;
        case 'h':
            fputs(usage_operator, stdout);
            return 0;
        default:
            return getopt_error("operator", argv, c);
        }
    }
    if (optind < argc)
        return usage_error("operator", "unexpected argument %s", argv[optind]);
    km_kube_opts ko;
    long v = 0;
    int prc = parse_client_opts("operator", qps_s, burst_s, &ko);
    if (prc)
        return prc;
    int workers = 2;
    if (workers_s) {
        if (parse_long(workers_s, 1, 16, &v) != 0)
            return usage_error("operator", "invalid --workers %s (1..16)", workers_s);
        workers = (int)v;
    }
    if (!*lease_name)
        return usage_error("operator", "%s--lease-name must not be empty", "");
    char host[128];
    int port;
    if (km_http_parse_address(metrics_addr, host, sizeof(host), &port, NULL) != KM_OK &&
        strcmp(metrics_addr, "0") != 0)
        return usage_error("operator", "invalid --metrics-bind-address %s", metrics_addr);
    if (km_http_parse_address(health_addr, host, sizeof(host), &port, NULL) != KM_OK &&
        strcmp(health_addr, "0") != 0)
        return usage_error("operator", "invalid --health-probe-bind-address %s", health_addr);
    int rc = set_logging("operator", log_level, log_format);
    if (rc)
        return rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    start_signal_thread();
    op_state s;
    memset(&s, 0, sizeof(s));
    s.leader_elect = leader_elect;
    atomic_store(&s.beat_ms, mono_ms());
    km_kubeconfig *cfg = NULL;
    km_kube *kube = NULL;
    km_metrics *metrics = NULL;
    km_events *events = NULL;
    km_http *hm = NULL, *hh = NULL;
    km_err e;
    km_err_clear(&e);
    char ebuf[1024];
    rc = connect_client(kubeconfig, context, &ko, &cfg, &kube);
    if (rc)
        goto out;
    if (km_metrics_new_default(&metrics, &e) != KM_OK) {
        fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        rc = EXIT_FAILED;
        goto out;
    }
    s.metrics = metrics;
    s.kube = kube;
    km_kube_set_observer(kube, km_metrics_observe_api, metrics);
    if (km_events_new(kube, "kubemend", &events, &e) != KM_OK) {
        fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        rc = EXIT_FAILED;
        goto out;
    }
    km_recovery_ctl_opts co;
    memset(&co, 0, sizeof(co));
    co.kube = kube;
    co.events = events;
    co.metrics = metrics;
    co.current_ca_pem = km_kubeconfig_ca_pem(cfg);
    co.workers = workers;
    if (km_recovery_ctl_start(&co, &s.ctl, &e) != KM_OK) {
        fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
        rc = EXIT_FAILED;
        goto out;
    }
    if ((rc = start_http("--metrics-bind-address", metrics_addr, metrics, &s, &hm)) != 0)
        goto out;
    if (health_addr && metrics_addr && strcmp(health_addr, metrics_addr) != 0 &&
        (rc = start_http("--health-probe-bind-address", health_addr, metrics, &s, &hh)) != 0)
        goto out;

    /* Lease namespace: --namespace, $POD_NAMESPACE, the in-cluster namespace, kubemend-system. */
    if (!ns || !*ns)
        ns = getenv("POD_NAMESPACE");
    if ((!ns || !*ns) && km_kubeconfig_source(cfg) &&
        strcmp(km_kubeconfig_source(cfg), "in-cluster") == 0)
        ns = km_kubeconfig_namespace(cfg);
    if (!ns || !*ns)
        ns = "kubemend-system";
    char identity[128];
    const char *pod = getenv("POD_NAME");
    if (pod && *pod) {
        char rnd[64];
        km_lease_identity(rnd, sizeof(rnd));
        const char *us = strrchr(rnd, '_');
        snprintf(identity, sizeof(identity), "%s%s", pod, us ? us : "");
    } else {
        km_lease_identity(identity, sizeof(identity));
    }
    if (leader_elect) {
        km_lease_config lc;
        memset(&lc, 0, sizeof(lc));
        lc.ns = ns;
        lc.name = lease_name;
        lc.identity = identity;
        lc.release_on_stop = 1;
        lc.on_started_leading = op_started_leading;
        lc.on_stopped_leading = op_stopped_leading;
        lc.user = &s;
        if (km_lease_start(kube, &lc, &s.lease, &e) != KM_OK) {
            fprintf(stderr, "kubemend operator: %s\n", km_err_str(&e, ebuf, sizeof(ebuf)));
            rc = EXIT_FAILED;
            goto out;
        }
        km_log_info("leader election", "namespace", ns, "lease", lease_name, "identity", identity);
    } else {
        atomic_store(&s.leading, 1);
    }
    km_log_info("operator started", "version", KM_VERSION, "server", km_kubeconfig_server(cfg),
                "workers", KM_LOG_INT(workers));

    int workers_started = 0;
    km_metric *leader_g = km_metrics_get(metrics, KM_METRIC_LEADER);
    while (!atomic_load(&g_stop)) {
        atomic_store(&s.beat_ms, mono_ms());
        if (!workers_started && atomic_load(&s.leading) && !atomic_load(&s.lost)) {
            if (km_recovery_ctl_start_workers(s.ctl, &e) != KM_OK) {
                km_log_error("cannot start workers", "error", e.message);
                rc = EXIT_FAILED;
                break;
            }
            workers_started = 1;
            km_log_info("acting as leader: workers started");
        }
        if (leader_g)
            km_metric_set(leader_g, NULL, workers_started && !atomic_load(&s.lost) ? 1 : 0);
        km_recovery_ctl_sample_metrics(s.ctl);
        km_clock_sleep(0.2, &g_stop);
    }
    if (atomic_load(&s.lost)) {
        km_log_error("leader election lost: exiting");
        rc = EXIT_FAILED;
    }
out:
    km_log_info("operator stopping");
    atomic_store(&g_stop, 1);
    km_recovery_ctl_free(s.ctl); /* cancels and joins runner and workers first */
    s.ctl = NULL;
    km_lease_stop(s.lease); /* releases the lease only after every writer stopped */
    km_http_stop(hm);
    km_http_stop(hh);
    km_events_free(events);
    km_kube_free(kube);
    km_metrics_free(metrics);
    km_kubeconfig_free(cfg);
    curl_global_cleanup();
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0)
        return cmd_version(argc - 1, argv + 1);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(cmd, "operator") == 0)
        return cmd_operator(argc - 1, argv + 1);
    fprintf(stderr, "kubemend: unknown command \"%s\"\n\n%s", cmd, usage_main);
    return EXIT_USAGE;
}
