/* left.c — what a verify hook found left (see left.h). */
#include "reconcilers/step/left.h"

#include <stdio.h>
#include <string.h>

void km_left_add(km_left *l, const char *name)
{
    l->n++;
    if (!name)
        return;
    size_t have = strlen(l->names), need = strlen(name) + (have ? 2 : 0);
    if (have + need >= sizeof(l->names))
        return;
    snprintf(l->names + have, sizeof(l->names) - have, "%s%s", have ? ", " : "", name);
    l->shown++;
}

const char *km_left_text(const km_left *l, char *buf, size_t n)
{
    if (l->shown >= l->n)
        snprintf(buf, n, "%ld%s%s", l->n, l->shown ? ": " : "", l->names);
    else
        snprintf(buf, n, "%ld%s%s%s and %ld more", l->n, l->shown ? ": " : "", l->names,
                 l->shown ? "," : "", l->n - l->shown);
    return buf;
}
