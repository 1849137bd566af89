/* main.c — operator/cmd: the kubemend binary.  Start reading the program here.
 *
 *   kubemend operator [flags]     the ClusterRecovery operator (in-cluster or --kubeconfig)
 *   kubemend run --once [flags]   the recovery steps once from this machine (break-glass)
 *   kubemend keys recover|snapshot  the zero-downtime bridge's keys (keys.c)
 *   kubemend version
 *
 * This file only turns flags into options: one flag table serves both subcommands, and the
 * Manager (manager.h) does the rest with whatever reconcilers/ registered (the ClusterRecovery
 * controller, the run --once job).  The house, bottom up:
 *   operator/base   err, buf, json, log, clock, strmap, backoff, base64, yamljson
 *   operator/kube   the REST client, kubeconfig, rate limit, API errors, Events
 *   operator/serve  /healthz /readyz /metrics, Prometheus metrics, leader election
 *   operator/cmd    this binary and the Manager
 *   watch/          list+watch state machine, store, work queue, waits
 *   reconcilers/    the ClusterRecovery engine and controller (recovery/), the step interface
 *                   (step/) and one folder per step (tokens/, extauth/, csr/, pods/)
 *
 * Exit codes: 0 success (run --once: steps succeeded and Verified True), 1 a failed step /
 * runtime failure, 2 usage or invalid file, 3 run --once: steps ran, not verified healed. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "operator/base/clock.h"
#include "operator/base/log.h"
#include "operator/cmd/keys.h"
#include "operator/cmd/manager.h"
#include "operator/serve/http.h"

#ifndef KM_VERSION
#define KM_VERSION "0.1.0"
#endif

static const char usage_main[] =
    "kubemend — finishes a Kubernetes cluster's repair after its control plane got new PKI.\n"
    "\n"
    "Usage:\n"
    "  kubemend operator [flags]     run the ClusterRecovery operator (in-cluster or "
    "--kubeconfig)\n"
    "  kubemend run --once [flags]   run the recovery steps once from this machine (break-glass)\n"
    "  kubemend keys recover|snapshot  recover the lost service-account key / snapshot the keys\n"
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
    "  --rebuild-time TIME     when the PKI was rebuilt (RFC 3339, e.g. 2026-11-26T09:00:00Z):\n"
    "                          pods created before it are restarted (default: spec.rebuildTime,\n"
    "                          else the current cluster CA's notBefore)\n"
    "  -o, --output FORMAT     'json': print the final status as JSON on stdout\n"
    "  --kubeconfig FILE       kubeconfig (default $KUBECONFIG, in-cluster, ~/.kube/config)\n"
    "  --context NAME          kubeconfig context\n"
    "  --log-level LEVEL       debug|info|warn|error (default info)\n"
    "  --log-format FORMAT     text|json (default text)\n"
    "  --qps Q                 ceiling of the client's adaptive request rate, 0 = no client-side\n"
    "                          limit (default: adaptive, no ceiling)\n"
    "  --burst B               client-side burst (default 100)\n"
    "  -h, --help              this help\n"
    "\n"
    "Exit status: 0 every step succeeded and the cluster is verified healed (condition\n"
    "Verified True; a dry run: every step succeeded), 1 a step failed, 2 usage error or\n"
    "invalid file, 3 every step ran but the server's answers do not show the cluster healed\n"
    "(what is left is printed).\n";

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
    "  --qps Q                           ceiling of the adaptive request rate, 0 = no limit\n"
    "                                    (default: adaptive, no ceiling)\n"
    "  --burst B                         client-side burst (default 100)\n"
    "  --workers N                       reconcile workers (default 2)\n"
    "  --log-level LEVEL                 debug|info|warn|error (default info)\n"
    "  --log-format FORMAT               text|json (default text)\n"
    "  -h, --help                        this help\n";

/* ---- the one flag table ---------------------------------------------------------------------- */

enum { RUN = 1, OPERATOR = 2, BOTH = RUN | OPERATOR };

/* Every flag's value as given (NULL = not given); booleans are "1". */
typedef struct cli {
    const char *kubeconfig, *context, *log_level, *log_format, *qps, *burst;
    const char *once, *dry_run, *file, *steps, *csr_window, *output, *rebuild_time;
    const char *ns, *leader_elect, *lease_name, *metrics_addr, *health_addr, *workers;
} cli;

