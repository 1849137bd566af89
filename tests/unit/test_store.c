/* test_store.c — the object cache: keys, deep copies, visitors, whole-set replacement with the
 * missed-delete diff, concurrent readers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "operator/base/json.h"
#include "watch/store.h"

static cJSON *mkobj(const char *ns, const char *name, const char *rv)
{
    char buf[256];
    if (ns)
        snprintf(buf, sizeof(buf),
                 "{\"metadata\":{\"namespace\":\"%s\",\"name\":\"%s\",\"resourceVersion\":\"%s\"}}",
                 ns, name, rv);
    else
        snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"%s\",\"resourceVersion\":\"%s\"}}",
                 name, rv);
    cJSON *o = cJSON_Parse(buf);
    assert_non_null(o);
    return o;
}

static void test_key(void **state)
{
    (void)state;
    char key[KM_STORE_KEY_MAX];
    cJSON *o = mkobj("kube-system", "a", "1");
    assert_int_equal(km_store_key(o, key, sizeof(key)), KM_OK);
    assert_string_equal(key, "kube-system/a");
    assert_int_equal(km_store_key(o, key, 5), KM_ETOOBIG);
    cJSON_Delete(o);
    o = mkobj(NULL, "node1", "1");
    assert_int_equal(km_store_key(o, key, sizeof(key)), KM_OK);
    assert_string_equal(key, "node1");
    cJSON_Delete(o);
    o = cJSON_Parse("{\"metadata\":{}}");
    assert_int_equal(km_store_key(o, key, sizeof(key)), KM_EINVAL);
    cJSON_Delete(o);
}

static void test_put_get_delete(void **state)
{
    (void)state;
    km_store *s = NULL;
    assert_int_equal(km_store_new(&s), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "a", "1")), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "b", "1")), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "a", "2")), KM_OK); /* replaces */
    assert_int_equal(km_store_len(s), 2);

    cJSON *copy = NULL;
    assert_int_equal(km_store_get(s, "ns/a", &copy), KM_OK);
    assert_string_equal(KM_JSON_STR(copy, "metadata", "resourceVersion"), "2");
    /* a deep copy: changing it leaves the store alone */
    km_json_set_str(km_json_obj(copy, "metadata"), "resourceVersion", "99");
    cJSON_Delete(copy);
    copy = NULL;
    assert_int_equal(km_store_get(s, "ns/a", &copy), KM_OK);
    assert_string_equal(KM_JSON_STR(copy, "metadata", "resourceVersion"), "2");
    cJSON_Delete(copy);

    cJSON *untouched = (cJSON *)0x1;
    assert_int_equal(km_store_get(s, "ns/zzz", &untouched), KM_ENOTFOUND);
    assert_ptr_equal(untouched, (cJSON *)0x1);

    cJSON *bad = cJSON_Parse("{\"kind\":\"X\"}");
    assert_int_equal(km_store_put(s, bad), KM_EINVAL); /* caller still owns it */
    cJSON_Delete(bad);

    assert_int_equal(km_store_delete(s, "ns/b"), KM_OK);
    assert_int_equal(km_store_delete(s, "ns/b"), KM_ENOTFOUND);
    assert_int_equal(km_store_len(s), 1);
    km_store_free(s);
    km_store_free(NULL);
}

static int view_rv(const char *key, const cJSON *obj, void *user)
{
    (void)key;
    snprintf(user, 16, "%s", KM_JSON_STR(obj, "metadata", "resourceVersion"));
    return 0;
}

typedef struct each_acc {
    int n;
    int stop_after;
} each_acc;

static int each_count(const char *key, const cJSON *obj, void *user)
{
    (void)key;
    (void)obj;
    each_acc *a = user;
    a->n++;
    return a->stop_after && a->n >= a->stop_after;
}

static void test_view_each(void **state)
{
    (void)state;
    km_store *s = NULL;
    assert_int_equal(km_store_new(&s), KM_OK);
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        assert_int_equal(km_store_put(s, mkobj(NULL, name, "5")), KM_OK);
    }
    char rv[16] = "";
    assert_int_equal(km_store_view(s, "n42", view_rv, rv), KM_OK);
    assert_string_equal(rv, "5");
    assert_int_equal(km_store_view(s, "nope", view_rv, rv), KM_ENOTFOUND);
    each_acc a = {0, 0};
    km_store_each(s, each_count, &a);
    assert_int_equal(a.n, 100);
    each_acc b = {0, 10};
    km_store_each(s, each_count, &b);
    assert_int_equal(b.n, 10);
    km_store_free(s);
}

typedef struct changes {
    char lines[16][400];
    int n;
    km_store *store; /* handlers read the store (must not deadlock) */
} changes;

static void change_cb(km_event_type type, const cJSON *obj, void *user)
{
    changes *c = user;
    char key[KM_STORE_KEY_MAX];
    assert_int_equal(km_store_key(obj, key, sizeof(key)), KM_OK);
    assert_true(c->n < 16);
    snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s %s %s", km_event_type_name(type), key,
             KM_JSON_STR(obj, "metadata", "resourceVersion"));
    cJSON *copy = NULL;
    km_status st = km_store_get(c->store, key, &copy);
    /* the store already holds the new contents when handlers run */
    assert_int_equal(st, type == KM_EV_DELETED ? KM_ENOTFOUND : KM_OK);
    cJSON_Delete(copy);
}

