/* array.c — growing heap arrays (see array.h). */
#include "operator/base/array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

km_status km_array_grow(void *arrp, size_t n, size_t *cap, size_t elem)
{
    void *arr;
    if (n < *cap)
        return KM_OK;
    if (elem == 0 || *cap > SIZE_MAX / 2 / elem)
        return KM_ENOMEM;
    size_t c = *cap ? *cap * 2 : 8;
    memcpy(&arr, arrp, sizeof(arr)); /* arrp points at a T *, whatever T is */
    void *grown = realloc(arr, c * elem);
    if (!grown)
        return KM_ENOMEM;
    memcpy(arrp, &grown, sizeof(grown)); /* now owned through *arrp */
    *cap = c;
    // cppcheck-suppress memleak
    return KM_OK;
}
