/* keys.c — `kubemend keys recover|snapshot`: flags into the Manager's job options (keys.h). */
#include "operator/cmd/keys.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "operator/base/log.h"
#include "operator/cmd/manager.h"

#ifndef KM_VERSION
#define KM_VERSION "0.1.0"
#endif

static const char usage_keys[] =
    "Usage:\n"
    "  kubemend keys recover -o FILE [flags]   recover the service-account public key(s) the API\n"
    "                                          server lost (from the key snapshot, else from old\n"
    "                                          tokens: ~1 min per RSA-2048 key), prove them by "
    "kid,\n"
    "                                          write them as PEM and print how to bridge\n"
    "  kubemend keys snapshot [flags]          write the key snapshot ConfigMap (JWKS + CA\n"
    "                                          certificates, public data; the operator keeps it)\n"
    "\n"
    "Flags:\n"
    "  -o, --output FILE     recover: where the PEM public key(s) go (e.g. sa-old.pub)\n"
    "  --namespace NS        the snapshot's namespace (default kubemend-system)\n"
    "  --kubeconfig FILE     kubeconfig (default $KUBECONFIG, in-cluster, ~/.kube/config)\n"
    "  --context NAME        kubeconfig context\n"
    "  --log-level LEVEL     debug|info|warn|error (default info)\n"
    "  -h, --help            this help\n"
    "\n"
    "Exit status: 0 success, 1 no key recovered or a request failed, 2 usage error.\n";

static int usage(const char *msg, const char *arg)
{
    fprintf(stderr, "kubemend keys: %s%s\nRun 'kubemend keys --help' for usage.\n", msg,
            arg ? arg : "");
    return KM_EXIT_USAGE;
}

int km_cmd_keys(int argc, char **argv)
{
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"namespace", required_argument, NULL, 'n'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"context", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    km_manager_opts mo;
    km_job_opts jo;
    km_log_level lvl = KM_LOG_INFO;
    memset(&mo, 0, sizeof(mo));
    memset(&jo, 0, sizeof(jo));
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_keys, argc < 2 ? stderr : stdout);
        return argc < 2 ? KM_EXIT_USAGE : 0;
    }
    if (strcmp(argv[1], "recover") == 0)
        jo.job = "keys recover";
    else if (strcmp(argv[1], "snapshot") == 0)
        jo.job = "keys snapshot";
    else
        return usage("unknown subcommand ", argv[1]);
    km_kube_opts_default(&mo.client);
    mo.version = KM_VERSION;
    optind = 1;
    opterr = 0;
    int v;
    while ((v = getopt_long(argc - 1, argv + 1, ":o:h", opts, NULL)) != -1) {
        switch (v) {
        case 'o':
            jo.out_file = optarg;
            break;
        case 'n':
            jo.ns = optarg;
            break;
        case 'k':
            mo.kubeconfig = optarg;
            break;
        case 'c':
            mo.context = optarg;
            break;
        case 'l':
            if (km_log_parse_level(optarg, &lvl) != KM_OK)
                return usage("invalid --log-level ", optarg);
            break;
        case 'h':
            fputs(usage_keys, stdout);
            return 0;
        case ':':
            return usage("flag needs a value: ", argv[optind]);
        default:
            return usage("unknown flag ", argv[optind]);
        }
    }
    if (optind < argc - 1)
        return usage("unexpected argument ", argv[optind + 1]);
    if (jo.out_file && strcmp(jo.job, "keys recover") != 0)
        return usage("-o is a flag of 'keys recover'", NULL);
    km_log_configure(lvl, KM_LOG_TEXT);
    return km_manager_run_job(&mo, &jo);
}