static int has_line(const changes *c, const char *line)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->lines[i], line) == 0)
            return 1;
    return 0;
}

static void test_replace_diff(void **state)
{
    (void)state;
    km_store *s = NULL;
    assert_int_equal(km_store_new(&s), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "same", "1")), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "changed", "1")), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("ns", "gone", "1")), KM_OK);
    assert_int_equal(km_store_put(s, mkobj("other", "gone2", "3")), KM_OK);

    km_store_snapshot *snap = NULL;
    assert_int_equal(km_store_snapshot_new(&snap), KM_OK);
    cJSON *o = mkobj("ns", "same", "1");
    assert_int_equal(km_store_snapshot_add(snap, o), KM_OK); /* copies */
    cJSON_Delete(o);
    o = mkobj("ns", "changed", "7");
    assert_int_equal(km_store_snapshot_add(snap, o), KM_OK);
    cJSON_Delete(o);
    o = mkobj("ns", "new", "8");
    assert_int_equal(km_store_snapshot_add(snap, o), KM_OK);
    assert_int_equal(km_store_snapshot_add(snap, o), KM_OK); /* same key again: replaced */
    cJSON_Delete(o);
    o = cJSON_Parse("{\"metadata\":{}}");
    assert_int_equal(km_store_snapshot_add(snap, o), KM_EINVAL);
    cJSON_Delete(o);
    assert_int_equal(km_store_snapshot_len(snap), 3);

    changes c;
    memset(&c, 0, sizeof(c));
    c.store = s;
    km_store_replace(s, snap, change_cb, &c);
    assert_int_equal(c.n, 4);
    /* deletes first (missed while disconnected), then adds / modifications */
    assert_true(strncmp(c.lines[0], "DELETED", 7) == 0);
    assert_true(strncmp(c.lines[1], "DELETED", 7) == 0);
    assert_true(has_line(&c, "DELETED ns/gone 1"));
    assert_true(has_line(&c, "DELETED other/gone2 3"));
    assert_true(has_line(&c, "MODIFIED ns/changed 7"));
    assert_true(has_line(&c, "ADDED ns/new 8"));
    assert_int_equal(km_store_len(s), 3);

    /* the same contents again: nothing to report */
    assert_int_equal(km_store_snapshot_new(&snap), KM_OK);
    o = mkobj("ns", "same", "1");
    km_store_snapshot_add(snap, o);
    cJSON_Delete(o);
    memset(&c, 0, sizeof(c));
    c.store = s;
    km_store_replace(s, snap, change_cb, &c);
    assert_int_equal(c.n, 2); /* ns/changed and ns/new vanished */
    assert_true(has_line(&c, "DELETED ns/changed 7"));
    assert_true(has_line(&c, "DELETED ns/new 8"));

    /* NULL handler, empty snapshot */
    assert_int_equal(km_store_snapshot_new(&snap), KM_OK);
    km_store_replace(s, snap, NULL, NULL);
    assert_int_equal(km_store_len(s), 0);
    km_store_snapshot_free(NULL);
    km_store_free(s);
}

typedef struct reader_arg {
    km_store *s;
    atomic_int *stop;
    int reads;
} reader_arg;

static void *reader(void *p)
{
    reader_arg *a = p;
    while (!atomic_load(a->stop)) {
        cJSON *o = NULL;
        if (km_store_get(a->s, "ns/k3", &o) == KM_OK) {
            assert_non_null(KM_JSON_STR(o, "metadata", "resourceVersion"));
            cJSON_Delete(o);
        }
        each_acc acc = {0, 0};
        km_store_each(a->s, each_count, &acc);
        assert_true(acc.n <= 10);
        a->reads++;
    }
    return NULL;
}

/* Readers on other threads while the writer puts, deletes and replaces. */
static void test_concurrent_readers(void **state)
{
    (void)state;
    km_store *s = NULL;
    assert_int_equal(km_store_new(&s), KM_OK);
    atomic_int stop = 0;
    reader_arg args[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (reader_arg){s, &stop, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader, &args[i]), 0);
    }
    for (int round = 0; round < 300; round++) {
        char name[16], rv[16];
        snprintf(name, sizeof(name), "k%d", round % 10);
        snprintf(rv, sizeof(rv), "%d", round);
        assert_int_equal(km_store_put(s, mkobj("ns", name, rv)), KM_OK);
        if (round % 7 == 0)
            km_store_delete(s, "ns/k3");
        if (round % 50 == 0) {
            km_store_snapshot *snap = NULL;
            assert_int_equal(km_store_snapshot_new(&snap), KM_OK);
            for (int j = 0; j < 5; j++) {
                snprintf(name, sizeof(name), "k%d", j);
                cJSON *o = mkobj("ns", name, rv);
                km_store_snapshot_add(snap, o);
                cJSON_Delete(o);
            }
            km_store_replace(s, snap, NULL, NULL);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    assert_true(km_store_len(s) <= 10);
    km_store_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_put_get_delete),
        cmocka_unit_test(test_view_each),
        cmocka_unit_test(test_replace_diff),
        cmocka_unit_test(test_concurrent_readers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
