/* keys.h — operator/cmd: the `kubemend keys` command (flags only; the jobs "keys recover" and
 * "keys snapshot" are registered by reconcilers/bridge/keys.c and run by the Manager). */
#ifndef KM_CMD_KEYS_H
#define KM_CMD_KEYS_H

/* Runs `kubemend keys SUBCOMMAND [flags]` (argv[0] = "keys").  Returns the exit code: 0, 1 (no
 * key recovered, a failed request), 2 (usage). */
int km_cmd_keys(int argc, char **argv);

#endif
