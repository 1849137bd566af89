/* kmtest.h — shared helpers for the client's cmocka tests: temporary directories, files, and a
 * log capture sink. */
#ifndef KM_TEST_KMTEST_H
#define KM_TEST_KMTEST_H

#include <stddef.h>

#include "operator/kube/kube.h"
#include "operator/kube/kubeconfig.h"

/* Creates a fresh directory under $TMPDIR (or /tmp) and copies its path into buf (n >= 64).
 * Aborts the test program on failure.  Returns buf. */
char *kmtest_mkdtemp(char *buf, size_t n);

/* Removes a directory created by kmtest_mkdtemp and everything in it (one level of files). */
void kmtest_rmdir(const char *dir);

/* Writes text to dir/name (dir may be NULL: name is the path); copies the path into out (may be
 * NULL, size PATH_MAX).  Aborts on failure. */
void kmtest_write(const char *dir, const char *name, const char *text, char *out);

/* The recorded kube-apiserver 1.19 bodies in the tree (tests/fixtures/kube-apiserver-1.19, README
 * there; $KM_FIXTURES overrides the folder; tests run from the repository root). */
#define KMTEST_FIXTURES "tests/fixtures/kube-apiserver-1.19"

/* The whole fixture file `name` (malloc'ed, NUL-terminated; *len its size when len is non-NULL).
 * A missing fixture aborts the test program (never a silent skip). */
char *kmtest_fixture(const char *name, size_t *len);

/* A client of a kubeconfig written to dir (server https://127.0.0.1:1, token "t") whose requests
 * go to fn(user) (km_kube_set_transport); opts NULL = defaults.  *cfg and *k: the caller frees
 * them (km_kube_free, then km_kubeconfig_free).  Aborts the test program on failure. */
void kmtest_fake_client(const char *dir, const km_kube_opts *opts, km_kube_transport_fn fn,
                        void *user, km_kubeconfig **cfg, km_kube **k);

/* Captures log lines (km_log_set_sink) into a buffer until kmtest_log_stop(). */
void kmtest_log_start(void);
/* The captured lines, '\n'-separated (borrowed, valid until the next start/stop). */
const char *kmtest_log_text(void);
/* Number of captured lines containing s. */
int kmtest_log_count(const char *s);
/* Restores the stderr sink and frees the capture. */
void kmtest_log_stop(void);

#endif
