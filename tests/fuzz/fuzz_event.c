/* fuzz_event.c — one watch line parsed into an event (watch/event.h).
 *
 * Input: the line.  On success the event must hold an object that is a JSON object, a known type,
 * and a resourceVersion that is a string of it; taking the object must leave the event freeable;
 * on failure the event must be untouched. */
#include <cjson/cJSON.h>

#include "operator/base/err.h"
#include "tests/fuzz/fuzz.h"
#include "watch/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = fuzz_exact((const char *)data, size);
    if (!line)
        return 0;
    km_event ev;
    memset(&ev, 0xA5, sizeof(ev));
    km_event before = ev;
    km_err err = {0};
    km_status st = km_event_parse(line, size, &ev, &err);
    if (st != KM_OK) {
        FUZZ_CHECK(memcmp(&ev, &before, sizeof(ev)) == 0);
        FUZZ_CHECK(memchr(err.message, '\0', sizeof(err.message)) != NULL);
        free(line);
        return 0;
    }
    FUZZ_CHECK(ev.doc != NULL && ev.object != NULL && cJSON_IsObject(ev.object));
    FUZZ_CHECK(ev.type >= KM_EV_ADDED && ev.type <= KM_EV_ERROR);
    FUZZ_CHECK(strcmp(km_event_type_name(ev.type), "UNKNOWN") != 0);
    if (ev.resource_version)
        FUZZ_CHECK(strlen(ev.resource_version) < size);
    FUZZ_CHECK(ev.expired == 0 || ev.type == KM_EV_ERROR);
    if (size && (data[size - 1] & 1)) {
        cJSON *obj = km_event_take_object(&ev);
        FUZZ_CHECK(obj != NULL && ev.object == NULL);
        km_event_cleanup(&ev);
        char *printed = cJSON_PrintUnformatted(obj);
        free(printed);
        cJSON_Delete(obj);
    } else {
        km_event_cleanup(&ev);
    }
    free(line);
    return 0;
}
