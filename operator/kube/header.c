/* header.c — header lines with checked values (see header.h). */
#include "operator/kube/header.h"

int km_header_value_ok(const char *v)
{
    if (!v)
        return 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

km_status km_header_line(km_buf *b, const char *name, const char *value, km_err *err)
{
    km_buf_reset(b);
    if (!km_header_value_ok(value))
        return km_err_set(err, KM_EINVAL,
                          "the %s header value holds control characters (CR, LF, ...): refused",
                          name);
    km_status st = km_buf_printf(b, "%s: %s", name, value);
    if (st != KM_OK)
        return km_err_set(err, st, "%s header: %s", name, km_strerror(st));
    return KM_OK;
}
