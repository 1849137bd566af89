/* base64.c — strict base64 / base64url decoding. */
#include "operator/base/base64.h"

#include <stdlib.h>

static int b64_value(unsigned char c, int url)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == (url ? '-' : '+'))
        return 62;
    if (c == (url ? '_' : '/'))
        return 63;
    return -1;
}

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

km_status km_base64_decode(const char *in, size_t n, int flags, unsigned char **out,
                           size_t *out_len)
{
    int url = (flags & KM_B64_URL) != 0, skip = (flags & KM_B64_SKIP_SPACE) != 0;
    unsigned char *buf = malloc(n / 4 * 3 + 4);
    if (!buf)
        return KM_ENOMEM;
    size_t o = 0, digits = 0, pad = 0;
    unsigned int acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (skip && is_space(c))
            continue;
        if (c == '=') {
            pad++;
            continue;
        }
        int v = b64_value(c, url);
        if (v < 0 || pad) /* a bad character, or data after padding */
            goto bad;
        digits++;
        acc = (acc << 6) | (unsigned int)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    if (digits % 4 == 1 || pad > 2 || (pad && (digits + pad) % 4 != 0))
        goto bad;
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) /* canonical: leftover bits are zero */
        goto bad;
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return KM_OK;
bad:
    free(buf);
    return KM_EPARSE;
}
