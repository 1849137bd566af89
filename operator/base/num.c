/* num.c — checked double -> integer conversions (see num.h). */
#include "operator/base/num.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>

int km_num_to_ll(double v, long long lo, long long hi, long long *out)
{
    if (!isfinite(v))
        return 0;
    /* -2^63 is exact as a double; 2^63 (the first double above LLONG_MAX) is not representable:
     * compare against those bounds before converting. */
    if (v < -9223372036854775808.0 || v >= 9223372036854775808.0)
        return 0;
    long long n = (long long)v;
    if (n < lo || n > hi)
        return 0;
    *out = n;
    return 1;
}

long km_num_long(double v, long dflt)
{
    long long n;
    return km_num_to_ll(v, LONG_MIN, LONG_MAX, &n) ? (long)n : dflt;
}

long long km_num_llong(double v, long long dflt)
{
    long long n;
    return km_num_to_ll(v, LLONG_MIN, LLONG_MAX, &n) ? n : dflt;
}

long km_num_long_at(const cJSON *o, long dflt, ...)
{
    va_list ap;
    va_start(ap, dflt);
    const cJSON *cur = o;
    const char *key;
    while (cur && (key = va_arg(ap, const char *)) != NULL)
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, key) : NULL;
    va_end(ap);
    return cJSON_IsNumber(cur) ? km_num_long(cur->valuedouble, dflt) : dflt;
}
