/* log.h — leveled, structured logging to stderr.
 *
 *   km_log_info("watch restarted", "resource", "pods", "attempt", KM_LOG_INT(n));
 *
 * The first argument is the message; the rest are key/value string pairs.  The level is checked
 * before any argument is evaluated, so formatting costs nothing when a level is off.  Output is
 * one line per call: key=value text (default) or JSON (--log-format=json).  Values under keys
 * that name credentials ("token", "password", "authorization", "client-key") are replaced by
 * "[redacted]" as a last line of defence: callers must never pass Secret data at all.
 * Thread-safe: each line is written with one call under a mutex. */
#ifndef KM_LOG_H
#define KM_LOG_H

#include <stddef.h>

#include "operator/base/err.h"

typedef enum km_log_level {
    KM_LOG_DEBUG = 0,
    KM_LOG_INFO,
    KM_LOG_WARN,
    KM_LOG_ERROR,
    KM_LOG_OFF,
} km_log_level;

typedef enum km_log_format { KM_LOG_TEXT = 0, KM_LOG_JSON } km_log_format;

/* Sink for formatted lines (tests capture output with it); line has no trailing newline. */
typedef void (*km_log_sink_fn)(km_log_level level, const char *line, void *user);

/* Sets the minimum level and the format.  Not thread-safe against concurrent logging; call at
 * start-up. */
void km_log_configure(km_log_level min, km_log_format format);

/* Parses "debug|info|warn|error|off" into *out.  KM_EINVAL (out untouched) for anything else. */
km_status km_log_parse_level(const char *s, km_log_level *out);

/* Parses "text|json".  KM_EINVAL (out untouched) for anything else. */
km_status km_log_parse_format(const char *s, km_log_format *out);

/* Replaces the stderr sink (NULL restores stderr). */
void km_log_set_sink(km_log_sink_fn fn, void *user);

/* Non-zero when messages at `level` are emitted. */
int km_log_enabled(km_log_level level);

/* Writes one record: kv holds nkv strings, alternating key and value (a trailing odd key gets an
 * empty value; NULL values print as ""). Never fails visibly: on allocation failure the line is
 * truncated. */
void km_log_write(km_log_level level, const char *msg, const char *const *kv, size_t nkv);

/* Formats v into buf (at least 24 bytes) and returns buf. */
const char *km_log_fmt_int(char *buf, long long v);

/* Formats v with 3 decimals into buf (at least 32 bytes) and returns buf. */
const char *km_log_fmt_double(char *buf, double v);

#define KM_LOG(lvl, ...)                                                                           \
    do {                                                                                           \
        if (km_log_enabled(lvl)) {                                                                 \
            const char *km_log_kv_[] = {__VA_ARGS__};                                              \
            km_log_write((lvl), km_log_kv_[0], km_log_kv_ + 1,                                     \
                         sizeof(km_log_kv_) / sizeof(km_log_kv_[0]) - 1);                          \
        }                                                                                          \
    } while (0)

/* Integer / double values for key=value pairs; the storage lives until the end of the KM_LOG. */
#define KM_LOG_INT(v) km_log_fmt_int((char[24]){0}, (long long)(v))
#define KM_LOG_DBL(v) km_log_fmt_double((char[32]){0}, (double)(v))

#define km_log_debug(...) KM_LOG(KM_LOG_DEBUG, __VA_ARGS__)
#define km_log_info(...) KM_LOG(KM_LOG_INFO, __VA_ARGS__)
#define km_log_warn(...) KM_LOG(KM_LOG_WARN, __VA_ARGS__)
#define km_log_error(...) KM_LOG(KM_LOG_ERROR, __VA_ARGS__)

#endif
