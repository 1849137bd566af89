/* fuzz_base64.c — strict base64 / base64url decoding (operator/base/base64.h).
 *
 * Input: byte 0 = flags (bit 0: KM_B64_URL, bit 1: KM_B64_SKIP_SPACE); the rest is decoded.
 * Decoding is strict (padding optional, leftover bits zero), so the encoding of what it decodes
 * must give back the input (whitespace removed, padding removed, URL alphabet mapped): a second
 * input that decodes to the same bytes would be a finding.  The output is NUL-terminated. */
#include <openssl/evp.h>

#include "operator/base/base64.h"
#include "tests/fuzz/fuzz.h"

/* in without whitespace (when skip) and '=' padding, mapped to the standard alphabet (when url),
 * into out (size >= n).  Returns its length. */
static size_t canonical(const char *in, size_t n, int url, int skip, char *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (skip && (c == ' ' || c == '\t' || c == '\r' || c == '\n'))
            continue;
        if (c == '=')
            continue;
        if (url && c == '-')
            c = '+';
        else if (url && c == '_')
            c = '/';
        out[k++] = c;
    }
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int flags = data[0] & 3;
    const char *in = (const char *)data + 1;
    size_t n = size - 1;
    char *copy = fuzz_exact(in, n);
    if (!copy)
        return 0;
    unsigned char *out = (unsigned char *)"untouched";
    size_t out_len = 12345;
    km_status st = km_base64_decode(copy, n, flags, &out, &out_len);
    if (st != KM_OK) {
        FUZZ_CHECK(st == KM_EPARSE || st == KM_ENOMEM);
        FUZZ_CHECK(out_len == 12345 && strcmp((char *)out, "untouched") == 0);
        free(copy);
        return 0;
    }
    FUZZ_CHECK(out != NULL && out[out_len] == '\0');
    FUZZ_CHECK(out_len <= n / 4 * 3 + 2);
    /* round trip */
    char *enc = malloc(4 * (out_len / 3 + 1) + 1);
    char *want = malloc(n + 1);
    FUZZ_CHECK(enc && want);
    int el = EVP_EncodeBlock((unsigned char *)enc, out, (int)out_len);
    size_t wl = canonical(in, n, flags & KM_B64_URL, flags & KM_B64_SKIP_SPACE, want);
    size_t gl = canonical(enc, (size_t)el, 0, 0, enc);
    FUZZ_CHECK(gl == wl && memcmp(enc, want, wl) == 0);
    /* padding: at most two '=', none before a digit */
    size_t pads = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=')
            pads++;
        else if (pads)
            FUZZ_CHECK((flags & KM_B64_SKIP_SPACE) && strchr(" \t\r\n", in[i]));
    }
    FUZZ_CHECK(pads <= 2);
    free(enc);
    free(want);
    free(out);
    free(copy);
    return 0;
}
