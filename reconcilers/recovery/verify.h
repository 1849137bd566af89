/* verify.h — the recovery's Verified condition: after every step ran and the final status was
 * written, each step's verify hook (reconcilers/step/step.h) re-checks from the server's answers
 * that what it repairs is healed, and the answers are folded into one condition:
 *   True  / Healed        every hook said True (the message joins what each checked);
 *   False / NotHealed     a hook said False: the message starts with what is left, per step
 *                         ("tokens: ...; pods: ..."), then the steps that could not check;
 *   Unknown / VerifyFailed no hook said False and one could not read (its error).
 * Every registered hook runs, also for a step that was disabled or not selected (--steps): the
 * condition tells whether the cluster is healed, not whether the steps ran. */
#ifndef KM_RECOVERY_VERIFY_H
#define KM_RECOVERY_VERIFY_H

#include <stddef.h>

#include "operator/base/err.h"

/* The condition type. */
#define KM_COND_VERIFIED "Verified"

/* The Verified condition being folded: zero it before the first km_verify_add. */
typedef struct km_verify {
    int trues, falses, unknowns;
    char left[1536];    /* "key: message; " of the False answers */
    char checked[1536]; /* "key: message; " of the True answers */
    char failed[768];   /* "key: error; " of the hooks that could not read */
} km_verify;

/* Adds one hook's answer: st KM_OK with cond_status "True"/"False" and message, else the error e
 * (may be NULL).  A KM_OK answer without "True"/"False" counts as could-not-tell. */
void km_verify_add(km_verify *v, const char *key, km_status st, const char *cond_status,
                   const char *message, const km_err *e);

/* The folded condition: *status "True"/"False"/"Unknown", *reason (static), message into msg
 * (size n, always NUL-terminated).  No hook at all: True with "nothing to verify". */
void km_verify_result(const km_verify *v, const char **status, const char **reason, char *msg,
                      size_t n);

#endif
