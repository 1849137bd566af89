/* num.h — checked conversion of JSON numbers (doubles the server or a file controls) to integers.
 *
 * Converting a double that is NaN, infinite or outside the target type's range to an integer is
 * undefined behaviour in C (`(long)4E44`).  Every conversion of a number read from JSON goes
 * through km_num_to_ll / km_num_long, or the path getter KM_JSON_LONG. */
#ifndef KM_NUM_H
#define KM_NUM_H

#include <cjson/cJSON.h>

/* Converts v to an integer in [lo, hi], truncating toward zero like a cast.  Returns 1 and sets
 * *out when v is finite and in range; returns 0 (and leaves *out untouched) otherwise. */
int km_num_to_ll(double v, long long lo, long long hi, long long *out);

/* v truncated to a long, or dflt when v is NaN, infinite or outside long's range. */
long km_num_long(double v, long dflt);

/* v truncated to a long long, or dflt when v is NaN, infinite or outside long long's range. */
long long km_num_llong(double v, long long dflt);

/* The number at the NULL-terminated key path of o as a long, or dflt when missing, not a
 * number, or not representable (see km_num_long). */
long km_num_long_at(const cJSON *o, long dflt, ...);

#define KM_JSON_LONG(o, dflt, ...) km_num_long_at((o), (dflt), __VA_ARGS__, (const char *)NULL)

#endif
