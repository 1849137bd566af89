/* fuzz_http.c — what the health/metrics server parses itself (operator/serve/http.h): the
 * --metrics-bind-address / --health-probe-bind-address value.  HTTP requests are parsed by
 * libwebsockets; the server only compares the path it hands over (see the README's fuzzing notes).
 *
 * Input: the address.  On success the port is 0..65535 and the host fits and holds no ':' unless
 * it was bracketed; on failure the outputs are untouched. */
#include "operator/base/err.h"
#include "operator/serve/http.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_parts fp;
    if (fuzz_split(data, size, 1, &fp) != 0)
        return 0;
    if (memchr(fp.p[0], '\0', fp.len[0])) { /* a flag value holds no NUL */
        fuzz_parts_free(&fp);
        return 0;
    }
    char host[16];
    memset(host, 'x', sizeof(host));
    int port = -7;
    km_err err = {0};
    km_status st = km_http_parse_address(fp.p[0], host, sizeof(host), &port, &err);
    if (st != KM_OK) {
        FUZZ_CHECK(st == KM_EINVAL && port == -7 && host[0] == 'x');
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
    } else {
        FUZZ_CHECK(port >= 0 && port <= 65535);
        FUZZ_CHECK(memchr(host, '\0', sizeof(host)) != NULL);
        FUZZ_CHECK(fp.p[0][0] == '[' || strchr(host, ':') == NULL);
        FUZZ_CHECK(strstr(fp.p[0], host) != NULL);
    }
    fuzz_parts_free(&fp);
    return 0;
}
