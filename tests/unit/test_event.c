/* test_event.c — watch line parsing: every type, ERROR 410 -> expired, malformed lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "watch/event.h"

static km_status parse(const char *s, km_event *ev, km_err *err)
{
    return km_event_parse(s, strlen(s), ev, err);
}

static void test_types(void **state)
{
    (void)state;
    const char *names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK"};
    for (int i = 0; i < 4; i++) {
        char line[256];
        snprintf(line, sizeof(line),
                 "{\"type\":\"%s\",\"object\":{\"kind\":\"Secret\",\"metadata\":"
                 "{\"name\":\"x\",\"resourceVersion\":\"%d\"}}}",
                 names[i], 100 + i);
        km_event ev;
        assert_int_equal(parse(line, &ev, NULL), KM_OK);
        assert_int_equal(ev.type, (km_event_type)i);
        assert_string_equal(km_event_type_name(ev.type), names[i]);
        char rv[16];
        snprintf(rv, sizeof(rv), "%d", 100 + i);
        assert_string_equal(ev.resource_version, rv);
        assert_int_equal(ev.expired, 0);
        km_event_cleanup(&ev);
    }
    assert_string_equal(km_event_type_name((km_event_type)99), "UNKNOWN");
}

/* The exact ERROR line a 1.19 apiserver sends for a too old resourceVersion. */
static void test_error_expired(void **state)
{
    (void)state;
    const char *line = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\","
                       "\"metadata\":{},\"status\":\"Failure\",\"message\":\"too old resource "
                       "version: 1 (271)\",\"reason\":\"Expired\",\"code\":410}}";
    km_event ev;
    assert_int_equal(parse(line, &ev, NULL), KM_OK);
    assert_int_equal(ev.type, KM_EV_ERROR);
    assert_int_equal(ev.code, 410);
    assert_int_equal(ev.expired, 1);
    assert_null(ev.resource_version);
    km_event_cleanup(&ev);

    const char *other = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"status\":"
                        "\"Failure\",\"message\":\"etcd down\",\"reason\":\"InternalError\","
                        "\"code\":500}}";
    assert_int_equal(parse(other, &ev, NULL), KM_OK);
    assert_int_equal(ev.code, 500);
    assert_int_equal(ev.expired, 0);
    km_event_cleanup(&ev);

    /* reason Gone without a code still means relist */
    assert_int_equal(parse("{\"type\":\"ERROR\",\"object\":{\"reason\":\"Gone\"}}", &ev, NULL),
                     KM_OK);
    assert_int_equal(ev.expired, 1);
    km_event_cleanup(&ev);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *bad[] = {
        "{\"type\":\"ADDED\",\"object\":{\"data\":{\"token\":\"c2VjcmV0LXZhbHVl\"}",
        "[1,2,3]",
        "{\"object\":{}}",
        "{\"type\":7,\"object\":{}}",
        "{\"type\":\"UPSERTED\",\"object\":{}}",
        "{\"type\":\"ADDED\"}",
        "{\"type\":\"ADDED\",\"object\":\"x\"}",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        km_event ev;
        memset(&ev, 0x5a, sizeof(ev));
        km_err err;
        km_err_clear(&err);
        assert_int_equal(parse(bad[i], &ev, &err), KM_EPARSE);
        assert_int_equal(err.status, KM_EPARSE);
        assert_true(err.message[0] != '\0');
        /* never quotes the line (it may carry Secret data) */
        assert_null(strstr(err.message, "c2VjcmV0"));
        /* output untouched */
        unsigned char *p = (unsigned char *)&ev;
        for (size_t j = 0; j < sizeof(ev); j++)
            assert_int_equal(p[j], 0x5a);
    }
}

/* Lines need not be NUL-terminated: only len bytes are read. */
static void test_not_terminated(void **state)
{
    (void)state;
    const char buf[] = "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}GARBAGE";
    km_event ev;
    assert_int_equal(km_event_parse(buf, strlen(buf) - 7, &ev, NULL), KM_OK);
    assert_int_equal(ev.type, KM_EV_DELETED);
    km_event_cleanup(&ev);
    assert_int_equal(km_event_parse(buf, strlen(buf), &ev, NULL), KM_EPARSE);
}

static void test_take_object(void **state)
{
    (void)state;
    km_event ev;
    assert_int_equal(parse("{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\","
                           "\"resourceVersion\":\"7\"}}}",
                           &ev, NULL),
                     KM_OK);
    cJSON *obj = km_event_take_object(&ev);
    assert_non_null(obj);
    assert_null(ev.object);
    assert_null(km_event_take_object(&ev));
    const char *rv = ev.resource_version;
    km_event_cleanup(&ev);
    /* the rv pointer belongs to the taken object and outlives the event */
    assert_string_equal(rv, "7");
    assert_null(cJSON_GetObjectItem(obj, "type"));
    cJSON_Delete(obj);
    km_event_cleanup(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_types),       cmocka_unit_test(test_error_expired),
        cmocka_unit_test(test_malformed),   cmocka_unit_test(test_not_terminated),
        cmocka_unit_test(test_take_object),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
