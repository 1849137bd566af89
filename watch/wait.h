/* wait.h — waiting for named objects of one resource to reach a condition, on ONE watch of the
 * whole collection (kube-rs's await_condition, for a set of objects): nothing is polled and
 * nothing is cached but the waited-for objects' verdicts.
 *
 * The caller registers an object (km_wait_add) before the write that starts the change it waits
 * for, then arms it with the generation that write produced (km_wait_arm, with the write's
 * response): only states at or after that generation count, and what the watch showed between
 * the add and the arm is judged then.  A deleted object counts as done.  The watch starts at the
 * first arm from that response's resourceVersion (no list); when it expires (410) a resync takes
 * a fresh resourceVersion (a list with limit=1) and GETs the objects still waited for. */
#ifndef KM_WAIT_H
#define KM_WAIT_H

#include <stdatomic.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

typedef struct km_wait km_wait;

/* Non-zero when obj (borrowed) has reached the condition waited for. */
typedef int (*km_wait_cond_fn)(const cJSON *obj, void *user);

/* Called by km_wait_all for an object that did not reach the condition in time. */
typedef void (*km_wait_late_fn)(const char *ns, const char *name, void *user);

typedef struct km_wait_opts {
    const char *group;    /* API group ("apps"; NULL = core) */
    const char *version;  /* "v1" */
    const char *resource; /* plural: "deployments" */
    km_wait_cond_fn cond; /* required */
    void *user;           /* passed to cond */
    km_kube *kube;        /* borrowed: cloned for the watch thread; must outlive the wait */
    /* NULL = over kube (km_watch_transport_kube); tests inject one (copied; needs get). */
    const struct km_watch_transport *transport;
} km_wait_opts;

/* A new wait (no thread until the first arm); strings of o are copied.  Caller frees *out with
 * km_wait_free.  Failure: KM_EINVAL (no resource or cond), KM_ENOMEM; *out untouched. */
km_status km_wait_new(const km_wait_opts *o, km_wait **out, km_err *err);

/* Stops the watch and frees everything.  Accepts NULL. */
void km_wait_free(km_wait *w);

/* Registers ns/name (generation unknown: states are remembered, not yet judged).  KM_ENOMEM. */
km_status km_wait_add(km_wait *w, const char *ns, const char *name, km_err *err);

/* The change of ns/name starts at generation gen; obj (the write's response or a GET) and what
 * the watch saw since km_wait_add are judged; the watch starts from obj's resourceVersion unless
 * it runs.  Failure: the watch could not start (KM_ENOMEM, KM_EIO, the clone's error); the entry
 * stays registered. */
km_status km_wait_arm(km_wait *w, const char *ns, const char *name, double gen, const cJSON *obj,
                      km_err *err);

/* Forgets ns/name (its write failed). */
void km_wait_drop(km_wait *w, const char *ns, const char *name);

/* Waits until every registered object is done, timeout_s passed or *cancel (may be NULL) is set;
 * calls late (may be NULL) for each one not done; forgets them all.  KM_ECANCELED when
 * cancelled (late is not called); KM_ENOMEM (nothing waited for, nothing forgotten). */
km_status km_wait_all(km_wait *w, double timeout_s, const atomic_int *cancel, km_wait_late_fn late,
                      void *user);

#endif
