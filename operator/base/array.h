/* array.h — room for one more element in a heap array that grows by doubling, the one
 * realloc-and-double that every growable list of kubemend uses. */
#ifndef KM_ARRAY_H
#define KM_ARRAY_H

#include <stddef.h>

#include "operator/base/err.h"

/* Makes room for element number n (0-based) in the array *arrp (arrp: the address of a T *
 * holding *cap elements of elem bytes each): when n == *cap it is reallocated to twice the
 * capacity (first 8).  KM_ENOMEM leaves the array and *cap unchanged. */
km_status km_array_grow(void *arrp, size_t n, size_t *cap, size_t elem);

#endif
