/* verify.c — folding the steps' verify answers into the Verified condition (see verify.h). */
#include "reconcilers/recovery/verify.h"

#include <stdio.h>
#include <string.h>

/* Appends "key: text; " to buf (size n), truncating. */
static void append(char *buf, size_t n, const char *key, const char *text)
{
    size_t have = strlen(buf);
    if (have + 1 < n)
        snprintf(buf + have, n - have, "%s: %s; ", key, text ? text : "");
}

/* Drops the trailing "; " of a joined list. */
static void trim(char *s)
{
    size_t len = strlen(s);
    if (len >= 2 && strcmp(s + len - 2, "; ") == 0)
        s[len - 2] = '\0';
}

void km_verify_add(km_verify *v, const char *key, km_status st, const char *cond_status,
                   const char *message, const km_err *e)
{
    char ebuf[512];
    if (st == KM_OK && cond_status && strcmp(cond_status, "True") == 0) {
        v->trues++;
        append(v->checked, sizeof(v->checked), key, message);
    } else if (st == KM_OK && cond_status && strcmp(cond_status, "False") == 0) {
        v->falses++;
        append(v->left, sizeof(v->left), key, message);
    } else {
        v->unknowns++;
        if (st == KM_OK)
            snprintf(ebuf, sizeof(ebuf), "the check gave no answer");
        else if (e)
            km_err_str(e, ebuf, sizeof(ebuf));
        else
            snprintf(ebuf, sizeof(ebuf), "%s", km_strerror(st));
        append(v->failed, sizeof(v->failed), key, ebuf);
    }
}

void km_verify_result(const km_verify *v, const char **status, const char **reason, char *msg,
                      size_t n)
{
    char left[sizeof(v->left)], checked[sizeof(v->checked)], failed[sizeof(v->failed)];
    snprintf(left, sizeof(left), "%s", v->left);
    snprintf(checked, sizeof(checked), "%s", v->checked);
    snprintf(failed, sizeof(failed), "%s", v->failed);
    trim(left);
    trim(checked);
    trim(failed);
    if (v->falses) {
        *status = "False";
        *reason = "NotHealed";
        snprintf(msg, n, "left: %s%s%s", left, v->unknowns ? "; could not check: " : "",
                 v->unknowns ? failed : "");
    } else if (v->unknowns) {
        *status = "Unknown";
        *reason = "VerifyFailed";
        snprintf(msg, n, "could not check: %s", failed);
    } else {
        *status = "True";
        *reason = "Healed";
        snprintf(msg, n, "%s", v->trues ? checked : "nothing to verify");
    }
}
