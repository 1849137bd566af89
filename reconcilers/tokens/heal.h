/* heal.h — the token Secrets the tokens step changed, and the check that each of them got a
 * valid token from the tokens controller.
 *
 * Regenerate: the same Secret must hold a token that validates.  Delete: a NEW token Secret of
 * the same ServiceAccount (same ServiceAccount uid, another Secret uid) must.  The check runs in
 * rounds until every Secret healed or the timeout passed without any of them healing, a short
 * pause first and between rounds.  A round with more Secrets pending than a list of the token
 * Secrets takes pages re-lists them (paged) and looks each listed Secret up in this set (by name,
 * and by ServiceAccount for deleted ones) — a regenerated Secret missing from the list was deleted
 * and cannot heal; a round with few pending reads each (Regenerate: GET; Delete: a list of its
 * namespace's token Secrets).  API errors leave Secrets pending for the next round; transport
 * errors and cancel end the check. */
#ifndef KM_TOKENS_HEAL_H
#define KM_TOKENS_HEAL_H

#include <stdatomic.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "operator/kube/kube.h"
#include "reconcilers/tokens/check.h"

#define KM_TOKENS_PAGE_LIMIT 500 /* client-go pager default; a page of token Secrets ~1.5 MB */

typedef struct km_tokens_heal km_tokens_heal;

/* An empty set the caller frees with km_tokens_heal_free.  NULL on allocation failure. */
km_tokens_heal *km_tokens_heal_new(void);

/* Frees the set.  Accepts NULL. */
void km_tokens_heal_free(km_tokens_heal *h);

/* Remembers a changed Secret ns/name (no duplicates; the strings are copied).  sa, sa_uid and
 * old_uid (the Secret's uid before the change) may be NULL; del = it was deleted (needs sa).
 * KM_ENOMEM leaves the set without it. */
km_status km_tokens_heal_add(km_tokens_heal *h, const char *ns, const char *name, const char *sa,
                             const char *sa_uid, const char *old_uid, int del);

/* Number of Secrets remembered. */
size_t km_tokens_heal_len(const km_tokens_heal *h);

/* Called after a round in which more Secrets healed: healed of total so far.  A non-KM_OK return
 * (e.g. the status write failed; err filled) ends the check with it. */
typedef km_status (*km_tokens_heal_progress_fn)(size_t healed, size_t total, void *user,
                                                km_err *err);

typedef struct km_tokens_heal_opts {
    km_kube *kube;            /* borrowed */
    km_tokens_judge *judge;   /* borrowed */
    long timeout_s;           /* spec.verifyTimeoutSeconds: the longest wait WITHOUT progress
                                 (0 = one round, no pause) */
    long scanned;             /* token Secrets seen by the pass: sizes a re-list */
    const atomic_int *cancel; /* may be NULL */
    /* appended */
    km_tokens_heal_progress_fn progress; /* may be NULL */
    void *user;                          /* for progress */
} km_tokens_heal_opts;

/* Checks in rounds (see the file comment) until every Secret healed or opts->timeout_s passed
 * since the last round that healed one (the deadline moves with the tokens controller's
 * progress: 1,000 Secrets refilled at 9 per second are waited for, a controller that stopped
 * is not).  Failure: a transport error, KM_ECANCELED, the progress callback's error; the set
 * keeps what was found so far. */
km_status km_tokens_heal_check(km_tokens_heal *h, const km_tokens_heal_opts *opts, km_err *err);

/* Writes the result into the step's status: "healed" (count) and "unhealed" (at most max
 * "ns/name" entries).  Returns how many did not heal. */
long km_tokens_heal_report(const km_tokens_heal *h, cJSON *status, int max);

#endif
