/* test_buf_log.c — err, buf, log and json base modules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "operator/base/buf.h"
#include "operator/base/err.h"
#include "operator/base/json.h"
#include "operator/base/log.h"
#include "tests/unit/support/kmtest.h"

static void test_buf(void **state)
{
    (void)state;
    km_buf b;
    km_buf_init(&b, 8);
    assert_string_equal(km_buf_str(&b), "");
    assert_int_equal(km_buf_puts(&b, "abc"), KM_OK);
    assert_int_equal(km_buf_printf(&b, "%d%s", 12, "de"), KM_OK);
    assert_string_equal(km_buf_str(&b), "abc12de");
    assert_int_equal(km_buf_append(&b, "xy", 2), KM_ETOOBIG); /* 9 > 8: unchanged */
    assert_int_equal(km_buf_printf(&b, "%s", "xy"), KM_ETOOBIG);
    assert_string_equal(km_buf_str(&b), "abc12de");
    assert_int_equal(km_buf_append(&b, "z", 1), KM_OK); /* exactly max */
    assert_int_equal(b.len, 8);
    km_buf_consume(&b, 3);
    assert_string_equal(km_buf_str(&b), "12dez");
    km_buf_consume(&b, 100);
    assert_int_equal(b.len, 0);
    assert_string_equal(km_buf_str(&b), "");
    km_buf_puts(&b, "hello");
    char *s = km_buf_take(&b);
    assert_string_equal(s, "hello");
    free(s);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.max, 8);
    s = km_buf_take(&b); /* empty -> "" */
    assert_string_equal(s, "");
    free(s);
    km_buf_puts(&b, "x");
    km_buf_reset(&b);
    assert_string_equal(km_buf_str(&b), "");
    km_buf_cleanup(&b);
    km_buf_cleanup(NULL);
    km_buf_init(&b, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(km_buf_append(&b, "0123456789", 10), KM_OK);
    assert_int_equal(b.len, 10000);
    assert_int_equal(b.data[b.len], '\0');
    km_buf_cleanup(&b);
}

