/* log.c — leveled key=value / JSON logging. */
#include "operator/base/clock.h"
#include "operator/base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "operator/base/buf.h"

static km_log_level g_min = KM_LOG_INFO;
static km_log_format g_format = KM_LOG_TEXT;
static km_log_sink_fn g_sink;
static void *g_sink_user;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void km_log_configure(km_log_level min, km_log_format format)
{
    g_min = min;
    g_format = format;
}

km_status km_log_parse_level(const char *s, km_log_level *out)
{
    for (int i = 0; i <= KM_LOG_OFF; i++) {
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (km_log_level)i;
            return KM_OK;
        }
    }
    return KM_EINVAL;
}

km_status km_log_parse_format(const char *s, km_log_format *out)
{
    if (s && strcmp(s, "text") == 0)
        *out = KM_LOG_TEXT;
    else if (s && strcmp(s, "json") == 0)
        *out = KM_LOG_JSON;
    else
        return KM_EINVAL;
    return KM_OK;
}

void km_log_set_sink(km_log_sink_fn fn, void *user)
{
    pthread_mutex_lock(&g_lock);
    g_sink = fn;
    g_sink_user = user;
    pthread_mutex_unlock(&g_lock);
}

int km_log_enabled(km_log_level level)
{
    return level >= g_min && level < KM_LOG_OFF;
}

const char *km_log_fmt_int(char *buf, long long v)
{
    snprintf(buf, 24, "%lld", v);
    return buf;
}

const char *km_log_fmt_double(char *buf, double v)
{
    snprintf(buf, 32, "%.3f", v);
    return buf;
}

static int is_secret_key(const char *k)
{
    static const char *const names[] = {"token", "password", "authorization", "client-key",
                                        "bearer"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcasecmp(k, names[i]) == 0)
            return 1;
    return 0;
}

/* Appends s as a JSON string body (without quotes). */
static void put_json_escaped(km_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            km_buf_printf(b, "\\%c", c);
        else if (c == '\n')
            km_buf_puts(b, "\\n");
        else if (c == '\t')
            km_buf_puts(b, "\\t");
        else if (c < 0x20)
            km_buf_printf(b, "\\u%04x", c);
        else
            km_buf_append(b, s, 1);
    }
}

/* Appends a text-format value, quoted when it has spaces, quotes, '=' or is empty. */
static void put_text_value(km_buf *b, const char *s)
{
    if (*s && !strpbrk(s, " \t\n\"=\\")) {
        km_buf_puts(b, s);
        return;
    }
    km_buf_puts(b, "\"");
    put_json_escaped(b, s);
    km_buf_puts(b, "\"");
}

void km_log_write(km_log_level level, const char *msg, const char *const *kv, size_t nkv)
{
    if (!km_log_enabled(level))
        return;
    char ts[KM_CLOCK_TEXT_MAX];
    km_clock_format(km_clock_wall(), 3, ts, sizeof(ts));

    km_buf b;
    km_buf_init(&b, 64 * 1024);
    if (g_format == KM_LOG_JSON) {
        km_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[level]);
        put_json_escaped(&b, msg ? msg : "");
        km_buf_puts(&b, "\"");
    } else {
        km_buf_printf(&b, "ts=%s level=%s msg=", ts, level_names[level]);
        put_text_value(&b, msg ? msg : "");
    }
    for (size_t i = 0; i < nkv; i += 2) {
        const char *k = kv[i] ? kv[i] : "";
        const char *v = i + 1 < nkv && kv[i + 1] ? kv[i + 1] : "";
        if (is_secret_key(k))
            v = "[redacted]";
        if (g_format == KM_LOG_JSON) {
            km_buf_puts(&b, ",\"");
            put_json_escaped(&b, k);
            km_buf_puts(&b, "\":\"");
            put_json_escaped(&b, v);
            km_buf_puts(&b, "\"");
        } else {
            km_buf_printf(&b, " %s=", k);
            put_text_value(&b, v);
        }
    }
    if (g_format == KM_LOG_JSON)
        km_buf_puts(&b, "}");

    pthread_mutex_lock(&g_lock);
    if (g_sink) {
        g_sink(level, km_buf_str(&b), g_sink_user);
    } else {
        km_buf_puts(&b, "\n");
        fwrite(km_buf_str(&b), 1, b.len, stderr);
        fflush(stderr);
    }
    pthread_mutex_unlock(&g_lock);
    km_buf_cleanup(&b);
}
