/* apierror.c — API error answers into km_err (see apierror.h). */
#include "operator/kube/apierror.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "operator/base/buf.h"
#include "operator/base/json.h"
#include "operator/base/num.h"

const char *km_apierr_reason(long code)
{
    static const struct {
        long code;
        const char *reason;
    } map[] = {{400, "BadRequest"},
               {401, "Unauthorized"},
               {403, "Forbidden"},
               {404, "NotFound"},
               {405, "MethodNotAllowed"},
               {406, "NotAcceptable"},
               {409, "Conflict"},
               {410, "Expired"},
               {413, "RequestEntityTooLarge"},
               {415, "UnsupportedMediaType"},
               {422, "Invalid"},
               {429, "TooManyRequests"},
               {500, "InternalError"},
               {503, "ServiceUnavailable"},
               {504, "Timeout"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (map[i].code == code)
            return map[i].reason;
    return "";
}

long km_apierr_retry_after(const char *value)
{
    if (!value)
        return 0;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        return errno || *end ? 0 : v;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return 0;
    time_t when = timegm(&tm);
    time_t now = time(NULL);
    return when > now ? (long)(when - now) : 0;
}

/* Appends "causes=[field: message; ...]" for details.causes. */
static void put_causes(km_buf *b, const cJSON *causes)
{
    const cJSON *c;
    int first = 1;
    if (!cJSON_IsArray(causes) || !cJSON_GetArraySize(causes))
        return;
    km_buf_puts(b, b->len ? " causes=[" : "causes=[");
    cJSON_ArrayForEach(c, causes)
    {
        const char *field = KM_JSON_STR(c, "field");
        const char *reason = KM_JSON_STR(c, "reason");
        const char *msg = KM_JSON_STR(c, "message");
        km_buf_printf(b, "%s%s: %s", first ? "" : "; ",
                      field && *field ? field
                      : reason        ? reason
                                      : "",
                      msg ? msg : "");
        first = 0;
    }
    km_buf_puts(b, "]");
}

/* Compact one-line details into out (size n). */
static void compact_details(const cJSON *d, char *out, size_t n)
{
    static const char *const keys[] = {"kind", "group", "name"};
    km_buf b;
    km_buf_init(&b, 4096);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *v = KM_JSON_STR(d, keys[i]);
        if (v && *v)
            km_buf_printf(&b, "%s%s=%s", b.len ? " " : "", keys[i], v);
    }
    put_causes(&b, KM_JSON_AT(d, "causes"));
    snprintf(out, n, "%s", km_buf_str(&b));
    km_buf_cleanup(&b);
}

/* A short printable excerpt of a non-Status body. */
static void excerpt(const char *body, size_t len, char *out, size_t n)
{
    size_t o = 0;
    int space = 0;
    for (size_t i = 0; i < len && o + 4 < n && i < 200; i++) {
        unsigned char c = (unsigned char)body[i];
        if (isspace(c) || !isprint(c)) {
            space = o > 0;
            continue;
        }
        if (space)
            out[o++] = ' ';
        space = 0;
        out[o++] = (char)c;
    }
    if (o && len > 200 && o + 4 < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Fills err from a parsed Status; 0 when doc is not a Status. */
static int from_status(const cJSON *doc, km_err *err)
{
    const char *kind = KM_JSON_STR(doc, "kind");
    if (!kind || strcmp(kind, "Status") != 0)
        return 0;
    const char *reason = KM_JSON_STR(doc, "reason");
    const char *msg = KM_JSON_STR(doc, "message");
    if (reason && *reason)
        snprintf(err->reason, sizeof(err->reason), "%s", reason);
    if (msg && *msg)
        snprintf(err->message, sizeof(err->message), "%s", msg);
    const cJSON *d = KM_JSON_AT(doc, "details");
    if (cJSON_IsObject(d))
        compact_details(d, err->details, sizeof(err->details));
    double ra = KM_JSON_NUM(doc, 0, "details", "retryAfterSeconds");
    if (ra > 0 && ra < 86400)
        err->retry_after = km_num_long(ra, 0);
    return 1;
}

void km_apierr_parse(long code, const char *body, size_t len, const char *retry_after_hdr,
                     km_err *err)
{
    if (!err)
        return;
    km_err_clear(err);
    err->status = KM_EAPI;
    err->http_code = code;
    cJSON *doc = body && len ? km_json_parse(body, len) : NULL;
    int is_status = doc && from_status(doc, err);
    cJSON_Delete(doc);
    if (!err->reason[0])
        snprintf(err->reason, sizeof(err->reason), "%s", km_apierr_reason(code));
    if (!err->message[0] && is_status) {
        snprintf(err->message, sizeof(err->message), "HTTP %ld", code);
    } else if (!err->message[0]) {
        char ex[240];
        excerpt(body ? body : "", body ? len : 0, ex, sizeof(ex));
        snprintf(err->message, sizeof(err->message), "HTTP %ld (%s%s)", code,
                 ex[0] ? "non-Status body: " : "empty body", ex);
    }
    long hdr = km_apierr_retry_after(retry_after_hdr);
    if (hdr > 0)
        err->retry_after = hdr;
}