static void test_err(void **state)
{
    (void)state;
    km_err e;
    char line[256];
    assert_int_equal(km_err_set(&e, KM_EIO, "read %s: %s", "/x", "boom"), KM_EIO);
    assert_string_equal(e.message, "read /x: boom");
    km_err_prefix(&e, "config %d", 2);
    assert_string_equal(e.message, "config 2: read /x: boom");
    assert_string_equal(km_err_str(&e, line, sizeof(line)), "I/O error: config 2: read /x: boom");
    assert_int_equal(km_err_set(NULL, KM_EINVAL, "x"), KM_EINVAL);
    km_err_prefix(NULL, "x");
    km_err_clear(&e);
    e.status = KM_EAPI;
    e.http_code = 409;
    snprintf(e.reason, sizeof(e.reason), "Conflict");
    snprintf(e.message, sizeof(e.message), "modified");
    assert_true(km_err_is_http(&e, 409));
    assert_false(km_err_is_http(&e, 404));
    assert_false(km_err_is_http(NULL, 409));
    assert_string_equal(km_err_str(&e, line, sizeof(line)),
                        "API error: modified (HTTP 409 Conflict)");
    assert_string_equal(km_err_str(NULL, line, sizeof(line)), "unknown error");
    assert_string_equal(km_err_str(&e, line, 4), "API");
    for (int st = KM_OK; st <= KM_ESTATE; st++)
        assert_string_not_equal(km_strerror((km_status)st), "unknown error");
    assert_string_equal(km_strerror((km_status)999), "unknown error");
    /* a long prefix and message are truncated, never overflow */
    char big[600];
    memset(big, 'p', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    km_err_set(&e, KM_EIO, "%s", big);
    km_err_prefix(&e, "%s", big);
    assert_int_equal(strlen(e.message), sizeof(e.message) - 1);
    assert_non_null(strstr(e.message, ": ppp"));
}

static void test_log_text_and_redaction(void **state)
{
    (void)state;
    km_log_level lvl;
    km_log_format fmt;
    assert_int_equal(km_log_parse_level("WARN", &lvl), KM_OK);
    assert_int_equal(lvl, KM_LOG_WARN);
    assert_int_equal(km_log_parse_level("loud", &lvl), KM_EINVAL);
    assert_int_equal(km_log_parse_level(NULL, &lvl), KM_EINVAL);
    assert_int_equal(km_log_parse_format("json", &fmt), KM_OK);
    assert_int_equal(fmt, KM_LOG_JSON);
    assert_int_equal(km_log_parse_format("xml", &fmt), KM_EINVAL);
    km_log_configure(KM_LOG_INFO, KM_LOG_TEXT);
    kmtest_log_start();
    km_log_debug("hidden", "k", "v");
    km_log_info("hello world", "ns", "kube-system", "token", "SECRET", "quoted", "a \"b\"", "empty",
                "", "n", KM_LOG_INT(42), "odd");
    km_log_warn("w", "Authorization", "Bearer SECRET", "d", KM_LOG_DBL(1.5));
    const char *t = kmtest_log_text();
    assert_null(strstr(t, "hidden"));
    assert_null(strstr(t, "SECRET"));
    assert_non_null(strstr(t, " level=info msg=\"hello world\" ns=kube-system token=[redacted] "
                              "quoted=\"a \\\"b\\\"\" empty=\"\" n=42 odd=\"\"\n"));
    assert_non_null(strstr(t, " level=warn msg=w Authorization=[redacted] d=1.500\n"));
    assert_int_equal(strncmp(t, "ts=", 3), 0);
    assert_true(km_log_enabled(KM_LOG_ERROR));
    assert_false(km_log_enabled(KM_LOG_DEBUG));
    assert_false(km_log_enabled(KM_LOG_OFF));
    kmtest_log_stop();
}

static void test_log_json(void **state)
{
    (void)state;
    km_log_configure(KM_LOG_DEBUG, KM_LOG_JSON);
    kmtest_log_start();
    km_log_debug("multi\nline\t\x01", "client-key", "PEM", "k", "v\"");
    const char *t = kmtest_log_text();
    cJSON *doc = km_json_parse(t, strlen(t) - 1);
    assert_non_null(doc);
    assert_string_equal(KM_JSON_STR(doc, "level"), "debug");
    assert_string_equal(KM_JSON_STR(doc, "msg"), "multi\nline\t\x01");
    assert_string_equal(KM_JSON_STR(doc, "client-key"), "[redacted]");
    assert_string_equal(KM_JSON_STR(doc, "k"), "v\"");
    assert_non_null(KM_JSON_STR(doc, "ts"));
    cJSON_Delete(doc);
    kmtest_log_stop();
    km_log_configure(KM_LOG_INFO, KM_LOG_TEXT);
}

static void test_json(void **state)
{
    (void)state;
    const char *text = "{\"metadata\":{\"name\":\"p\",\"annotations\":{\"a.b/c\":\"x\"},"
                       "\"generation\":3,\"flag\":true},\"list\":[1]}";
    cJSON *o = km_json_parse(text, strlen(text));
    assert_non_null(o);
    assert_string_equal(KM_JSON_STR(o, "metadata", "name"), "p");
    assert_string_equal(KM_JSON_STR(o, "metadata", "annotations", "a.b/c"), "x");
    assert_null(KM_JSON_STR(o, "metadata", "generation"));
    assert_null(KM_JSON_STR(o, "list", "x"));
    assert_null(KM_JSON_AT(o, "nope", "x"));
    assert_float_equal(KM_JSON_NUM(o, -1, "metadata", "generation"), 3, 0);
    assert_float_equal(KM_JSON_NUM(o, -1, "metadata", "name"), -1, 0);
    assert_int_equal(KM_JSON_BOOL(o, 0, "metadata", "flag"), 1);
    assert_int_equal(KM_JSON_BOOL(o, 7, "metadata", "name"), 7);
    cJSON *md = km_json_obj(o, "metadata");
    assert_int_equal(km_json_set_str(md, "name", "q"), KM_OK); /* replace */
    assert_int_equal(km_json_set_num(md, "n", 1.5), KM_OK);
    assert_int_equal(km_json_set_bool(md, "flag", 0), KM_OK);
    cJSON *spec = km_json_obj(o, "list"); /* not an object: replaced */
    assert_true(cJSON_IsObject(spec));
    char *s = km_json_print(o);
    assert_string_equal(s, "{\"metadata\":{\"name\":\"q\",\"annotations\":{\"a.b/c\":\"x\"},"
                           "\"generation\":3,\"flag\":false,\"n\":1.5},\"list\":{}}");
    free(s);
    cJSON_Delete(o);
    assert_null(km_json_parse("{\"a\":1}xyz", 3));
    o = km_json_parse("{\"a\":1}xyz", 7); /* length-bounded */
    assert_non_null(o);
    cJSON_Delete(o);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_log_text_and_redaction),
        cmocka_unit_test(test_log_json),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
