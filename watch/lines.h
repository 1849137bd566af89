/* lines.h — incremental newline splitter for streamed bodies (watch streams).
 *
 * Feed it the chunks libcurl's write callback receives, in order; it calls the line callback
 * exactly once per complete non-empty line (the '\n' and a trailing '\r' stripped).  Every byte
 * is scanned once: a chunk is searched only from where the previous search stopped, buffered
 * bytes are never searched again.  A line that lies wholly inside one chunk is passed straight
 * from the chunk (no copy); only a line split across chunks is assembled in the internal buffer,
 * which never holds more than max_line bytes.
 *
 * A line longer than max_line is never buffered beyond the limit: its bytes are discarded up to
 * its newline and counted in stats.oversized.  With KM_LINES_ABORT (the default) the feed that
 * detects it returns KM_ETOOBIG and the rest of that chunk is not consumed: the caller drops the
 * stream and must km_lines_reset() before feeding another one.  With KM_LINES_SKIP the line is
 * silently skipped and splitting goes on. Lines passed to the callback are NOT NUL-terminated. */
#ifndef KM_LINES_H
#define KM_LINES_H

#include <stddef.h>

#include "operator/base/err.h"

#define KM_LINES_DEFAULT_MAX ((size_t)16 * 1024 * 1024)

/* Called once per complete line: line[0..len) is borrowed for the call only.  A non-KM_OK
 * return stops the feed, which returns that status (the rest of the chunk is not consumed). */
typedef km_status (*km_lines_fn)(const char *line, size_t len, void *user);

typedef enum km_lines_mode {
    KM_LINES_ABORT = 0, /* an oversized line makes km_lines_feed return KM_ETOOBIG */
    KM_LINES_SKIP,      /* an oversized line is dropped and counted; splitting continues */
} km_lines_mode;

typedef struct km_lines_stats {
    unsigned long long lines;         /* callback invocations */
    unsigned long long bytes_fed;     /* bytes handed to km_lines_feed */
    unsigned long long bytes_scanned; /* bytes searched for '\n' (== bytes_fed: no re-scans) */
    unsigned long long bytes_copied;  /* bytes copied into the assembly buffer */
    unsigned long long oversized;     /* lines dropped for exceeding max_line */
} km_lines_stats;

typedef struct km_lines km_lines;

/* A new splitter calling fn(line, len, user); max_line 0 = KM_LINES_DEFAULT_MAX.  The caller
 * frees it with km_lines_free.  On failure (KM_EINVAL for fn NULL, KM_ENOMEM) *out is
 * untouched. */
km_status km_lines_new(size_t max_line, km_lines_mode mode, km_lines_fn fn, void *user,
                       km_lines **out);

/* Frees the splitter.  Accepts NULL. */
void km_lines_free(km_lines *l);

/* Splits len more bytes of the stream.  Returns KM_OK, the callback's status, KM_ETOOBIG (abort
 * mode) or KM_ENOMEM (the partial line is then dropped as if oversized). */
km_status km_lines_feed(km_lines *l, const char *data, size_t len);

/* End of stream.  A buffered final line without '\n' is passed to the callback when deliver is
 * non-zero and dropped otherwise (the API server ends every event with '\n', so such a line is
 * the remnant of a cut stream).  Returns the callback's status or KM_OK; the splitter is reset
 * either way. */
km_status km_lines_finish(km_lines *l, int deliver);

/* Forgets any partial line and discard state (for a new stream); keeps the stats. */
void km_lines_reset(km_lines *l);

/* Bytes of a partial line currently buffered. */
size_t km_lines_pending(const km_lines *l);

/* Copies the counters into *out. */
void km_lines_stats_get(const km_lines *l, km_lines_stats *out);

#endif
