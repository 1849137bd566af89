/* test_apierror.c — the API server's error bodies (recorded Status answers and non-Status junk)
 * into km_err. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "operator/kube/apierror.h"

#define S422                                                                                       \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"ConfigMap \\\"FX_Bad_Name\\\" is invalid: [...]\",\"reason\":\"Invalid\","      \
    "\"details\":{\"name\":\"FX_Bad_Name\",\"kind\":\"ConfigMap\",\"causes\":[{\"reason\":"        \
    "\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"FX_Bad_Name\\\"\",\"field\":"          \
    "\"metadata.name\"},{\"reason\":\"FieldValueInvalid\",\"message\":\"Invalid value: \\\"bad "   \
    "key!\\\"\",\"field\":\"data[bad key!]\"}]},\"code\":422}"
#define S429                                                                                       \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"Cannot evict pod as it would violate the pod's disruption budget.\","           \
    "\"reason\":\"TooManyRequests\",\"details\":{\"causes\":[{\"reason\":\"DisruptionBudget\","    \
    "\"message\":\"The disruption budget fx-pdb needs 1 healthy pods and has 1 currently\"}]},"    \
    "\"code\":429}"
#define S409                                                                                       \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"Operation cannot be fulfilled on leases.coordination.k8s.io \\\"fx-lease\\\": " \
    "the object has been modified\",\"reason\":\"Conflict\",\"details\":{\"name\":\"fx-lease\","   \
    "\"group\":\"coordination.k8s.io\",\"kind\":\"leases\"},\"code\":409}"
#define S401                                                                                       \
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","           \
    "\"message\":\"Unauthorized\",\"reason\":\"Unauthorized\",\"code\":401}"

static void test_invalid_with_causes(void **state)
{
    (void)state;
    km_err e;
    km_apierr_parse(422, S422, strlen(S422), NULL, &e);
    assert_int_equal(e.status, KM_EAPI);
    assert_int_equal(e.http_code, 422);
    assert_string_equal(e.reason, "Invalid");
    assert_string_equal(e.message, "ConfigMap \"FX_Bad_Name\" is invalid: [...]");
    assert_string_equal(e.details, "kind=ConfigMap name=FX_Bad_Name causes=[metadata.name: Invalid "
                                   "value: \"FX_Bad_Name\"; data[bad key!]: Invalid value: \"bad "
                                   "key!\"]");
    assert_int_equal(e.retry_after, 0);
}

static void test_conflict_eviction_unauthorized(void **state)
{
    (void)state;
    km_err e;
    km_apierr_parse(409, S409, strlen(S409), NULL, &e);
    assert_string_equal(e.reason, "Conflict");
    assert_string_equal(e.details, "kind=leases group=coordination.k8s.io name=fx-lease");
    km_apierr_parse(429, S429, strlen(S429), NULL, &e);
    assert_string_equal(e.reason, "TooManyRequests");
    assert_string_equal(e.details, "causes=[DisruptionBudget: The disruption budget fx-pdb needs "
                                   "1 healthy pods and has 1 currently]");
    km_apierr_parse(401, S401, strlen(S401), NULL, &e);
    assert_string_equal(e.reason, "Unauthorized");
    assert_string_equal(e.message, "Unauthorized");
    assert_string_equal(e.details, "");
}

static void test_retry_after(void **state)
{
    (void)state;
    km_err e;
    const char *b = "{\"kind\":\"Status\",\"reason\":\"TooManyRequests\",\"message\":\"slow\","
                    "\"details\":{\"retryAfterSeconds\":3},\"code\":429}";
    km_apierr_parse(429, b, strlen(b), NULL, &e);
    assert_int_equal(e.retry_after, 3);
    km_apierr_parse(429, b, strlen(b), "7", &e); /* the header wins */
    assert_int_equal(e.retry_after, 7);
    assert_int_equal(km_apierr_retry_after(" 12 \r\n"), 12);
    assert_int_equal(km_apierr_retry_after("12s"), 0);
    assert_int_equal(km_apierr_retry_after(NULL), 0);
    assert_int_equal(km_apierr_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), 0); /* past */
    char date[64];
    time_t later = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&later, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    long ra = km_apierr_retry_after(date);
    assert_true(ra > 100 && ra <= 120);
}

static void test_non_status_bodies(void **state)
{
    (void)state;
    km_err e;
    const char *html = "<html>\n<body>502   Bad\tGateway</body></html>";
    km_apierr_parse(502, html, strlen(html), NULL, &e);
    assert_int_equal(e.status, KM_EAPI);
    assert_string_equal(e.reason, "");
    assert_string_equal(e.message,
                        "HTTP 502 (non-Status body: <html> <body>502 Bad Gateway</body></html>)");
    km_apierr_parse(503, NULL, 0, NULL, &e);
    assert_string_equal(e.reason, "ServiceUnavailable");
    assert_string_equal(e.message, "HTTP 503 (empty body)");
    const char *pod = "{\"kind\":\"Pod\"}";
    km_apierr_parse(404, pod, strlen(pod), NULL, &e);
    assert_string_equal(e.reason, "NotFound");
    const char *bare = "{\"kind\":\"Status\",\"code\":500}"; /* no reason, no message */
    km_apierr_parse(500, bare, strlen(bare), NULL, &e);
    assert_string_equal(e.reason, "InternalError");
    assert_string_equal(e.message, "HTTP 500");
    char big[2000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    km_apierr_parse(500, big, strlen(big), NULL, &e);
    assert_true(strlen(e.message) < sizeof(e.message));
    assert_non_null(strstr(e.message, "..."));
    km_apierr_parse(500, big, 10, NULL, NULL); /* err NULL is fine */
}

static void test_truncated_details_and_reasons(void **state)
{
    (void)state;
    km_err e;
    char body[4096];
    int n = snprintf(body, sizeof(body),
                     "{\"kind\":\"Status\",\"reason\":\"Invalid\",\"details\":"
                     "{\"causes\":[");
    for (int i = 0; i < 20; i++)
        n += snprintf(body + n, sizeof(body) - (size_t)n,
                      "%s{\"field\":\"spec.f%d\",\"message\":\"Required value\"}", i ? "," : "", i);
    snprintf(body + n, sizeof(body) - (size_t)n, "]}}");
    km_apierr_parse(422, body, strlen(body), NULL, &e);
    assert_int_equal(strlen(e.details), sizeof(e.details) - 1);
    assert_int_equal(strncmp(e.details, "causes=[spec.f0: Required value; spec.f1", 40), 0);
    assert_string_equal(km_apierr_reason(410), "Expired");
    assert_string_equal(km_apierr_reason(418), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_with_causes),
        cmocka_unit_test(test_conflict_eviction_unauthorized),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_non_status_bodies),
        cmocka_unit_test(test_truncated_details_and_reasons),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