typedef struct flag {
    struct option opt; /* getopt_long's entry (val: the short letter or a code >= 256) */
    unsigned commands; /* RUN, OPERATOR */
    size_t field;      /* offsetof(cli, ...) */
} flag;

#define F(name, arg, val, cmds, member)                                                            \
    {                                                                                              \
        {name, arg, NULL, val}, cmds, offsetof(cli, member)                                        \
    }
static const flag flags[] = {
    F("kubeconfig", required_argument, 256, BOTH, kubeconfig),
    F("context", required_argument, 257, BOTH, context),
    F("log-level", required_argument, 258, BOTH, log_level),
    F("log-format", required_argument, 259, BOTH, log_format),
    F("qps", required_argument, 260, BOTH, qps),
    F("burst", required_argument, 261, BOTH, burst),
    F("once", no_argument, 262, RUN, once),
    F("dry-run", no_argument, 263, RUN, dry_run),
    F("file", required_argument, 'f', RUN, file),
    F("steps", required_argument, 264, RUN, steps),
    F("csr-window", required_argument, 265, RUN, csr_window),
    F("output", required_argument, 'o', RUN, output),
    F("namespace", required_argument, 266, OPERATOR, ns),
    F("leader-elect", no_argument, 267, OPERATOR, leader_elect),
    F("lease-name", required_argument, 268, OPERATOR, lease_name),
    F("metrics-bind-address", required_argument, 269, OPERATOR, metrics_addr),
    F("health-probe-bind-address", required_argument, 270, OPERATOR, health_addr),
    F("workers", required_argument, 271, OPERATOR, workers),
    F("rebuild-time", required_argument, 272, RUN, rebuild_time),
};
#undef F
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))
#define HELP 'h'

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
    fprintf(stderr, "kubemend %s: ", cmd);
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\nRun 'kubemend %s --help' for usage.\n", cmd);
    return KM_EXIT_USAGE;
}

/* Parses argv into *c for command cmd.  -1 for --help (printed), 0, or an exit code. */
static int parse_flags(const char *cmd, unsigned which, int argc, char **argv, cli *c)
{
    struct option longopts[NFLAGS + 2];
    for (size_t i = 0; i < NFLAGS; i++)
        longopts[i] = flags[i].opt;
    longopts[NFLAGS] = (struct option){"help", no_argument, NULL, HELP};
    longopts[NFLAGS + 1] = (struct option){NULL, 0, NULL, 0};
    memset(c, 0, sizeof(*c));
    optind = 1;
    opterr = 0;
    int v;
    while ((v = getopt_long(argc, argv, ":f:o:h", longopts, NULL)) != -1) {
        const flag *f = NULL;
        for (size_t i = 0; i < NFLAGS && !f; i++)
            if (flags[i].opt.val == v && (flags[i].commands & which))
                f = &flags[i];
        if (v == HELP) {
            fputs(which == RUN ? usage_run : usage_operator, stdout);
            return -1;
        }
        if (v == ':')
            return usage_error(cmd, "flag %s needs a value", argv[optind - 1]);
        if (!f) /* a flag of the other command; its detached value is argv[optind - 1] */
            return usage_error(cmd, "unknown flag %s",
                               optarg && optarg == argv[optind - 1] && optind >= 2
                                   ? argv[optind - 2]
                                   : argv[optind - 1]);
        *(const char **)(void *)((char *)c + f->field) = optarg ? optarg : "1";
    }
    if (optind < argc)
        return usage_error(cmd, "unexpected argument %s", argv[optind]);
    return 0;
}

/* ---- flags into options ---------------------------------------------------------------------- */

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

