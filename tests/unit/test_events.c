/* test_events.c — operator/kube/events: recording never blocks (the sender writes the queue in
 * order), identical Events are counted on one Event, client-go's correlator combines similar
 * Events from the 10th different message and drops a flood of one reason (25 per 5 min) without
 * hiding another reason; the log-only recorder writes nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "operator/kube/events.h"
#include "tests/unit/support/kmtest.h"

/* What the fake API server saw (the sender's thread writes, the test reads after a flush). */
typedef struct seen {
    pthread_mutex_t lock;
    int creates, patches;
    char last_patch[1024];
    char messages[64][160]; /* created Events' messages, in order */
} seen;

static km_status fake(const km_kube_req *req, const char *token, km_kube_reply *reply, km_buf *body,
                      km_err *err, void *user)
{
    (void)token, (void)err;
    seen *s = user;
    pthread_mutex_lock(&s->lock);
    if (strcmp(req->method, "POST") == 0) {
        cJSON *ev = cJSON_ParseWithLength(req->body, req->body_len);
        const cJSON *m = cJSON_GetObjectItem(ev, "message");
        if (s->creates < 64)
            snprintf(s->messages[s->creates], sizeof(s->messages[0]), "%s",
                     cJSON_IsString(m) ? m->valuestring : "");
        cJSON_Delete(ev);
        s->creates++;
        reply->code = 201;
    } else {
        snprintf(s->last_patch, sizeof(s->last_patch), "%.*s", (int)req->body_len, req->body);
        s->patches++;
        reply->code = 200;
    }
    pthread_mutex_unlock(&s->lock);
    return km_buf_append(body, "{}", 2);
}

typedef struct fixture {
    char dir[256];
    km_kubeconfig *cfg;
    km_kube *k;
    seen s;
    cJSON *obj;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    pthread_mutex_init(&f->s.lock, NULL);
    kmtest_mkdtemp(f->dir, sizeof(f->dir));
    km_kube_opts o;
    km_kube_opts_default(&o);
    o.adaptive = 0;
    kmtest_fake_client(f->dir, &o, fake, &f->s, &f->cfg, &f->k); /* cloned into the recorder */
    f->obj = cJSON_Parse("{\"apiVersion\":\"kubemend.io/v1alpha1\",\"kind\":\"ClusterRecovery\","
                         "\"metadata\":{\"name\":\"r\",\"uid\":\"u-1\"}}");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    cJSON_Delete(f->obj);
    km_kube_free(f->k);
    km_kubeconfig_free(f->cfg);
    kmtest_rmdir(f->dir);
    pthread_mutex_destroy(&f->s.lock);
    free(f);
    return 0;
}

static void test_identical_events_are_counted_on_one(void **state)
{
    fixture *f = *state;
    km_events *ev = NULL;
    km_err e;
    assert_int_equal(km_events_new(f->k, NULL, &ev, &e), KM_OK);
    for (int i = 0; i < 3; i++)
        km_events_record(ev, f->obj, "Normal", "StepStarted", "step tokens started");
    assert_int_equal(km_events_flush(ev, 10), 1);
    assert_int_equal(f->s.creates, 1);
    assert_int_equal(f->s.patches, 2);
    assert_non_null(strstr(f->s.last_patch, "\"count\":3"));
    assert_int_equal(km_events_created(ev), 1);
    assert_int_equal(km_events_aggregated(ev), 2);
    assert_int_equal(km_events_dropped(ev), 0);
    km_events_free(ev);
}

static void test_similar_events_combined_then_flood_dropped(void **state)
{
    fixture *f = *state;
    km_events *ev = NULL;
    km_err e;
    char msg[64];
    assert_int_equal(km_events_new(f->k, NULL, &ev, &e), KM_OK);
    for (int i = 0; i < 40; i++) {
        snprintf(msg, sizeof(msg), "approved CSR csr-%02d", i);
        km_events_record(ev, f->obj, "Normal", "CSRApproved", msg);
    }
    km_events_record(ev, f->obj, "Normal", "Completed", "recovery completed"); /* another reason */
    km_events_free(ev); /* drains the queue */
    /* 9 different messages created; from the 10th one combined Event, counted by PATCHes up to
     * the bucket of 25; the other 15 dropped; Completed still created. */
    assert_int_equal(f->s.creates, 9 + 1 + 1);
    assert_int_equal(f->s.patches, 25 - 10);
    assert_string_equal(f->s.messages[0], "approved CSR csr-00");
    assert_string_equal(f->s.messages[8], "approved CSR csr-08");
    assert_string_equal(f->s.messages[9], "(combined from similar events): approved CSR csr-09");
    assert_string_equal(f->s.messages[10], "recovery completed");
    assert_non_null(strstr(f->s.last_patch, "approved CSR csr-24"));
}

static void test_log_only_recorder_writes_nothing(void **state)
{
    fixture *f = *state;
    km_events *ev = NULL;
    km_err e;
    assert_int_equal(km_events_new(NULL, NULL, &ev, &e), KM_OK);
    km_events_record(ev, f->obj, "Warning", "Failed", "x");
    assert_int_equal(km_events_flush(ev, 1), 1);
    km_events_record(NULL, f->obj, "Warning", "Failed", "x"); /* NULL recorder: logs */
    km_events_free(ev);
    assert_int_equal(f->s.creates + f->s.patches, 0);
}

int main(void)
{
    km_kube_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_identical_events_are_counted_on_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_similar_events_combined_then_flood_dropped, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_log_only_recorder_writes_nothing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
