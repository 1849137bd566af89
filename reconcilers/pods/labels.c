/* labels.c — label syntax (see labels.h). */
#include "reconcilers/pods/labels.h"

#include <string.h>

static int alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A qualified name's part of n characters: [A-Za-z0-9] at both ends, [-_.A-Za-z0-9] inside. */
static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 63 || !alnum(s[0]) || !alnum(s[n - 1]))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return 0;
    return 1;
}

/* A DNS subdomain of n characters: dot-separated labels of [a-z0-9-], alphanumeric at both ends. */
static int subdomain_ok(const char *s, size_t n)
{
    if (n == 0 || n > 253)
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                return 0;
            continue;
        }
        if (i == start || s[start] == '-' || s[i - 1] == '-' || i - start > 63)
            return 0;
        start = i + 1;
    }
    return 1;
}

int km_labels_value_ok(const char *v)
{
    return v && (!*v || name_ok(v, strlen(v)));
}

int km_labels_key_ok(const char *k)
{
    if (!k)
        return 0;
    const char *slash = strchr(k, '/');
    if (!slash)
        return name_ok(k, strlen(k));
    return subdomain_ok(k, (size_t)(slash - k)) && name_ok(slash + 1, strlen(slash + 1));
}
