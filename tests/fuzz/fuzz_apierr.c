/* fuzz_apierr.c — an API error response turned into a km_err (operator/kube/apierror.h): the
 * Status body, the HTTP code and the Retry-After header.
 *
 * Input: bytes 0-1 = HTTP code (100..999), then body NUL Retry-After value (absent = no header).
 * km_apierr_parse cannot fail: every field must come out NUL-terminated, the status KM_EAPI with
 * the code, retry_after never negative; km_apierr_retry_after is never negative. */
#include "operator/base/err.h"
#include "operator/kube/apierror.h"
#include "tests/fuzz/fuzz.h"

#define TERMINATED(a) (memchr((a), '\0', sizeof(a)) != NULL)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    long code = 100 + (long)(((unsigned)data[0] << 8 | data[1]) % 900u);
    fuzz_parts fp;
    if (fuzz_split(data + 2, size - 2, 2, &fp) != 0)
        return 0;
    char *body = fuzz_exact(fp.p[0], fp.len[0]);
    const char *hdr = fp.n > 1 ? fp.p[1] : NULL;
    km_err err;
    memset(&err, 0x5A, sizeof(err));
    km_apierr_parse(code, body, fp.len[0], hdr, &err);
    FUZZ_CHECK(err.status == KM_EAPI);
    FUZZ_CHECK(err.http_code == code);
    FUZZ_CHECK(TERMINATED(err.reason) && TERMINATED(err.message) && TERMINATED(err.details));
    FUZZ_CHECK(err.retry_after >= 0);
    FUZZ_CHECK(km_apierr_reason(code) != NULL);
    if (hdr)
        FUZZ_CHECK(km_apierr_retry_after(hdr) >= 0);
    free(body);
    fuzz_parts_free(&fp);
    return 0;
}
