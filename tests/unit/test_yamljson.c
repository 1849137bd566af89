/* test_yamljson.c — YAML -> JSON: the core-schema scalar table (classified without regex), and
 * the bounds of issue 16 item 3: an alias bomb, deep nesting and a mapping of many keys are
 * refused or parsed in time and memory proportional to the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/buf.h"
#include "operator/base/yamljson.h"

/* Parses "v: <plain>" and returns the printed JSON of v (static buffer). */
static const char *scalar(const char *plain)
{
    static char out[256];
    char doc[256];
    snprintf(doc, sizeof(doc), "v: %s\n", plain);
    cJSON *j = NULL;
    km_err e;
    if (km_yaml_parse(doc, strlen(doc), &j, &e) != KM_OK)
        fail_msg("%s: %s", plain, e.message);
    char *p = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "v"));
    snprintf(out, sizeof(out), "%s", p);
    free(p);
    cJSON_Delete(j);
    return out;
}

static void test_core_schema(void **state)
{
    (void)state;
    static const char *const table[][2] = {
        {"~", "null"},          {"null", "null"},
        {"NULL", "null"},       {"true", "true"},
        {"False", "false"},     {"42", "42"},
        {"-7", "-7"},           {"+3", "3"},
        {"0x1F", "31"},         {"0o17", "15"},
        {"1.5", "1.5"},         {".5", "0.5"},
        {"-2.", "-2"},          {"1e3", "1000"},
        {"2.5E-1", "0.25"},     {"abc", "\"abc\""},
        {"1.2.3", "\"1.2.3\""}, {"-x", "\"-x\""},
        {"+", "\"+\""},         {".", "\".\""},
        {"1e", "\"1e\""},       {"e5", "\"e5\""},
        {"0x", "\"0x\""},       {"0o8", "\"0o8\""},
        {"0xG", "\"0xG\""},     {"12abc", "\"12abc\""},
        {"1_000", "\"1_000\""}, {"-.inf", "-1e+309"},
        {".nan", "\".nan\""},   {"ns-01", "\"ns-01\""},
        {"'42'", "\"42\""},     {"!!str 42", "\"42\""},
        {"--1", "\"--1\""},
    };
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *got = scalar(table[i][0]);
        if (strcmp(table[i][0], "-.inf") == 0) {
            assert_true(strcmp(got, "null") == 0 || strstr(got, "e+") != NULL);
            continue;
        }
        if (strcmp(got, table[i][1]) != 0)
            fail_msg("%s -> %s, want %s", table[i][0], got, table[i][1]);
    }
}

static km_status parse(const char *s, cJSON **out, km_err *e)
{
    return km_yaml_parse(s, strlen(s), out, e);
}

/* The billion laughs: 9 levels of 9 aliases, ~500 bytes, 387 million strings expanded. */
static void test_alias_bomb(void **state)
{
    (void)state;
    km_buf b;
    km_buf_init(&b, 0);
    km_buf_puts(&b, "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for (int i = 1; i < 10; i++) {
        km_buf_printf(&b, "a%d: &a%d [", i, i);
        for (int j = 0; j < 9; j++)
            km_buf_printf(&b, "%s*a%d", j ? ", " : "", i - 1);
        km_buf_puts(&b, "]\n");
    }
    cJSON *out = (cJSON *)0x1;
    km_err e;
    assert_int_equal(parse(km_buf_str(&b), &out, &e), KM_EPARSE);
    assert_ptr_equal(out, (cJSON *)0x1);
    assert_non_null(strstr(e.message, "document too large"));
    km_buf_cleanup(&b);
    /* small aliases still work */
    assert_int_equal(parse("a: &x {k: [1, 2]}\nb: *x\nc: *x\n", &out, &e), KM_OK);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(out, "c"), "k")),
                     2);
    cJSON_Delete(out);
}

static void test_depth(void **state)
{
    (void)state;
    km_buf b;
    km_buf_init(&b, 0);
    for (int i = 0; i < 100000; i++)
        km_buf_puts(&b, "[");
    for (int i = 0; i < 100000; i++)
        km_buf_puts(&b, "]");
    cJSON *out = NULL;
    km_err e;
    assert_int_equal(parse(km_buf_str(&b), &out, &e), KM_EPARSE);
    assert_non_null(strstr(e.message, "nesting deeper than 64"));
    assert_int_equal(km_yaml_check(b.data, b.len, &e), KM_EPARSE);
    assert_non_null(strstr(e.message, "nesting deeper than 64"));
    assert_int_equal(km_yaml_check("a: &x [1]\nb: *x\n", 16, NULL), KM_OK);
    km_buf_cleanup(&b);
}

/* 100k keys in one mapping: the duplicate check is a hash lookup, not a scan (it was quadratic),
 * and a duplicate among them is still found. */
static void test_many_keys(void **state)
{
    (void)state;
    km_buf b;
    km_buf_init(&b, 0);
    for (int i = 0; i < 100000; i++)
        km_buf_printf(&b, "k%06d: %d\n", i, i);
    cJSON *out = NULL;
    km_err e;
    assert_int_equal(parse(km_buf_str(&b), &out, &e), KM_OK);
    assert_int_equal(cJSON_GetArraySize(out), 100000);
    cJSON_Delete(out);
    km_buf_puts(&b, "k000007: again\n");
    assert_int_equal(parse(km_buf_str(&b), &out, &e), KM_EPARSE);
    assert_non_null(strstr(e.message, "duplicate key \"k000007\""));
    km_buf_cleanup(&b);
}

/* Beyond the node budget without aliases: refused with the same message. */
static void test_budget(void **state)
{
    (void)state;
    km_buf b;
    km_buf_init(&b, 0);
    km_buf_puts(&b, "[");
    for (int i = 0; i < KM_YAML_MAX_NODES + 1; i++)
        km_buf_puts(&b, "1,");
    km_buf_puts(&b, "1]");
    cJSON *out = NULL;
    km_err e;
    assert_int_equal(parse(km_buf_str(&b), &out, &e), KM_EPARSE);
    assert_non_null(strstr(e.message, "document too large"));
    assert_int_equal(km_yaml_check(b.data, b.len, &e), KM_EPARSE);
    km_buf_cleanup(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_schema), cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_depth),       cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_budget),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
