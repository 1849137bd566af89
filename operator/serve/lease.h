/* lease.h — leader election on a coordination.k8s.io/v1 Lease (controller-runtime semantics).
 *
 * Timing (defaults): lease duration 15 s, renew deadline 10 s, retry period 2 s.
 *
 * Expiry is judged ONLY by local monotonic time: a candidate remembers when it last SAW the
 * lease record change (holderIdentity, renewTime, leaseTransitions, leaseDurationSeconds) and
 * treats the lease as expired once leaseDurationSeconds have passed on its own clock since then.
 * Remote timestamps (renewTime) are never compared with the local clock, so clock skew between
 * machines cannot make two leaders.
 *
 * Acquire and renew are resourceVersion-guarded updates (or a create when the Lease does not
 * exist); a 409 means someone else wrote first.  The leader renews every retry period; when it
 * has not renewed successfully within the renew deadline — measured from the START of its last
 * successful renew request, which precedes the moment any other candidate can have observed
 * that renewal — it stops leading (on_stopped_leading) before the lease can expire for others
 * (renew deadline < lease duration).  Every request is bounded so it cannot outlive the
 * deadline.  On a clean stop a leader may release the lease (holderIdentity "") so a successor
 * does not wait for expiry. */
#ifndef KM_LEASE_H
#define KM_LEASE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"

#define KM_LEASE_DURATION 15.0
#define KM_LEASE_RENEW_DEADLINE 10.0
#define KM_LEASE_RETRY 2.0

/* ---- the pure part (tests drive it with an injected clock) ------------------------------- */

typedef struct km_lease_record {
    char holder[256];      /* spec.holderIdentity ("" = free) */
    char renew_time[64];   /* spec.renewTime as written (opaque: never compared to a clock) */
    char acquire_time[64]; /* spec.acquireTime */
    long transitions;      /* spec.leaseTransitions */
    long duration_s;       /* spec.leaseDurationSeconds (0 = unset) */
    char resource_version[64];
} km_lease_record;

/* What a candidate has observed of a lease. */
typedef struct km_lease_observed {
    int have;            /* a record was observed */
    km_lease_record rec; /* the last record */
    double seen_at;      /* local monotonic seconds when rec last changed */
} km_lease_observed;

/* Fills *out from a Lease object (missing fields = empty/0).  KM_EINVAL when lease is not an
 * object (out untouched). */
km_status km_lease_record_from_json(const cJSON *lease, km_lease_record *out);

/* 1 when the records differ in holder, renewTime, leaseTransitions or leaseDurationSeconds. */
int km_lease_record_changed(const km_lease_record *a, const km_lease_record *b);

/* Records that rec was read at local time now: seen_at becomes now when it is the first record
 * or it changed; otherwise seen_at stays (the lease is not being renewed). */
void km_lease_observe(km_lease_observed *o, const km_lease_record *rec, double now);

/* 1 when the observed lease is free (no holder) or has expired at local time now:
 * now >= seen_at + duration (the record's leaseDurationSeconds, or default_duration when
 * unset).  0 when nothing was observed yet. */
int km_lease_expired(const km_lease_observed *o, double now, double default_duration);

/* 1 when a leader whose last successful renew request STARTED at last_renew_start must stop
 * leading at local time now (now - last_renew_start >= renew_deadline). */
int km_lease_renew_overdue(double last_renew_start, double now, double renew_deadline);

/* Timeout (seconds) for the next renew request so that it ends before the renew deadline:
 * min(cap, renew_deadline - (now - last_renew_start)), at least 0.1. */
double km_lease_request_budget(double last_renew_start, double now, double renew_deadline,
                               double cap);

/* ---- the elector ---------------------------------------------------------------------------- */

typedef double (*km_lease_clock_fn)(void *user); /* monotonic seconds */

typedef struct km_lease_config {
    const char *ns;        /* Lease namespace */
    const char *name;      /* Lease name */
    const char *identity;  /* this candidate (e.g. hostname_random) */
    double duration;       /* 0 = KM_LEASE_DURATION */
    double renew_deadline; /* 0 = KM_LEASE_RENEW_DEADLINE */
    double retry;          /* 0 = KM_LEASE_RETRY */
    int release_on_stop;   /* 1 = give the lease up in km_lease_stop */
    /* Called on the elector's thread; must be quick and thread-safe. */
    void (*on_started_leading)(void *user);
    void (*on_stopped_leading)(void *user);
    /* Called on the elector's thread whenever the holder it observed changes (may be NULL). */
    void (*on_new_leader)(const char *identity, void *user);
    void *user;
    km_lease_clock_fn clock; /* NULL = CLOCK_MONOTONIC */
    void *clock_user;
} km_lease_config;

typedef struct km_lease km_lease;

/* Creates an elector (kube is cloned; cfg's strings are copied) and starts its thread.  Caller
 * stops and frees it with km_lease_stop.  Failure: KM_EINVAL (missing ns/name/identity, or
 * renew_deadline >= duration), KM_ENOMEM, the clone's error, KM_EIO (thread); nothing runs and
 * *out is untouched. */
km_status km_lease_start(km_kube *kube, const km_lease_config *cfg, km_lease **out, km_err *err);

/* 1 while this candidate leads (it acquired or renewed within the renew deadline). */
int km_lease_is_leader(km_lease *l);

/* 1 once the first attempt to read the lease finished (leader state known, for /readyz). */
int km_lease_state_known(km_lease *l);

/* Stops the thread (on_stopped_leading is called if it was leading), releases the lease when
 * configured and it still holds it, and frees l.  Accepts NULL. */
void km_lease_stop(km_lease *l);

/* A default identity "<hostname>_<16 hex random>" into buf (n >= 64).  Returns buf. */
const char *km_lease_identity(char *buf, size_t n);

#endif