/* Logging and the client's options (flags of both commands).  0 or an exit code. */
static int common_opts(const char *cmd, const cli *c, km_manager_opts *mo)
{
    km_log_level lvl = KM_LOG_INFO;
    km_log_format fmt = KM_LOG_TEXT;
    long v = 0;
    km_kube_opts_default(&mo->client);
    mo->kubeconfig = c->kubeconfig;
    mo->context = c->context;
    mo->version = KM_VERSION;
    if (c->qps) {
        char *end = NULL;
        double q = strtod(c->qps, &end);
        if (!*c->qps || *end || !(q >= 0 && q <= 100000))
            return usage_error(cmd, "invalid --qps %s", c->qps);
        mo->client.qps = q;
        mo->client.adaptive = q > 0; /* a ceiling for the adaptive rate; 0 = no limit at all */
    }
    if (c->burst && parse_long(c->burst, 1, 100000, &v) != 0)
        return usage_error(cmd, "invalid --burst %s", c->burst);
    if (c->burst)
        mo->client.burst = (int)v;
    if (c->log_level && km_log_parse_level(c->log_level, &lvl) != KM_OK)
        return usage_error(cmd, "invalid --log-level %s (use debug, info, warn or error)",
                           c->log_level);
    if (c->log_format && km_log_parse_format(c->log_format, &fmt) != KM_OK)
        return usage_error(cmd, "invalid --log-format %s (use text or json)", c->log_format);
    km_log_configure(lvl, fmt);
    return 0;
}

static int cmd_run(int argc, char **argv)
{
    cli c;
    km_manager_opts mo;
    km_job_opts jo;
    memset(&mo, 0, sizeof(mo));
    memset(&jo, 0, sizeof(jo));
    int rc = parse_flags("run", RUN, argc, argv, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (!c.once)
        return usage_error("run", "%s--once is required (the operator is 'kubemend operator')", "");
    if (c.output && strcmp(c.output, "json") != 0 && strcmp(c.output, "text") != 0)
        return usage_error("run", "invalid --output %s (use json)", c.output);
    if (c.csr_window && parse_long(c.csr_window, 1, 31536000, &jo.csr_window) != 0)
        return usage_error("run", "invalid --csr-window %s (seconds, 1..31536000)", c.csr_window);
    time_t rebuilt;
    if (c.rebuild_time && km_clock_parse(c.rebuild_time, &rebuilt) != KM_OK)
        return usage_error("run", "invalid --rebuild-time %s (RFC 3339, e.g. 2026-11-26T09:00:00Z)",
                           c.rebuild_time);
    if ((rc = common_opts("run", &c, &mo)) != 0)
        return rc;
    jo.rebuild_time = c.rebuild_time;
    jo.dry_run = c.dry_run != NULL;
    jo.file = c.file;
    jo.steps = c.steps;
    jo.json = c.output && strcmp(c.output, "json") == 0;
    return km_manager_run_job(&mo, &jo);
}

/* Checks a --*-bind-address value ("0" = off).  0 or an exit code. */
static int check_address(const char *flag, const char *addr)
{
    char host[128];
    int port;
    if (strcmp(addr, "0") == 0 ||
        km_http_parse_address(addr, host, sizeof(host), &port, NULL) == KM_OK)
        return 0;
    char fmt[96];
    snprintf(fmt, sizeof(fmt), "invalid %s %%s", flag);
    return usage_error("operator", fmt, addr);
}

static int cmd_operator(int argc, char **argv)
{
    cli c;
    km_manager_opts mo;
    long workers = 2;
    memset(&mo, 0, sizeof(mo));
    int rc = parse_flags("operator", OPERATOR, argc, argv, &c);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (c.workers && parse_long(c.workers, 1, 16, &workers) != 0)
        return usage_error("operator", "invalid --workers %s (1..16)", c.workers);
    mo.lease_name = c.lease_name ? c.lease_name : "kubemend-leader";
    if (!*mo.lease_name)
        return usage_error("operator", "%s--lease-name must not be empty", "");
    mo.metrics_addr = c.metrics_addr ? c.metrics_addr : ":8080";
    mo.health_addr = c.health_addr ? c.health_addr : ":8081";
    if ((rc = check_address("--metrics-bind-address", mo.metrics_addr)) != 0 ||
        (rc = check_address("--health-probe-bind-address", mo.health_addr)) != 0)
        return rc;
    if ((rc = common_opts("operator", &c, &mo)) != 0)
        return rc;
    mo.ns = c.ns;
    mo.leader_elect = c.leader_elect != NULL;
    mo.workers = (int)workers;
    return km_manager_run(&mo);
}

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

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_main, stderr);
        return KM_EXIT_USAGE;
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
    if (strcmp(cmd, "keys") == 0)
        return km_cmd_keys(argc - 1, argv + 1);
    fprintf(stderr, "kubemend: unknown command \"%s\"\n\n%s", cmd, usage_main);
    return KM_EXIT_USAGE;
}
